"""The QM9 reader: qm9pack's molecules with bonds and charges from their SMILES, packed into a store once
(:mod:`moldiff.data.store`), cached as tensors, loaded in seconds. The one module that names QM9's elements."""
from __future__ import annotations

import collections
import time
from pathlib import Path

import numpy as np
import torch

from moldiff.data.raw import QM9_SIZE, iter_qm9, read_properties, split_positions
from moldiff.data.store import (DatasetStats, MoleculeDataset, MoleculeRecord, complete_pairs, make_data,  # noqa: F401
                                pack_records, pair_position, training_blob, without_hydrogens)
from moldiff.io_utils import atomic_path
from moldiff.paths import data_dir

ATOM_TYPES = ("H", "C", "N", "O", "F")
ATOMIC_NUMBERS = (1, 6, 7, 8, 9)
CACHE_NAME = "qm9_v1.pt"
CACHE_FORMAT = 1


def process_qm9(limit: int | None = None, progress: bool = True) -> dict:
    """Read qm9pack, attach bond/charge targets, and pack everything into a store (:mod:`moldiff.data.store`)."""
    from tqdm import tqdm

    from moldiff.data.bonds import bond_targets  # RDKit: needed to process, not to train from the cache

    records, index = [], []
    status = collections.Counter()
    for mol in tqdm(iter_qm9(limit), total=limit or QM9_SIZE, desc="processing QM9", disable=not progress):
        targets = bond_targets(mol.smiles, mol.elements, mol.pos)
        status[targets.status] += 1
        records.append(MoleculeRecord(mol.elements, mol.pos, targets.charges, targets.bonds, smiles=mol.smiles))
        index.append(mol.index)
    n = len(index)
    splits = split_positions() if n == QM9_SIZE else _small_split(n)
    blob = pack_records(records, ATOM_TYPES)
    blob.update({
        "format": CACHE_FORMAT,
        "qm9_index": torch.tensor(index, dtype=torch.int32),
        "bond_status": dict(status),
        "splits": {k: torch.from_numpy(v.astype(np.int64)) for k, v in splits.items()},
    })
    return blob


def _small_split(n: int) -> dict[str, np.ndarray]:
    """A proportional split for a truncated QM9 (tests and quick runs)."""
    perm = np.random.RandomState(0).permutation(n)
    n_test = max(1, n // 10)
    n_train = max(1, int(round(n * 100_000 / QM9_SIZE)))
    return {"train": np.sort(perm[:n_train]), "valid": np.sort(perm[n_train:n - n_test]),
            "test": np.sort(perm[n - n_test:])}


def load_processed(root: str | Path | None = None, limit: int | None = None, progress: bool = True) -> dict:
    """The processed QM9 tensors, from the cache or processed now (and cached atomically)."""
    root = data_dir(root)
    path = root / (CACHE_NAME if limit is None else f"qm9_v1_first{limit}.pt")
    if path.exists():
        blob = torch.load(path, weights_only=True)
        if blob.get("format") == CACHE_FORMAT:
            blob.setdefault("elements", list(ATOM_TYPES))  # caches written before the table was stored
            return blob
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    blob = process_qm9(limit, progress)
    blob["processing_seconds"] = time.perf_counter() - start
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return blob


HALF_SEED = 1  # the fixed permutation that halves the training split for the conditional benchmark


def with_properties(blob: dict) -> dict:
    """The store with QM9's six properties of EDM's conditional benchmark (:data:`~moldiff.data.raw.PROPERTIES`,
    QM9's units) and the two halves of the training split that benchmark uses: ``train_judge`` (the property
    predictor learns from it) and ``train_gen`` (the conditional generator learns from it), a fixed-seed halving."""
    if "properties" in blob and "train_gen" in blob["splits"]:
        return blob
    index, values = read_properties()
    row_of = {int(q): k for k, q in enumerate(index)}
    rows = torch.tensor([row_of[int(q)] for q in blob["qm9_index"]], dtype=torch.long)
    train = blob["splits"]["train"]
    perm = train[torch.from_numpy(np.random.RandomState(HALF_SEED).permutation(len(train)))]
    half = len(train) // 2
    out = dict(blob)
    out["properties"] = {**blob.get("properties", {}),
                         **{name: torch.from_numpy(v)[rows] for name, v in values.items()}}
    out["splits"] = {**blob["splits"], "train_judge": torch.sort(perm[:half]).values,
                     "train_gen": torch.sort(perm[half:]).values}
    return out


class QM9(MoleculeDataset):
    """One split of QM9 ("train", "valid", "test") as PyG ``Data`` objects (processed and cached on first use)."""

    def __init__(self, split: str = "train", root: str | Path | None = None, limit: int | None = None,
                 blob: dict | None = None):
        super().__init__(split, blob if blob is not None else load_processed(root, limit))
