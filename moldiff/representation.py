"""The featuriser and the decoder: how a molecule becomes the diffusion state and back (one-hot blocks of the
model's vocabulary, EDM's scaling, argmax decoding at t = 0). No dataset is named here: the classes come from
the :class:`~moldiff.vocab.Vocabulary` in the config."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from moldiff.elements import SYMBOLS
from moldiff.state import Graph, State, remove_mean
from moldiff.vocab import DEFAULT_BOND_ORDERS, Vocabulary


@dataclass(frozen=True)
class FeatureConfig:
    """Which features join the chain, their classes, and how they are scaled (EDM: x/1, one-hot/4, Z/10).

    ``atom_types``, ``charges`` and ``bond_orders`` are the model's vocabulary; left empty they are read from
    the training data when a run starts (:meth:`with_vocabulary`) and saved with the model from then on.
    ``implicit_h``: the chain carries heavy atoms only (the dataset's hydrogens are removed when it is
    loaded) and RDKit adds the hydrogens when a sample is decoded; it needs the bonds in the chain (hydrogen
    counts follow from bonds and charges, not from heavy-atom coordinates).
    """

    atom_types: tuple[str, ...] = ()
    charges: tuple[int, ...] = ()
    bond_orders: tuple[int, ...] = DEFAULT_BOND_ORDERS
    include_z: bool = True
    include_charge: bool = False
    include_bonds: bool = False
    onehot_scale: float = 0.25
    z_scale: float = 0.1
    implicit_h: bool = False

    def __post_init__(self) -> None:
        if self.implicit_h and "H" in self.atom_types:
            raise ValueError("implicit_h needs atom_types without 'H', e.g. atom_types = ['C', 'N', 'O', 'F']")
        if self.implicit_h and not self.include_bonds:
            raise ValueError("implicit_h needs include_bonds: hydrogens are added from the generated bonds")
        if self.atom_types:
            self.vocab  # validates the classes

    @property
    def resolved(self) -> bool:
        """Whether the vocabulary is set (else it is read from the training data)."""
        return bool(self.atom_types) and (bool(self.charges) or not self.include_charge)

    @property
    def vocab(self) -> Vocabulary:
        if not self.atom_types:
            raise ValueError("the feature vocabulary is not set yet: it is read from the training data")
        return Vocabulary(self.atom_types, self.charges or (0,), self.bond_orders)

    def with_vocabulary(self, vocab: Vocabulary) -> "FeatureConfig":
        """This config with the classes a dataset holds filled in where they are empty; raises when classes
        the config names explicitly miss something the data hold."""
        cfg = dataclasses.replace(self, atom_types=self.atom_types or vocab.elements,
                                  charges=self.charges or (vocab.charges if self.include_charge else ()))
        need_charges = vocab.charges if cfg.include_charge else ()
        need_orders = vocab.bond_orders if cfg.include_bonds else ()
        missing = cfg.vocab.missing(vocab.elements, need_charges, need_orders)
        if missing:
            raise ValueError(f"the training data hold {', '.join(missing)}, which the config's vocabulary "
                             f"lacks ({cfg.vocab})")
        return cfg

    @property
    def h_dim(self) -> int:
        return len(self.atom_types) + int(self.include_z) + (len(self.charges) if self.include_charge else 0)

    @property
    def e_dim(self) -> int:
        return 1 + len(self.bond_orders) if self.include_bonds else 0

    def categorical_blocks(self) -> list[tuple[str, slice, float]]:
        """(field, columns, scale) of each one-hot block, for the likelihood of the decoder."""
        k = len(self.atom_types)
        blocks = [("h", slice(0, k), self.onehot_scale)]
        if self.include_charge:
            start = k + int(self.include_z)
            blocks.append(("h", slice(start, start + len(self.charges)), self.onehot_scale))
        if self.include_bonds:
            blocks.append(("e", slice(0, self.e_dim), self.onehot_scale))
        return blocks


def graph_of(batch) -> Graph:
    """The Graph bookkeeping of a PyG batch made of :func:`moldiff.data.store.make_data` molecules."""
    return Graph(batch.batch, batch.pair_index, int(batch.num_graphs))


def _lookup(values: torch.Tensor, classes: tuple[int, ...], what: str, names=None) -> torch.Tensor:
    """Class index of each value; ValueError naming the first value outside ``classes``."""
    lo = min(min(classes), int(values.min())) if values.numel() else 0
    hi = max(max(classes), int(values.max())) if values.numel() else 0
    table = torch.full((hi - lo + 1,), -1, dtype=torch.long, device=values.device)
    table[torch.tensor(classes, device=values.device) - lo] = torch.arange(len(classes), device=values.device)
    idx = table[values.long() - lo]
    if bool((idx < 0).any()):
        bad = int(values[idx < 0][0])
        raise ValueError(f"{what} {names(bad) if names else bad} is not in the model's vocabulary {classes if names is None else tuple(names(c) for c in classes)}")
    return idx


def encode(batch, cfg: FeatureConfig) -> tuple[State, Graph]:
    """A PyG batch → the scaled diffusion state x0 (coordinates centred) and its graph."""
    graph = graph_of(batch)
    vocab = cfg.vocab
    columns = _lookup(batch.z, vocab.atomic_numbers, "element", lambda z: SYMBOLS[z - 1])
    parts = [F.one_hot(columns, len(vocab.elements)).float() * cfg.onehot_scale]
    if cfg.include_z:
        parts.append(batch.z.float().unsqueeze(1) * cfg.z_scale)
    if cfg.include_charge:
        idx = _lookup(batch.charge, vocab.charges, "formal charge")
        parts.append(F.one_hot(idx, len(vocab.charges)).float() * cfg.onehot_scale)
    e = None
    if cfg.include_bonds:
        e = F.one_hot(_lookup(batch.bond, (0,) + vocab.bond_orders, "bond order"), vocab.bond_classes).float()
        e = e * cfg.onehot_scale
    x = remove_mean(batch.pos.float(), graph.batch, graph.num_graphs)
    return State(x, torch.cat(parts, dim=1), e), graph


@dataclass
class Decoded:
    """The discrete molecule read off a state: per atom its element (index into the vocabulary's
    ``elements``) and formal charge, per pair its bond order (0 = none)."""

    pos: torch.Tensor  # (N, 3)
    atom_type: torch.Tensor  # (N,) index into cfg.atom_types
    charge: torch.Tensor  # (N,)
    bond: torch.Tensor | None  # (P,) bond order, 0 = no bond; None when bonds are not in the chain

    def elements(self, cfg: FeatureConfig) -> list[str]:
        """Element symbols of the atoms."""
        return [cfg.atom_types[k] for k in self.atom_type.tolist()]


def decode(state: State, cfg: FeatureConfig) -> Decoded:
    """Argmax of every one-hot block (EDM's decoding at t = 0)."""
    k = len(cfg.atom_types)
    atom_type = state.h[:, :k].argmax(dim=1)
    if cfg.include_charge:
        start = k + int(cfg.include_z)
        values = torch.tensor(cfg.charges, device=state.h.device)
        charge = values[state.h[:, start:start + len(cfg.charges)].argmax(dim=1)]
    else:
        charge = torch.zeros_like(atom_type)
    bond = None
    if state.e is not None:
        orders = torch.tensor((0,) + tuple(cfg.bond_orders), device=state.e.device)
        bond = orders[state.e.argmax(dim=1)]
    return Decoded(state.x, atom_type, charge, bond)
