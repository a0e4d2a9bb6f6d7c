"""Noise schedules: the variance-preserving identities and the exact values of docs/chain.md §2."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moldiff.diffusion.schedule import KINDS, NoiseSchedule, ScheduleConfig, _clip_steps, alpha_bar


def _reference(kind: str, T: int, s: float) -> list[float]:
    """An independent, scalar re-computation of ᾱ_t (t = 0..T) in plain Python floats.

    polynomial_2 (docs/chain.md §2): α̂²_t = (1 − (t/(T+1))²)²; the per-step ratio α̂²_t/α̂²_{t−1}
    (α̂²_{−1} = 1) is clipped at ≥ 0.001 and the product rebuilt; then α² = (1 − 2s)·α̂² + s.
    cosine: f(t) = cos²(((t/(T+1)) + 0.008)/1.008 · π/2), normalised by f(0), clipped the same way.
    """
    if kind == "polynomial_2":
        raw = [(1.0 - (t / (T + 1)) ** 2) ** 2 for t in range(T + 1)]
    elif kind == "cosine":
        f = [math.cos((t / (T + 1) + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(T + 1)]
        raw = [v / f[0] for v in f]
    else:
        raise ValueError(kind)
    out, prod, prev = [], 1.0, 1.0
    for v in raw:
        prod *= max(v / prev, 0.001)  # ratios of the *unclipped* values, as docs/chain.md §2 / EDM do
        prev = v
        out.append((1.0 - 2.0 * s) * prod + s)
    return out


@pytest.mark.parametrize("kind,T", [("polynomial_2", 1000), ("polynomial_2", 7), ("cosine", 1000), ("cosine", 12)])
def test_alpha_bar_matches_independent_computation(kind, T):
    ref = _reference(kind, T, 1e-5)
    got = alpha_bar(ScheduleConfig(kind, T, 1e-5))
    assert got.dtype == np.float64 and got.shape == (T + 1,)
    for t in sorted({0, 1, 2, T // 4, T // 2, T - 1, T}):
        # a few ulps of accumulated product over ≤ 1001 factors: 1e-12 relative is far above rounding
        assert got[t] == pytest.approx(ref[t], rel=1e-12, abs=0), (kind, T, t)


def test_polynomial_2_known_values():
    """Spot values worked out by hand for T = 1000, s = 1e-5 (no step ratio is clipped for this kind)."""
    a = alpha_bar(ScheduleConfig("polynomial_2", 1000, 1e-5))
    s = 1e-5
    for t in (0, 500, 1000):
        hat = (1.0 - (t / 1001) ** 2) ** 2
        assert a[t] == pytest.approx((1 - 2 * s) * hat + s, rel=1e-12)
    assert a[0] == pytest.approx(1.0 - 1e-5, abs=1e-15)  # α̂²_0 = 1 → (1 − 2s) + s
    # α̂²_T = ((2T + 1)/(T + 1)²)² ≈ 4.0e-6, then mapped into (s, 1 − s)
    assert a[1000] == pytest.approx((1 - 2 * s) * (2001 / 1001 ** 2) ** 2 + s, rel=1e-12)


def test_step_ratio_clip():
    """The clip acts on each step's ratio (ᾱ_{−1} = 1) and the product is rebuilt from the clipped ratios.

    (No ratio of polynomial_2 or cosine reaches the clip for any T, the smallest being ≈ 0.25, so the clip
    is checked on the helper directly.)
    """
    raw = np.array([0.5, 0.25, 1e-5, 1e-9])
    got = _clip_steps(raw, 0.001)
    # ratios 0.5, 0.5, 4e-5 → 0.001, 1e-4 → 0.001
    assert np.allclose(got, [0.5, 0.25, 0.25e-3, 0.25e-6], rtol=1e-14, atol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [1000, 50])
def test_variance_preserving_and_monotone_snr(kind, T):
    sched = NoiseSchedule(ScheduleConfig(kind, T))
    t = torch.arange(T + 1)
    a, s = sched.alpha(t, torch.float64), sched.sigma(t, torch.float64)
    # α² + σ² = 1: both come from the same float64 table, so only a rounding of the sqrt/square remains
    assert torch.allclose(a ** 2 + s ** 2, torch.ones_like(a), rtol=0, atol=1e-14)
    assert sched.alpha2.dtype == torch.float64
    # ᾱ stays inside (s, 1 − s), so σ > 0 everywhere and SNR is finite
    p = sched.cfg.precision
    assert bool((sched.alpha2 > p).all()) and bool((sched.alpha2 < 1 - p).all())
    snr = sched.snr(t)
    assert snr.dtype == torch.float64 and bool(torch.isfinite(snr).all())
    assert bool((snr[1:] < snr[:-1]).all()), "SNR must decrease strictly with t"
    assert torch.allclose(snr, a ** 2 / s ** 2, rtol=1e-12, atol=0)


def test_alpha_sigma_dtype_and_indexing():
    sched = NoiseSchedule(ScheduleConfig("polynomial_2", 100))
    t = torch.tensor([0, 3, 100, 3])
    a32 = sched.alpha(t)
    assert a32.dtype == torch.float32
    assert torch.equal(a32, sched.alpha2[t].sqrt().float())
    assert sched.sigma(t, torch.float64)[1] == sched.sigma(t, torch.float64)[3]


def test_invalid_configs():
    with pytest.raises(ValueError):
        alpha_bar(ScheduleConfig("quadratic", 10))
    with pytest.raises(ValueError):
        alpha_bar(ScheduleConfig("polynomial_2", 0))


@pytest.mark.parametrize("T", [2, 10, 19])
def test_linear_schedule_short_chain_is_valid(T):
    sched = NoiseSchedule(ScheduleConfig("linear", T))
    t = torch.arange(T + 1)
    assert bool((sched.alpha2 > 0).all()) and bool(torch.isfinite(sched.alpha(t, torch.float64)).all())
    assert bool((sched.snr(t)[1:] < sched.snr(t)[:-1]).all())
