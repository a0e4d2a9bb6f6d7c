"""Write the training part of the processed QM9 cache to .device/cache (carried to a GPU machine).

    python benchmarks/gpu/prepare.py          # then: device run with carry [".device"]
"""
from __future__ import annotations

from pathlib import Path

import torch

from moldiff.data.qm9 import CACHE_NAME, load_processed, training_blob
from moldiff.io_utils import atomic_path

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[2] / ".device" / "cache" / CACHE_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(training_blob(load_processed()), tmp)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")
