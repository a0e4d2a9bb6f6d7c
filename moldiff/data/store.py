"""The dataset contract: one molecule record, a packed store of many, and a PyG dataset over a store.

A reader (e.g. :mod:`moldiff.data.qm9`) turns its source into :class:`MoleculeRecord`\\ s and splits; everything
after that (caching, hydrogens removed, statistics, the vocabulary, PyG ``Data``) is shared. The store is a
dict of flat tensors, saved with ``torch.save`` and loaded with ``weights_only=True``:

``elements`` (symbols; ``atom_type`` indexes it), ``atom_type``/``pos``/``charge`` per atom, ``atom_ptr``
(molecule m's atoms are ``atom_ptr[m]:atom_ptr[m+1]``), ``bonds`` (i, j, order) with ``bond_ptr``,
``splits`` (positions per split), and optionally ``smiles`` (list) and ``properties`` (name → (M,) tensor).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
from torch_geometric.data import Data

from moldiff.elements import atomic_number
from moldiff.vocab import Vocabulary


@dataclass(frozen=True)
class MoleculeRecord:
    """One molecule as a reader yields it: elements, 3D coordinates (Å), formal charges, bonds (i < j, order)
    and optional per-molecule properties (name → value) and SMILES."""

    elements: tuple[str, ...]
    pos: np.ndarray  # (N, 3)
    charges: np.ndarray | None = None  # (N,) int
    bonds: np.ndarray | None = None  # (B, 3) int: i, j, order
    properties: dict[str, float] = field(default_factory=dict)
    smiles: str | None = None


def pack_records(records: Iterable[MoleculeRecord], elements: Sequence[str] | None = None) -> dict:
    """Pack records into a store (without splits). ``elements`` fixes the element table (default: the
    elements met, by atomic number)."""
    records = list(records)
    table = tuple(elements) if elements is not None else tuple(
        sorted({e for r in records for e in r.elements}, key=atomic_number))
    index = {s: k for k, s in enumerate(table)}
    types, pos, charges, bonds, atom_ptr, bond_ptr = [], [], [], [], [0], [0]
    props: dict[str, list[float]] = {}
    for r in records:
        n = len(r.elements)
        types.append(np.fromiter((index[e] for e in r.elements), dtype=np.int8, count=n))
        pos.append(np.asarray(r.pos, dtype=np.float32).reshape(n, 3))
        charges.append(np.zeros(n, np.int8) if r.charges is None else np.asarray(r.charges, np.int8))
        b = np.zeros((0, 3), np.int16) if r.bonds is None else np.asarray(r.bonds, np.int16).reshape(-1, 3)
        bonds.append(b)
        atom_ptr.append(atom_ptr[-1] + n)
        bond_ptr.append(bond_ptr[-1] + len(b))
        for name in set(props) | set(r.properties):
            props.setdefault(name, [float("nan")] * (len(atom_ptr) - 2)).append(r.properties.get(name, float("nan")))
    cat = (lambda parts, dt, shape: torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(shape, dtype=dt))
    blob = {
        "elements": list(table),
        "atom_type": cat(types, torch.int8, (0,)), "pos": cat(pos, torch.float32, (0, 3)),
        "charge": cat(charges, torch.int8, (0,)),
        "atom_ptr": torch.tensor(atom_ptr, dtype=torch.int64),
        "bonds": cat(bonds, torch.int16, (0, 3)), "bond_ptr": torch.tensor(bond_ptr, dtype=torch.int64),
        "smiles": [r.smiles or "" for r in records],
    }
    if props:
        blob["properties"] = {k: torch.tensor(v, dtype=torch.float64) for k, v in props.items()}
    return blob


def vocabulary_of(blob: dict, split: str | None = "train") -> Vocabulary:
    """The vocabulary of what a store holds (its ``split``, or all of it when None)."""
    mols = blob["splits"][split] if split is not None else torch.arange(len(blob["atom_ptr"]) - 1)
    atom_mask = _mask(blob["atom_ptr"], mols)
    bond_mask = _mask(blob["bond_ptr"], mols)
    elements = [blob["elements"][int(k)] for k in torch.unique(blob["atom_type"][atom_mask].long())]
    charges = torch.unique(blob["charge"][atom_mask].long()).tolist()
    orders = torch.unique(blob["bonds"][bond_mask][:, 2].long()).tolist()
    return Vocabulary.from_counts(elements, charges, orders)


def _mask(ptr: torch.Tensor, mols: torch.Tensor) -> torch.Tensor:
    sel = torch.zeros(len(ptr) - 1, dtype=torch.bool)
    sel[mols] = True
    return sel.repeat_interleave(ptr.diff())


def without_hydrogens(blob: dict) -> dict:
    """The same molecules with their hydrogens removed: heavy-atom types, coordinates and formal charges, and
    the bonds among heavy atoms (re-indexed). Pure torch, from any store (e.g. a :func:`training_blob`);
    splits, properties and SMILES are unchanged."""
    if "H" not in blob["elements"]:
        return dict(blob, hydrogens="removed")
    keep = blob["atom_type"] != blob["elements"].index("H")
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


def training_blob(blob: dict, val_molecules: int = 1000) -> dict:
    """The part of a store that training reads: the whole train split and the first ``val_molecules`` of the
    validation split (what the validation loss uses), without SMILES or the test split. Used to carry a
    dataset to a machine without its source package or RDKit."""
    train = blob["splits"]["train"]
    valid = blob["splits"]["valid"][:val_molecules]
    keep = torch.cat([train, valid])
    atom_ptr, bond_ptr = blob["atom_ptr"], blob["bond_ptr"]
    n_atoms = atom_ptr[keep + 1] - atom_ptr[keep]
    n_bonds = bond_ptr[keep + 1] - bond_ptr[keep]
    atom_idx = torch.repeat_interleave(atom_ptr[keep], n_atoms) + _ranges(n_atoms)
    bond_idx = torch.repeat_interleave(bond_ptr[keep], n_bonds) + _ranges(n_bonds)
    out = {k: v for k, v in blob.items() if k not in ("smiles", "splits", "properties")}
    out.update({
        "atom_type": blob["atom_type"][atom_idx], "pos": blob["pos"][atom_idx], "charge": blob["charge"][atom_idx],
        "atom_ptr": torch.cat([torch.zeros(1, dtype=torch.int64), n_atoms.cumsum(0)]),
        "bonds": blob["bonds"][bond_idx].to(torch.int8 if (len(n_atoms) == 0 or int(n_atoms.max()) < 128) else torch.int16),
        "bond_ptr": torch.cat([torch.zeros(1, dtype=torch.int64), n_bonds.cumsum(0)]),
        "splits": {"train": torch.arange(len(train)), "valid": torch.arange(len(train), len(keep)),
                   "test": torch.zeros(0, dtype=torch.int64)},
        "subset_of": "train + first %d valid" % len(valid),
    })
    if "qm9_index" in blob:
        out["qm9_index"] = blob["qm9_index"][keep]
    if "properties" in blob:
        out["properties"] = {k: v[keep] for k, v in blob["properties"].items()}
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
              bonds: torch.Tensor | None = None, atomic_numbers: Sequence[int] | None = None) -> Data:
    """A molecule as PyG ``Data``: ``x`` = [one-hot over the store's element table, Z], ``z`` (atomic
    numbers), ``pos`` (Å), ``atom_type`` (index into the table), ``charge``, ``pair_index`` (all pairs i < j)
    and ``bond`` (order per pair, 0 = no bond). ``atomic_numbers`` is the table's Z per entry."""
    n = int(atom_type.numel())
    atom_type = atom_type.long()
    table = torch.tensor(atomic_numbers, dtype=torch.long)
    onehot = torch.nn.functional.one_hot(atom_type, len(table)).float()
    z = table[atom_type]
    pairs = complete_pairs(n)
    bond = torch.zeros(pairs.shape[1], dtype=torch.long)
    if bonds is not None and len(bonds):
        b = bonds.long()
        bond[pair_position(b[:, 0], b[:, 1], n)] = b[:, 2]
    return Data(x=torch.cat([onehot, z.float().unsqueeze(1)], dim=1), pos=pos.float(), atom_type=atom_type, z=z,
                charge=(charge if charge is not None else torch.zeros(n)).long(),
                pair_index=pairs.clone(), bond=bond, num_nodes=n)


class MoleculeDataset(torch.utils.data.Dataset):
    """One split ("train", "valid", "test") of a store as PyG ``Data`` objects. ``elements`` gives the
    one-hot of ``x`` a wider table than the store's own (e.g. one shared by all shards of a dataset)."""

    def __init__(self, split: str, blob: dict, elements: Sequence[str] | None = None,
                 properties: Sequence[str] = ()):
        if split not in blob["splits"]:
            raise ValueError(f"unknown split {split!r}; choose from {sorted(blob['splits'])}")
        self.blob = blob
        self.split = split
        self.positions = blob["splits"][split]
        table = list(elements) if elements is not None else list(blob["elements"])
        self.remap = None if table == list(blob["elements"]) else torch.tensor(
            [table.index(e) for e in blob["elements"]], dtype=torch.long)
        self.atomic_numbers = [atomic_number(e) for e in table]
        self.properties = tuple(properties)
        self.y = torch.stack([blob["properties"][p].float() for p in properties], dim=1) if properties else None

    def __len__(self) -> int:
        return int(self.positions.numel())

    def __getitem__(self, k: int) -> Data:
        m = int(self.positions[k])
        b = self.blob
        a0, a1 = int(b["atom_ptr"][m]), int(b["atom_ptr"][m + 1])
        b0, b1 = int(b["bond_ptr"][m]), int(b["bond_ptr"][m + 1])
        atom_type = b["atom_type"][a0:a1]
        if self.remap is not None:
            atom_type = self.remap[atom_type.long()]
        data = make_data(atom_type, b["pos"][a0:a1], b["charge"][a0:a1], b["bonds"][b0:b1], self.atomic_numbers)
        data.idx = m
        if self.y is not None:
            data.y = self.y[m:m + 1]  # (1, P): the batch holds (G, P)
        return data

    def smiles(self) -> list[str]:
        """The dataset SMILES of this split's molecules."""
        return [self.blob["smiles"][int(m)] for m in self.positions]


@dataclass(frozen=True)
class DatasetStats:
    """Statistics of the training split saved with every model: p(N) and the class frequencies, of the atoms
    the store holds (heavy atoms only for a :func:`without_hydrogens` store). ``atom_type_freq`` follows
    ``elements``."""

    n_atoms_hist: list[int]  # count of molecules with n atoms, index n
    atom_type_freq: list[float]
    charge_freq: dict[int, float]
    bond_freq: list[float]  # over all pairs: none, then each bond order
    elements: tuple[str, ...] = ()
    properties: dict = field(default_factory=dict)  # name → mean, std, range, p(N | bin) (conditioned models)

    @staticmethod
    def from_blob(blob: dict, split: str = "train", properties: Sequence[str] = ()) -> "DatasetStats":
        in_split = torch.zeros(len(blob["atom_ptr"]) - 1, dtype=torch.bool)
        in_split[blob["splits"][split]] = True
        sizes = blob["atom_ptr"].diff()
        atom_mask = in_split.repeat_interleave(sizes)
        bond_mask = in_split.repeat_interleave(blob["bond_ptr"].diff())
        hist = torch.bincount(sizes[in_split]).tolist()
        types = torch.bincount(blob["atom_type"][atom_mask].long(), minlength=len(blob["elements"])).double()
        cvals, ccounts = torch.unique(blob["charge"][atom_mask].long(), return_counts=True)
        orders = torch.bincount(blob["bonds"][bond_mask][:, 2].long(), minlength=4).double()
        n_pairs = float((sizes[in_split] * (sizes[in_split] - 1) // 2).sum())
        orders[0] = n_pairs - orders[1:].sum()
        props = {}
        if properties:
            from moldiff.conditioning import property_stats

            missing = [p for p in properties if p not in blob.get("properties", {})]
            if missing:
                raise ValueError(f"the training data hold no property {', '.join(map(repr, missing))} to condition on")
            mols = blob["splits"][split]
            props = property_stats({p: blob["properties"][p][mols] for p in properties}, sizes[mols])
        return DatasetStats(hist, (types / types.sum()).tolist(),
                            {int(v): float(c) / float(ccounts.sum()) for v, c in zip(cvals, ccounts)},
                            (orders / n_pairs).tolist(), tuple(blob["elements"]), props)

    @property
    def size_range(self) -> tuple[int, int]:
        """The smallest and largest molecule (atoms of the chain) in the training split."""
        sizes = [n for n, c in enumerate(self.n_atoms_hist) if c > 0]
        return (sizes[0], sizes[-1]) if sizes else (0, 0)

    def to_dict(self) -> dict:
        return {"n_atoms_hist": self.n_atoms_hist, "atom_type_freq": self.atom_type_freq,
                "charge_freq": {str(k): v for k, v in self.charge_freq.items()}, "bond_freq": self.bond_freq,
                "elements": list(self.elements), **({"properties": self.properties} if self.properties else {})}

    @staticmethod
    def from_dict(d: dict) -> "DatasetStats":
        return DatasetStats(list(d["n_atoms_hist"]), list(d["atom_type_freq"]),
                            {int(k): float(v) for k, v in d["charge_freq"].items()}, list(d["bond_freq"]),
                            tuple(d.get("elements", ())), dict(d.get("properties", {})))
