"""QM9 as PyG ``Data`` objects: processed once from ``qm9pack``, cached as tensors, loaded in seconds."""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from moldiff.data.raw import QM9_SIZE, iter_qm9, split_positions
from moldiff.io_utils import atomic_path
from moldiff.paths import data_dir

ATOM_TYPES = ("H", "C", "N", "O", "F")
ATOMIC_NUMBERS = (1, 6, 7, 8, 9)
CACHE_NAME = "qm9_v1.pt"
CACHE_FORMAT = 1


def process_qm9(limit: int | None = None, progress: bool = True) -> dict:
    """Read qm9pack, attach bond/charge targets, and pack everything into flat tensors."""
    from tqdm import tqdm

    from moldiff.data.bonds import bond_targets  # RDKit: needed to process, not to train from the cache

    types, pos, charges, atom_ptr = [], [], [], [0]
    bonds, bond_ptr, index, smiles = [], [0], [], []
    status = collections.Counter()
    type_of = {s: k for k, s in enumerate(ATOM_TYPES)}
    for mol in tqdm(iter_qm9(limit), total=limit or QM9_SIZE, desc="processing QM9", disable=not progress):
        targets = bond_targets(mol.smiles, mol.elements, mol.pos)
        status[targets.status] += 1
        types.append(np.fromiter((type_of[e] for e in mol.elements), dtype=np.int8))
        pos.append(mol.pos.astype(np.float32))
        charges.append(targets.charges.astype(np.int8))
        bonds.append(targets.bonds.astype(np.int16))
        atom_ptr.append(atom_ptr[-1] + len(mol.elements))
        bond_ptr.append(bond_ptr[-1] + len(targets.bonds))
        index.append(mol.index)
        smiles.append(mol.smiles)
    n = len(index)
    splits = split_positions() if n == QM9_SIZE else _small_split(n)
    return {
        "format": CACHE_FORMAT,
        "atom_type": torch.from_numpy(np.concatenate(types)),
        "pos": torch.from_numpy(np.concatenate(pos)),
        "charge": torch.from_numpy(np.concatenate(charges)),
        "atom_ptr": torch.tensor(atom_ptr, dtype=torch.int64),
        "bonds": torch.from_numpy(np.concatenate(bonds)),
        "bond_ptr": torch.tensor(bond_ptr, dtype=torch.int64),
        "qm9_index": torch.tensor(index, dtype=torch.int32),
        "smiles": smiles,
        "bond_status": dict(status),
        "splits": {k: torch.from_numpy(v.astype(np.int64)) for k, v in splits.items()},
    }


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
            return blob
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    blob = process_qm9(limit, progress)
    blob["processing_seconds"] = time.perf_counter() - start
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return blob


def training_blob(blob: dict, val_molecules: int = 1000) -> dict:
    """The part of a processed blob that training reads: the whole train split and the first
    ``val_molecules`` of the validation split (what the validation loss uses), without SMILES or the
    test split. Used to carry QM9 to a machine without qm9pack or RDKit (about 2/3 of the size)."""
    train = blob["splits"]["train"]
    valid = blob["splits"]["valid"][:val_molecules]
    keep = torch.cat([train, valid])
    atom_ptr, bond_ptr = blob["atom_ptr"], blob["bond_ptr"]
    n_atoms = atom_ptr[keep + 1] - atom_ptr[keep]
    n_bonds = bond_ptr[keep + 1] - bond_ptr[keep]
    atom_idx = torch.repeat_interleave(atom_ptr[keep], n_atoms) + _ranges(n_atoms)
    bond_idx = torch.repeat_interleave(bond_ptr[keep], n_bonds) + _ranges(n_bonds)
    out = {k: v for k, v in blob.items() if k not in ("smiles", "splits")}
    out.update({
        "atom_type": blob["atom_type"][atom_idx], "pos": blob["pos"][atom_idx], "charge": blob["charge"][atom_idx],
        "atom_ptr": torch.cat([torch.zeros(1, dtype=torch.int64), n_atoms.cumsum(0)]),
        "bonds": blob["bonds"][bond_idx].to(torch.int8),  # atom indices < 29, orders ≤ 4
        "bond_ptr": torch.cat([torch.zeros(1, dtype=torch.int64), n_bonds.cumsum(0)]),
        "qm9_index": blob["qm9_index"][keep],
        "splits": {"train": torch.arange(len(train)), "valid": torch.arange(len(train), len(keep)),
                   "test": torch.zeros(0, dtype=torch.int64)},
        "subset_of": "train + first %d valid" % len(valid),
    })
    return out


def without_hydrogens(blob: dict) -> dict:
    """The same molecules with their hydrogens removed: heavy-atom types, coordinates and formal charges, and
    the bonds among heavy atoms (re-indexed). Pure torch, from any processed blob (e.g. a
    :func:`training_blob`); splits, QM9 indices and SMILES are unchanged."""
    keep = blob["atom_type"] != ATOM_TYPES.index("H")
    n_atoms = blob["atom_ptr"].diff()
    mol_of_atom = torch.repeat_interleave(torch.arange(len(n_atoms)), n_atoms)
    heavy_ptr = torch.cat([torch.zeros(1, dtype=torch.int64),
                           torch.bincount(mol_of_atom[keep], minlength=len(n_atoms)).cumsum(0)])
    new_index = keep.long().cumsum(0) - 1  # position of each kept atom among all kept atoms
    bonds = blob["bonds"].long()
    mol_of_bond = torch.repeat_interleave(torch.arange(len(n_atoms)), blob["bond_ptr"].diff())
    i, j = blob["atom_ptr"][mol_of_bond] + bonds[:, 0], blob["atom_ptr"][mol_of_bond] + bonds[:, 1]
    heavy_bond = keep[i] & keep[j]
    mol = mol_of_bond[heavy_bond]
    i, j = new_index[i[heavy_bond]] - heavy_ptr[mol], new_index[j[heavy_bond]] - heavy_ptr[mol]
    heavy_bonds = torch.stack([i, j, bonds[heavy_bond, 2]], dim=1).to(blob["bonds"].dtype)
    out = dict(blob)
    out.update({
        "atom_type": blob["atom_type"][keep], "pos": blob["pos"][keep], "charge": blob["charge"][keep],
        "atom_ptr": heavy_ptr, "bonds": heavy_bonds,
        "bond_ptr": torch.cat([torch.zeros(1, dtype=torch.int64),
                               torch.bincount(mol, minlength=len(n_atoms)).cumsum(0)]),
        "hydrogens": "removed",
    })
    return out


def _ranges(counts: torch.Tensor) -> torch.Tensor:
    """0..c-1 for each count c, concatenated."""
    starts = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    return torch.arange(int(counts.sum())) - starts


_PAIRS: dict[int, torch.Tensor] = {}


def complete_pairs(n: int) -> torch.Tensor:
    """All atom pairs (i < j) of an n-atom molecule, shape (2, n(n−1)/2), row-major order (cached)."""
    if n not in _PAIRS:
        _PAIRS[n] = torch.triu_indices(n, n, offset=1)
    return _PAIRS[n]


def pair_position(i: torch.Tensor, j: torch.Tensor, n: int) -> torch.Tensor:
    """Position of pair (i < j) in ``complete_pairs(n)``."""
    return i * n - i * (i + 1) // 2 + (j - i - 1)


def make_data(atom_type: torch.Tensor, pos: torch.Tensor, charge: torch.Tensor | None = None,
              bonds: torch.Tensor | None = None) -> Data:
    """A molecule as PyG ``Data``: ``x`` = [one-hot(H,C,N,O,F), Z], ``pos`` (Å), ``atom_type``, ``charge``,
    ``pair_index`` (all pairs i < j) and ``bond`` (order per pair, 0 = no bond)."""
    n = int(atom_type.numel())
    atom_type = atom_type.long()
    onehot = torch.nn.functional.one_hot(atom_type, len(ATOM_TYPES)).float()
    z = torch.tensor(ATOMIC_NUMBERS, dtype=torch.float32)[atom_type].unsqueeze(1)
    pairs = complete_pairs(n)
    bond = torch.zeros(pairs.shape[1], dtype=torch.long)
    if bonds is not None and len(bonds):
        b = bonds.long()
        bond[pair_position(b[:, 0], b[:, 1], n)] = b[:, 2]
    return Data(x=torch.cat([onehot, z], dim=1), pos=pos.float(), atom_type=atom_type,
                charge=(charge if charge is not None else torch.zeros(n)).long(),
                pair_index=pairs.clone(), bond=bond, num_nodes=n)


class QM9(torch.utils.data.Dataset):
    """One split of QM9 ("train", "valid", "test") as PyG ``Data`` objects."""

    def __init__(self, split: str = "train", root: str | Path | None = None, limit: int | None = None,
                 blob: dict | None = None):
        blob = blob if blob is not None else load_processed(root, limit)
        if split not in blob["splits"]:
            raise ValueError(f"unknown split {split!r}; choose from {sorted(blob['splits'])}")
        self.blob = blob
        self.split = split
        self.positions = blob["splits"][split]

    def __len__(self) -> int:
        return int(self.positions.numel())

    def __getitem__(self, k: int) -> Data:
        m = int(self.positions[k])
        b = self.blob
        a0, a1 = int(b["atom_ptr"][m]), int(b["atom_ptr"][m + 1])
        b0, b1 = int(b["bond_ptr"][m]), int(b["bond_ptr"][m + 1])
        data = make_data(b["atom_type"][a0:a1], b["pos"][a0:a1], b["charge"][a0:a1], b["bonds"][b0:b1])
        data.idx = m
        return data

    def smiles(self) -> list[str]:
        """The dataset SMILES of this split's molecules."""
        return [self.blob["smiles"][int(m)] for m in self.positions]


@dataclass(frozen=True)
class DatasetStats:
    """Statistics of the training split saved with every model: p(N) and the class frequencies, of the atoms
    the blob holds (heavy atoms only for a :func:`without_hydrogens` blob)."""

    n_atoms_hist: list[int]  # count of molecules with n atoms, index n
    atom_type_freq: list[float]  # in ATOM_TYPES order
    charge_freq: dict[int, float]
    bond_freq: list[float]  # over all pairs: none, single, double, triple

    @staticmethod
    def from_blob(blob: dict, split: str = "train") -> "DatasetStats":
        in_split = torch.zeros(len(blob["atom_ptr"]) - 1, dtype=torch.bool)
        in_split[blob["splits"][split]] = True
        sizes = blob["atom_ptr"].diff()
        atom_mask = in_split.repeat_interleave(sizes)
        bond_mask = in_split.repeat_interleave(blob["bond_ptr"].diff())
        hist = torch.bincount(sizes[in_split]).tolist()
        types = torch.bincount(blob["atom_type"][atom_mask].long(), minlength=len(ATOM_TYPES)).double()
        cvals, ccounts = torch.unique(blob["charge"][atom_mask].long(), return_counts=True)
        orders = torch.bincount(blob["bonds"][bond_mask][:, 2].long(), minlength=4).double()
        n_pairs = float((sizes[in_split] * (sizes[in_split] - 1) // 2).sum())
        orders[0] = n_pairs - orders[1:].sum()
        return DatasetStats(hist, (types / types.sum()).tolist(),
                            {int(v): float(c) / float(ccounts.sum()) for v, c in zip(cvals, ccounts)},
                            (orders / n_pairs).tolist())

    def to_dict(self) -> dict:
        return {"n_atoms_hist": self.n_atoms_hist, "atom_type_freq": self.atom_type_freq,
                "charge_freq": {str(k): v for k, v in self.charge_freq.items()}, "bond_freq": self.bond_freq}

    @staticmethod
    def from_dict(d: dict) -> "DatasetStats":
        return DatasetStats(list(d["n_atoms_hist"]), list(d["atom_type_freq"]),
                            {int(k): float(v) for k, v in d["charge_freq"].items()}, list(d["bond_freq"]))
