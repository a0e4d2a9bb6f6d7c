"""Shared fixtures for the chain and network tests: a batch of toy molecules of given sizes."""
from __future__ import annotations

import pytest
import torch

from moldiff.data.qm9 import complete_pairs
from moldiff.state import Graph


def _toy_graph(sizes: list[int], device: str = "cpu") -> Graph:
    """The complete-graph bookkeeping (pairs i < j, canonical order) of molecules of the given sizes."""
    sizes_t = torch.tensor(sizes, dtype=torch.long)
    offsets = (torch.cumsum(sizes_t, 0) - sizes_t).tolist()
    pairs = torch.cat([complete_pairs(n) + o for n, o in zip(sizes, offsets)], dim=1)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), sizes_t)
    return Graph(batch.to(device), pairs.to(device), len(sizes))


@pytest.fixture
def toy_graph():
    """``toy_graph(sizes)`` → Graph of complete molecules with those atom counts."""
    return _toy_graph
