"""Process-level settings: how many threads to use on a shared machine."""
from __future__ import annotations

import pytest
import torch

from moldiff.runtime import free_cores, set_threads


@pytest.mark.parametrize("load, cores, expected", [
    (0.0, 2, 2), (0.4, 2, 2), (0.6, 2, 1), (1.0, 2, 1), (3.7, 2, 1), (1.2, 16, 15), (0.0, 1, 1), (-1.0, 4, 4)])
def test_free_cores(load, cores, expected):
    assert free_cores(load, cores) == expected


def test_set_threads_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        n = set_threads(None)
        assert 1 <= n == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("text, expected", [
    ("1.07 1.87 1.99 1/345 12345\n", 0.0),   # a job just ended: the average lags, nothing else runs now
    ("1.07 1.87 1.99 3/345 12345\n", 1.07),  # two others run now: the average is the smaller figure
    ("0.20 0.50 0.90 2/345 12345\n", 0.2),
])
def test_busy_elsewhere(text, expected):
    from moldiff.runtime import busy_elsewhere

    assert busy_elsewhere(text) == pytest.approx(expected)
