"""Every ε-network kind by name: the config names one, :func:`build_network` builds it.

A network implements ``forward(z: State, t: Tensor, graph: Graph, cond: Tensor | None = None) -> State``
(see :class:`moldiff.nn.egnn.EGNN` for the shapes); it knows nothing of noise schedules or datasets.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from moldiff.nn.egnn import EGNN

# kind → constructor(model config, h_dim, e_dim, cond_dim, kernel)
NETWORKS: dict[str, Callable[..., nn.Module]] = {"egnn": EGNN}


def build_network(kind: str, model_cfg, h_dim: int, e_dim: int = 0, cond_dim: int = 0,
                  kernel: str = "fast") -> nn.Module:
    """The network of kind ``kind`` for the given input sizes."""
    if kind not in NETWORKS:
        raise ValueError(f"unknown network kind {kind!r}; choose from {', '.join(NETWORKS)}")
    return NETWORKS[kind](model_cfg, h_dim, e_dim, cond_dim=cond_dim, kernel=kernel)
