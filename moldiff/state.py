"""The diffusion state of a batch of molecules and its graph bookkeeping: shared by the chain, the network and
the sampling loop, and owned by none of them."""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch_geometric.utils import scatter

FIELDS = ("x", "h", "e")


class Graph(NamedTuple):
    """Which molecule each atom belongs to, and every atom pair (i < j) of each molecule."""

    batch: torch.Tensor  # (N,) molecule of each atom
    pair_index: torch.Tensor  # (2, P) atom pairs, i < j, within one molecule
    num_graphs: int

    @property
    def pair_batch(self) -> torch.Tensor:
        return self.batch[self.pair_index[0]]

    @property
    def n_atoms(self) -> torch.Tensor:
        return torch.bincount(self.batch, minlength=self.num_graphs)

    def rows(self, kind: str) -> torch.Tensor:
        """The molecule of each row of a field: atoms for x and h, pairs for e."""
        return self.pair_batch if kind == "e" else self.batch


class State(NamedTuple):
    """Coordinates ``x`` (N, 3), node features ``h`` (N, F) and pair features ``e`` (P, B) or None."""

    x: torch.Tensor
    h: torch.Tensor
    e: torch.Tensor | None = None

    def map(self, fn: Callable[[torch.Tensor, str], torch.Tensor]) -> "State":
        """Apply ``fn(tensor, kind)`` to every field; kind is "x", "h" or "e"."""
        return State(fn(self.x, "x"), fn(self.h, "h"), None if self.e is None else fn(self.e, "e"))

    def combine(self, fn: Callable[..., torch.Tensor], *others: "State") -> "State":
        """Field by field ``fn(kind, self_field, *other_fields)``; a field that is None in ``self`` stays None."""
        return State(*(None if f is None else fn(k, f, *(getattr(o, k) for o in others))
                       for k, f in zip(FIELDS, self)))

    def fields(self) -> dict[str, torch.Tensor]:
        """The fields that are present, by kind."""
        return {k: f for k, f in zip(FIELDS, self) if f is not None}


def per_graph(coef: torch.Tensor, kind: str, graph: Graph) -> torch.Tensor:
    """A per-molecule coefficient (G,) broadcast to the rows of field ``kind``: (rows, 1)."""
    return coef[graph.rows(kind)].unsqueeze(-1)


def affine(graph: Graph, a: torch.Tensor, u: State, b: torch.Tensor, v: State) -> State:
    """a·u + b·v field by field, with per-molecule coefficients ``a`` and ``b`` (G,)."""
    return u.combine(lambda k, p, q: per_graph(a, k, graph) * p + per_graph(b, k, graph) * q, v)


def remove_mean(x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Project coordinates onto the zero centre-of-mass subspace of each molecule."""
    mean = scatter(x, batch, dim=0, dim_size=num_graphs, reduce="mean")
    return x - mean[batch]


def per_graph_sum(values: torch.Tensor, index: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Sum of all entries of each row's molecule: (rows, ...) → (num_graphs,)."""
    return scatter(values.reshape(values.shape[0], -1).sum(1), index, dim=0, dim_size=num_graphs, reduce="sum")
