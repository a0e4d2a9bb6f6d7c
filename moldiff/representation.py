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
    """Which features join the chain and how they are scaled (EDM: x/1, one-hot/4, Z/10)."""

    atom_types: tuple[str, ...] = ATOM_TYPES
    include_z: bool = True
    include_charge: bool = False
    include_bonds: bool = False
    onehot_scale: float = 0.25
    z_scale: float = 0.1

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


def graph_of(batch) -> Graph:
    """The Graph bookkeeping of a PyG batch made of :func:`moldiff.data.qm9.make_data` molecules."""
    return Graph(batch.batch, batch.pair_index, int(batch.num_graphs))


def encode(batch, cfg: FeatureConfig) -> tuple[State, Graph]:
    """A PyG batch → the scaled diffusion state x0 (coordinates centred) and its graph."""
    graph = graph_of(batch)
    parts = [F.one_hot(batch.atom_type, len(cfg.atom_types)).float() * cfg.onehot_scale]
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
    """The discrete molecule read off a state: per atom type index and charge, per pair bond order."""

    pos: torch.Tensor  # (N, 3)
    atom_type: torch.Tensor  # (N,)
    charge: torch.Tensor  # (N,)
    bond: torch.Tensor | None  # (P,) 0–3 or None when bonds are not in the chain


def decode(state: State, cfg: FeatureConfig) -> Decoded:
    """Argmax of every one-hot block (EDM's decoding at t = 0)."""
    k = len(cfg.atom_types)
    atom_type = state.h[:, :k].argmax(dim=1)
    if cfg.include_charge:
        start = k + int(cfg.include_z)
        charge = state.h[:, start:start + len(CHARGES)].argmax(dim=1) + CHARGES[0]
    else:
        charge = torch.zeros_like(atom_type)
    bond = state.e.argmax(dim=1) if state.e is not None else None
    return Decoded(state.x, atom_type, charge, bond)
