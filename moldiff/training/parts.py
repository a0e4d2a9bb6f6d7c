"""Small pieces of a training step: EMA with warm-up, the learning-rate warm-up, per-step generators, random
rotations and the run's counters."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch


def step_generator(seed: int, rank: int, step: int, device: torch.device) -> torch.Generator:
    """The generator of one training step: a pure function of (seed, rank, step)."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + rank * 7_919 + step * 104_729) % (2**63 - 1))
    return g


def random_rotations(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """n uniformly random proper rotations (QR of Gaussian matrices, signs fixed, det = +1)."""
    a = torch.randn(n, 3, 3, generator=generator, device=device)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)
    det = torch.linalg.det(q)
    q[:, :, 0] = q[:, :, 0] * det.unsqueeze(1)
    return q


class EMA:
    """Exponential moving average of the weights; with warm-up the decay is min(d, (1+n)/(10+n))."""

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool):
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - d)


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to the base learning rate, constant afterwards."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr


@dataclass
class RunState:
    """Where a run stands; saved in its checkpoint."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    hours: float = 0.0  # wall-clock hours of training and evaluation, all devices
    gpu_hours: float = 0.0  # the part of ``hours`` spent on a GPU
    cpu_hours: float = 0.0  # CPU time of the training process over the same spans, all its threads (core-hours)
