"""The QM9 training split as the reference of the metrics (novelty, distribution distances): built from
qm9pack once, with progress and its duration reported, and cached beside the processed data."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from moldiff.chem.reference import CACHE_VERSION, Reference, cache_dir
from moldiff.chem.reference_build import build_reference
from moldiff.data.raw import SPLIT_SIZES, QM9_SIZE, iter_qm9, split_positions


def qm9_train_records(limit: int | None = None) -> Iterable[tuple[tuple[str, ...], np.ndarray, str]]:
    """(elements, positions, SMILES) of the QM9 training split in file order, at most ``limit``."""
    train = np.zeros(QM9_SIZE, dtype=bool)
    train[split_positions()["train"]] = True
    count = 0
    for k, rec in enumerate(iter_qm9()):
        if train[k]:
            if limit is not None and count >= limit:
                return
            count += 1
            yield rec.elements, rec.pos, rec.smiles


def reference_path(name: str = "qm9") -> Path:
    """Cache file of the named reference (only ``qm9``, its training split)."""
    if name != "qm9":
        raise ValueError(f"unknown reference {name!r} (known: qm9)")
    return cache_dir() / f"qm9_train_reference_v{CACHE_VERSION}.npz"


def load_reference(name: str = "qm9", *, rebuild: bool = False, progress: bool = False,
                   limit: int | None = None, say: Callable[[str], None] | None = None) -> Reference:
    """The named reference, computed on first use (with a progress bar on stderr when ``progress``) and
    cached; ``say`` receives one line with the real duration of a build. ``limit`` builds from the first
    molecules only (not cached; for tests)."""
    from tqdm import tqdm

    path = reference_path(name)
    if path.exists() and not rebuild and limit is None:
        try:
            return Reference.load(path)
        except (ValueError, OSError, KeyError):
            pass  # stale or damaged cache: rebuild it below
    start = time.perf_counter()
    records = tqdm(qm9_train_records(limit), total=limit or SPLIT_SIZES["train"], disable=not progress,
                   desc="QM9 reference", unit="mol", file=sys.stderr, mininterval=1.0)
    ref = build_reference(records, "qm9-train")
    if limit is None:
        ref.save(path)
    if say:
        seconds = time.perf_counter() - start
        took = f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
        where = f"; cached at {path}" if limit is None else " (a partial build, not cached)"
        say(f"built the QM9 reference ({ref.n_molecules:,} molecules) in {took}{where}")
    return ref
