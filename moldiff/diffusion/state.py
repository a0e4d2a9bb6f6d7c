"""The diffusion state of a batch of molecules and the graph bookkeeping around it."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch_geometric.utils import scatter


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


class State(NamedTuple):
    """Coordinates ``x`` (N, 3), node features ``h`` (N, F) and pair features ``e`` (P, B) or None."""

    x: torch.Tensor
    h: torch.Tensor
    e: torch.Tensor | None = None

    def map(self, fn) -> "State":
        """Apply ``fn(tensor, kind)`` to every field; kind is "x", "h" or "e"."""
        return State(fn(self.x, "x"), fn(self.h, "h"), None if self.e is None else fn(self.e, "e"))


def remove_mean(x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Project coordinates onto the zero centre-of-mass subspace of each molecule."""
    mean = scatter(x, batch, dim=0, dim_size=num_graphs, reduce="mean")
    return x - mean[batch]


def per_graph_sum(values: torch.Tensor, index: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Sum of all entries of each row's molecule: (rows, ...) → (num_graphs,)."""
    return scatter(values.reshape(values.shape[0], -1).sum(1), index, dim=0, dim_size=num_graphs, reduce="sum")
