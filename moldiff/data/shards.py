"""Stores on disk in shards: each shard a folder of ``.npy`` arrays (a packed store, see
:mod:`moldiff.data.store`) that training memory-maps instead of loading, so a dataset larger than memory
streams from disk, and under DDP each rank opens only its own shards.

A shard folder holds ``atom_type.npy``, ``pos.npy``, ``charge.npy``, ``atom_ptr.npy``, ``bonds.npy``,
``bond_ptr.npy``, ``split.npy`` (0 train, 1 valid, 2 test per molecule) and ``meta.json`` (element table,
record range, counts, SMILES). It appears complete or not at all (written in a temporary folder, then renamed).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from moldiff.data.store import MoleculeDataset, without_hydrogens
from moldiff.elements import atomic_number

ARRAYS = ("atom_type", "pos", "charge", "atom_ptr", "bonds", "bond_ptr")
SPLITS = ("train", "valid", "test")
HEAVY = "heavy"
"""Subfolder of a shard with the same molecules without their hydrogens (written once, on first use)."""


def write_shard(blob: dict, folder: Path, meta: dict) -> None:
    """Write a packed store (with ``splits``) as a shard folder, atomically."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ARRAYS:
        np.save(tmp / f"{name}.npy", blob[name].numpy())
    n = len(blob["atom_ptr"]) - 1
    split = np.zeros(n, np.int8)
    for code, name in enumerate(SPLITS):
        split[blob["splits"][name].numpy()] = code
    np.save(tmp / "split.npy", split)
    meta = dict(meta, elements=list(blob["elements"]), molecules=n, smiles=list(blob.get("smiles", [""] * n)),
                counts={name: int((split == code).sum()) for code, name in enumerate(SPLITS)})
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process wrote the same shard meanwhile (e.g. two DDP ranks): keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "meta.json").exists():
            raise


def read_meta(folder: Path) -> dict:
    return json.loads((Path(folder) / "meta.json").read_text())


def open_shard(folder: Path, arrays: Sequence[str] = ARRAYS) -> dict:
    """A shard as a store whose arrays are memory-mapped (copy-on-write: nothing is written back)."""
    folder = Path(folder)
    meta = read_meta(folder)
    blob = {name: torch.from_numpy(np.load(folder / f"{name}.npy", mmap_mode="c")) for name in arrays}
    split = np.load(folder / "split.npy")
    blob["splits"] = {name: torch.from_numpy(np.flatnonzero(split == code)) for code, name in enumerate(SPLITS)}
    blob["elements"] = meta["elements"]
    blob["smiles"] = meta["smiles"]
    blob["shard"] = str(folder)
    return blob


def heavy_shard(folder: Path) -> Path:
    """The shard's molecules without hydrogens, as a shard folder (made once, from the full shard)."""
    folder = Path(folder)
    target = folder / HEAVY
    if not (target / "meta.json").exists():
        meta = read_meta(folder)
        meta.pop("smiles", None)
        heavy = without_hydrogens(open_shard(folder))
        if "H" in heavy["elements"]:  # the table of a heavy-atom shard has no H
            table = [e for e in heavy["elements"] if e != "H"]
            remap = torch.tensor([table.index(e) if e != "H" else -1 for e in heavy["elements"]], dtype=torch.int8)
            heavy.update(elements=table, atom_type=remap[heavy["atom_type"].long()])
        write_shard({k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in heavy.items()}, target,
                    {k: v for k, v in meta.items() if k not in ("elements", "molecules", "counts")})
    return target


class ShardedStore:
    """A dataset on disk as shards (in record order) with one element table across them."""

    def __init__(self, folders: Sequence[Path], info: dict | None = None):
        self.folders = [Path(f) for f in folders]
        self.info = dict(info or {})
        self.metas = [read_meta(f) for f in self.folders]
        self.elements = tuple(sorted({e for m in self.metas for e in m["elements"]}, key=atomic_number))

    def __len__(self) -> int:
        return sum(m["molecules"] for m in self.metas)

    def count(self, split: str) -> int:
        return sum(m["counts"][split] for m in self.metas)

    def view(self, hydrogens: bool = True) -> "ShardedStore":
        """The same store, or (``hydrogens=False``) its heavy-atom shards."""
        return self if hydrogens else ShardedStore([heavy_shard(f) for f in self.folders], self.info)

    def rank_shards(self, rank: int = 0, world: int = 1) -> list[int]:
        """The shards rank ``rank`` of ``world`` reads (every world-th one); all of them for one process."""
        if world > len(self.folders):
            raise ValueError(f"{world} processes but only {len(self.folders)} shard(s): use fewer processes or "
                             "a smaller --shard-size")
        return list(range(rank, len(self.folders), world))

    def dataset(self, split: str, shards: Sequence[int] | None = None) -> torch.utils.data.Dataset:
        """One split over the given shards (default: all) as one PyG dataset, memory-mapped."""
        shards = range(len(self.folders)) if shards is None else shards
        parts = [MoleculeDataset(split, open_shard(self.folders[k]), elements=self.elements) for k in shards]
        return torch.utils.data.ConcatDataset(parts) if parts else torch.utils.data.ConcatDataset([])

    def summary_blob(self) -> dict:
        """Everything of the store except coordinates, in memory (types, charges, bonds, splits): what the
        statistics and the vocabulary are computed from."""
        parts = {name: [] for name in ("atom_type", "charge", "bonds")}
        sizes, bond_counts, splits, offset = [], [], {s: [] for s in SPLITS}, 0
        for folder in self.folders:
            b = open_shard(folder, ("atom_type", "charge", "atom_ptr", "bonds", "bond_ptr"))
            remap = torch.tensor([self.elements.index(e) for e in b["elements"]], dtype=torch.int8)
            parts["atom_type"].append(remap[b["atom_type"].long()])
            parts["charge"].append(b["charge"].clone())
            parts["bonds"].append(b["bonds"].to(torch.int16))
            sizes.append(b["atom_ptr"].diff())
            bond_counts.append(b["bond_ptr"].diff())
            for s in SPLITS:
                splits[s].append(b["splits"][s] + offset)
            offset += len(b["atom_ptr"]) - 1
        zero = torch.zeros(1, dtype=torch.int64)
        cat = lambda xs, empty: torch.cat(xs) if xs else empty  # noqa: E731
        return {"elements": list(self.elements), "atom_type": cat(parts["atom_type"], torch.zeros(0, dtype=torch.int8)),
                "charge": cat(parts["charge"], torch.zeros(0, dtype=torch.int8)),
                "bonds": cat(parts["bonds"], torch.zeros(0, 3, dtype=torch.int16)),
                "atom_ptr": torch.cat([zero, cat(sizes, zero[:0]).cumsum(0)]),
                "bond_ptr": torch.cat([zero, cat(bond_counts, zero[:0]).cumsum(0)]),
                "splits": {s: cat(v, zero[:0]) for s, v in splits.items()}}

    def smiles(self, split: str) -> list[str]:
        """The SMILES of one split's molecules, in store order."""
        out = []
        for meta, folder in zip(self.metas, self.folders):
            split_codes = np.load(folder / "split.npy")
            code = SPLITS.index(split)
            smiles = meta.get("smiles") or read_meta(folder.parent if folder.name == HEAVY else folder)["smiles"]
            out += [smiles[k] for k in np.flatnonzero(split_codes == code)]
        return out
