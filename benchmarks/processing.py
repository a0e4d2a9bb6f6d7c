"""Time processing QM9 from qm9pack into the cache, and loading the cache afterwards.

    python benchmarks/processing.py --json benchmarks/results/processing.json
"""
from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from moldiff.data.qm9 import QM9, load_processed

from common import RESULTS, machine_info, parser, write_json


def main() -> None:
    ap = parser(__doc__, json=RESULTS / "processing.json")
    args = ap.parse_args()
    info = machine_info()
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        blob = load_processed(root, progress=False)
        process_s = time.perf_counter() - start
        loads = []
        for _ in range(3):
            start = time.perf_counter()
            blob = load_processed(root, progress=False)
            loads.append(time.perf_counter() - start)
        size = (Path(root) / "qm9_v1.pt").stat().st_size
    train = QM9("train", blob=blob)
    start = time.perf_counter()
    for k in range(2000):
        train[k]
    per_item = (time.perf_counter() - start) / 2000
    result = {"molecules": len(blob["smiles"]), "bond_status": blob["bond_status"],
              "process_seconds": round(process_s, 1), "load_seconds_median": round(sorted(loads)[1], 3),
              "cache_mb": round(size / 1e6, 1), "data_item_ms": round(per_item * 1e3, 3),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
              "command": "python benchmarks/processing.py"}
    write_json(args.json, result, info=info)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
