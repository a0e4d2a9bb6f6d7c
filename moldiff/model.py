"""A trained generator in one object: features, network, chain and the training-set statistics."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from torch import nn

from moldiff.checkpoint import load_checkpoint
from moldiff.config import RunConfig, config_from_checkpoint
from moldiff.data.store import DatasetStats
from moldiff.diffusion.chain import DiffusionChain
from moldiff.diffusion.schedule import NoiseSchedule
from moldiff.nn import registry


def build_network(cfg: RunConfig, kernel: str = "fast") -> nn.Module:
    """The ε-network a config describes (its kind through the registry), input sizes from its features."""
    return registry.build_network(cfg.network, cfg.model, cfg.features.h_dim, cfg.features.e_dim, cfg.cond_dim,
                                  kernel=kernel)


@dataclass
class Generator:
    """Network + chain + statistics: everything sampling needs, nothing of the training code."""

    config: RunConfig
    network: nn.Module
    chain: DiffusionChain
    stats: DatasetStats
    info: dict

    @staticmethod
    def from_config(cfg: RunConfig, stats: DatasetStats, network: nn.Module | None = None) -> "Generator":
        return Generator(cfg, network or build_network(cfg), DiffusionChain(NoiseSchedule(cfg.schedule)), stats, {})

    @staticmethod
    def from_checkpoint(path: str | Path, weights: str = "ema", device: str | torch.device = "cpu") -> "Generator":
        """Load a checkpoint's network (its EMA weights by default) without the dataset or training flags."""
        blob = load_checkpoint(path)
        cfg = config_from_checkpoint(blob["config"])
        gen = Generator.from_config(cfg, DatasetStats.from_dict(blob["stats"]))
        key = weights if weights in blob else "model"
        gen.network.load_state_dict(blob[key])
        gen.network.to(device).eval()
        gen.info = {"step": blob.get("step"), "epoch": blob.get("epoch"), "hours": blob.get("hours"),
                    "weights": key, "path": str(path)}
        return gen

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device
