"""Noise schedules ᾱ_t (t = 0..T) for the variance-preserving chain; α_t² + σ_t² = 1."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

KINDS = ("polynomial_2", "cosine", "linear")


@dataclass(frozen=True)
class ScheduleConfig:
    """Which schedule, how many steps, and the precision s that keeps ᾱ inside (s, 1 − s)."""

    kind: str = "polynomial_2"
    timesteps: int = 1000
    precision: float = 1e-5


def _clip_steps(alpha2: np.ndarray, clip: float) -> np.ndarray:
    """Clip each step's ratio ᾱ_t/ᾱ_{t−1} at ≥ ``clip`` (ᾱ_{−1} = 1) and rebuild the product."""
    ratios = alpha2 / np.concatenate([[1.0], alpha2[:-1]])
    return np.cumprod(np.clip(ratios, clip, 1.0))


def alpha_bar(cfg: ScheduleConfig) -> np.ndarray:
    """ᾱ_t = α_t² for t = 0..T as float64 (EDM notation: α_t is the signal scale, not a step ratio)."""
    T = cfg.timesteps
    if T < 1:
        raise ValueError("a schedule needs at least one step")
    t = np.arange(T + 1, dtype=np.float64)
    if cfg.kind.startswith("polynomial_"):
        power = float(cfg.kind.split("_", 1)[1])
        raw = _clip_steps((1.0 - (t / (T + 1)) ** power) ** 2, 0.001)
    elif cfg.kind == "cosine":
        s = 0.008
        f = np.cos((t / (T + 1) + s) / (1 + s) * math.pi / 2) ** 2
        raw = _clip_steps(f / f[0], 0.001)
    elif cfg.kind == "linear":
        # DDPM's 1e-4 … 0.02 over 1000 steps, rescaled to T steps; β capped at 0.999 for very short chains.
        betas = np.minimum(np.linspace(1e-4, 0.02, T) * 1000 / T, 0.999)
        raw = np.concatenate([[1.0], np.cumprod(1.0 - betas)])
    else:
        raise ValueError(f"unknown noise schedule {cfg.kind!r}; choose from {', '.join(KINDS)}")
    return (1.0 - 2.0 * cfg.precision) * raw + cfg.precision


class NoiseSchedule:
    """Tables of α_t, σ_t and SNR_t for integer t, kept in float64 and handed out in the caller's dtype."""

    def __init__(self, cfg: ScheduleConfig = ScheduleConfig()):
        self.cfg = cfg
        self.T = cfg.timesteps
        self.alpha2 = torch.from_numpy(alpha_bar(cfg))
        self.sigma2 = 1.0 - self.alpha2

    def alpha(self, t: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        return self.alpha2.to(t.device)[t].sqrt().to(dtype)

    def sigma(self, t: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        return self.sigma2.to(t.device)[t].sqrt().to(dtype)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio α_t²/σ_t² in float64."""
        a2 = self.alpha2.to(t.device)[t]
        return a2 / (1.0 - a2)
