"""An E(3)-invariant property regressor: the ε-network's EGNN layers, summed over atoms, read out per property.

It judges molecules (e.g. the conditional benchmark's predictor of QM9 properties): the input is a clean state
(coordinates, atom features and, when present, pair features, as :func:`moldiff.representation.encode` makes
them), the output one value per property, invariant to rotations, translations and atom order.
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.utils import scatter

from moldiff.nn.egnn import EGNNConfig, EGNNLayer
from moldiff.state import Graph, State


class PropertyRegressor(nn.Module):
    """(State, Graph) → (G, outputs): EGNN layers over the complete graph of each molecule, then a sum over
    its atoms of a per-atom MLP."""

    def __init__(self, cfg: EGNNConfig, h_dim: int, e_dim: int, outputs: int):
        super().__init__()
        self.cfg = cfg
        self.embed_h = nn.Linear(h_dim, cfg.hidden)
        self.embed_e = nn.Linear(e_dim, cfg.edge_hidden) if e_dim else None
        self.layers = nn.ModuleList(EGNNLayer(cfg, bool(e_dim)) for _ in range(cfg.layers))
        self.atom_out = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden))
        self.readout = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, outputs))

    def forward(self, z: State, graph: Graph) -> torch.Tensor:
        h = self.embed_h(z.h)
        e = self.embed_e(z.e) if self.embed_e is not None else None
        i, j = graph.pair_index
        diff = z.x[i] - z.x[j]
        d0 = (diff * diff).sum(-1, keepdim=True)
        edges = (torch.cat([i, j]), torch.cat([j, i]))
        x = z.x
        for layer in self.layers:
            h, x, e = layer(h, x, e, graph.pair_index, d0, edges)
        pooled = scatter(self.atom_out(h), graph.batch, dim=0, dim_size=graph.num_graphs, reduce="sum")
        return self.readout(pooled)
