"""How a molecule becomes the diffusion state and back: one-hot blocks, scaling, decoding at t = 0."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from moldiff.data.qm9 import ATOM_TYPES, ATOMIC_NUMBERS
from moldiff.diffusion.state import Graph, State, remove_mean

CHARGES = (-1, 0, 1)
BOND_CLASSES = 4  # no bond, single, double, triple (kekulised)


@dataclass(frozen=True)
class FeatureConfig:
    """Which features join the chain and how they are scaled (EDM: x/1, one-hot/4, Z/10).

    ``atom_types`` are the classes of the atom-type one-hot, a subset of the dataset's ``ATOM_TYPES``.
    ``implicit_h``: the chain carries heavy atoms only (the dataset's hydrogens are removed when it is
    loaded) and RDKit adds the hydrogens when a sample is decoded; it needs ``atom_types`` without "H" and
    the bonds in the chain (hydrogen counts follow from bonds and charges, not from heavy-atom coordinates).
    """

    atom_types: tuple[str, ...] = ATOM_TYPES
    include_z: bool = True
    include_charge: bool = False
    include_bonds: bool = False
    onehot_scale: float = 0.25
    z_scale: float = 0.1
    implicit_h: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.atom_types) - set(ATOM_TYPES)
        if unknown:
            raise ValueError(f"atom_types {sorted(unknown)} are not in the dataset's {list(ATOM_TYPES)}")
        if self.implicit_h and "H" in self.atom_types:
            raise ValueError("implicit_h needs atom_types without 'H', e.g. atom_types = ['C', 'N', 'O', 'F']")
        if self.implicit_h and not self.include_bonds:
            raise ValueError("implicit_h needs include_bonds: hydrogens are added from the generated bonds")

    @property
    def h_dim(self) -> int:
        return len(self.atom_types) + int(self.include_z) + (len(CHARGES) if self.include_charge else 0)

    @property
    def e_dim(self) -> int:
        return BOND_CLASSES if self.include_bonds else 0

    def categorical_blocks(self) -> list[tuple[str, slice, float]]:
        """(field, columns, scale) of each one-hot block, for the likelihood of the decoder."""
        k = len(self.atom_types)
        blocks = [("h", slice(0, k), self.onehot_scale)]
        if self.include_charge:
            start = k + int(self.include_z)
            blocks.append(("h", slice(start, start + len(CHARGES)), self.onehot_scale))
        if self.include_bonds:
            blocks.append(("e", slice(0, BOND_CLASSES), self.onehot_scale))
        return blocks


def type_columns(cfg: FeatureConfig, device: torch.device | None = None) -> torch.Tensor:
    """One-hot column of each dataset atom type (index into ``ATOM_TYPES``); −1 for a type ``cfg`` lacks."""
    return torch.tensor([cfg.atom_types.index(s) if s in cfg.atom_types else -1 for s in ATOM_TYPES],
                        device=device)


def graph_of(batch) -> Graph:
    """The Graph bookkeeping of a PyG batch made of :func:`moldiff.data.qm9.make_data` molecules."""
    return Graph(batch.batch, batch.pair_index, int(batch.num_graphs))


def encode(batch, cfg: FeatureConfig) -> tuple[State, Graph]:
    """A PyG batch → the scaled diffusion state x0 (coordinates centred) and its graph."""
    graph = graph_of(batch)
    columns = type_columns(cfg, batch.atom_type.device)[batch.atom_type]
    parts = [F.one_hot(columns, len(cfg.atom_types)).float() * cfg.onehot_scale]
    if cfg.include_z:
        z = torch.tensor(ATOMIC_NUMBERS, dtype=torch.float32, device=batch.pos.device)[batch.atom_type]
        parts.append(z.unsqueeze(1) * cfg.z_scale)
    if cfg.include_charge:
        idx = (batch.charge - CHARGES[0]).clamp(0, len(CHARGES) - 1)
        parts.append(F.one_hot(idx, len(CHARGES)).float() * cfg.onehot_scale)
    e = F.one_hot(batch.bond, BOND_CLASSES).float() * cfg.onehot_scale if cfg.include_bonds else None
    x = remove_mean(batch.pos.float(), graph.batch, graph.num_graphs)
    return State(x, torch.cat(parts, dim=1), e), graph


@dataclass
class Decoded:
    """The discrete molecule read off a state: per atom its type (index into ``ATOM_TYPES``, as in the
    dataset) and charge, per pair its bond order."""

    pos: torch.Tensor  # (N, 3)
    atom_type: torch.Tensor  # (N,)
    charge: torch.Tensor  # (N,)
    bond: torch.Tensor | None  # (P,) 0–3 or None when bonds are not in the chain


def decode(state: State, cfg: FeatureConfig) -> Decoded:
    """Argmax of every one-hot block (EDM's decoding at t = 0)."""
    k = len(cfg.atom_types)
    dataset_type = torch.tensor([ATOM_TYPES.index(s) for s in cfg.atom_types], device=state.h.device)
    atom_type = dataset_type[state.h[:, :k].argmax(dim=1)]
    if cfg.include_charge:
        start = k + int(cfg.include_z)
        charge = state.h[:, start:start + len(CHARGES)].argmax(dim=1) + CHARGES[0]
    else:
        charge = torch.zeros_like(atom_type)
    bond = state.e.argmax(dim=1) if state.e is not None else None
    return Decoded(state.x, atom_type, charge, bond)
