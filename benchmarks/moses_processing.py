"""Time processing MOSES training SMILES into training shards (ETKDGv3 + MMFF94 conformers over the cores).

    python benchmarks/moses_processing.py -n 100000 --workers 2 --data-dir data/cache \
        --json benchmarks/results/moses_processing_100k.json

The cache under ``--data-dir`` must not hold these shards yet (the point is to time the work; a rerun would
read the cache). The load average is sampled during the run and written beside the time, so that a figure
measured beside another process says so. Projections assume throughput linear in the number of worker
processes (``--scaling N`` measures 1 against 2 workers on N molecules to check that on this machine).
"""
from __future__ import annotations

import os
import resource
import tempfile
import threading
import time
from pathlib import Path

from moldiff.data.files import SHARD_SIZE, load_file
from moldiff.data.moses import moses_file

from common import RESULTS, command_line, machine_info, parser, write_json

MOSES_TRAIN = 1_584_663


def _timed(n: int, workers: int, root: Path, shard_size: int) -> dict:
    loads: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(15.0):
            loads.append(os.getloadavg()[0])

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    store = load_file(moses_file("train"), root, limit=n, workers=workers, shard_size=shard_size,
                      say=lambda line: print(line, flush=True))
    seconds = time.perf_counter() - start
    stop.set()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    disk = sum(p.stat().st_size for f in store.folders for p in f.iterdir() if p.is_file())
    return {"records": n, "workers": workers, "seconds": round(seconds, 1),
            "molecules_per_second": round(store.info["kept"] / seconds, 2),
            "kept": store.info["kept"], "skipped": store.info["skipped"], "shards": len(store.folders),
            "worker_cpu_seconds": round((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 1),
            "disk_bytes": disk, "load_average_samples": [round(x, 2) for x in loads],
            "load_average_median": round(sorted(loads)[len(loads) // 2], 2) if loads else None}


def main() -> None:
    ap = parser(__doc__, json=RESULTS / "moses_processing.json")
    ap.add_argument("-n", type=int, default=100_000, help="MOSES training records to process")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--shard-size", type=int, default=SHARD_SIZE)
    ap.add_argument("--data-dir", type=Path, help="cache to fill (default: a temporary folder)")
    ap.add_argument("--scaling", type=int, default=0, metavar="N",
                    help="first time N molecules with 1 and with --workers workers (fresh caches)")
    args = ap.parse_args()
    result = {"machine_info": machine_info(), "command": command_line(), "runs": []}
    if args.scaling:
        for w in (1, args.workers):
            with tempfile.TemporaryDirectory() as root:
                result["runs"].append(dict(_timed(args.scaling, w, Path(root), args.shard_size), role="scaling"))
    if args.data_dir is None:
        with tempfile.TemporaryDirectory() as root:
            main_run = _timed(args.n, args.workers, Path(root), args.shard_size)
    else:
        main_run = _timed(args.n, args.workers, args.data_dir, args.shard_size)
    result["runs"].append(dict(main_run, role="main"))
    per_mol_worker = main_run["seconds"] * main_run["workers"] / max(main_run["records"], 1)
    cpu_per_mol = main_run["worker_cpu_seconds"] / max(main_run["records"], 1)
    result["projection"] = {
        "assumption": "throughput linear in worker processes (see the scaling runs), the same per-core speed",
        "worker_cpu_seconds_per_molecule": round(cpu_per_mol, 4),
        "all_moses_train_this_machine_hours_from_cpu": round(MOSES_TRAIN * cpu_per_mol / main_run["workers"] / 3600, 2),
        "all_moses_train_64_cores_hours_from_cpu": round(MOSES_TRAIN * cpu_per_mol / 64 / 3600, 2),
        "all_moses_train_this_machine_hours": round(MOSES_TRAIN * per_mol_worker / main_run["workers"] / 3600, 2),
        "all_moses_train_64_cores_hours": round(MOSES_TRAIN * per_mol_worker / 64 / 3600, 2),
    }
    write_json(args.json, result)
    print(result["runs"][-1], result["projection"])


if __name__ == "__main__":
    main()
