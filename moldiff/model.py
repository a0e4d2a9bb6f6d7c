"""A trained generator in one object: features, network, chain and the training-set statistics."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from moldiff.checkpoint import load_checkpoint
from moldiff.config import RunConfig
from moldiff.data.qm9 import DatasetStats
from moldiff.diffusion.chain import DiffusionChain
from moldiff.diffusion.schedule import NoiseSchedule
from moldiff.nn.egnn import EGNN


def build_network(cfg: RunConfig) -> EGNN:
    """The ε-network a config describes, with input sizes taken from its features."""
    return EGNN(cfg.model, cfg.features.h_dim, cfg.features.e_dim)


@dataclass
class Generator:
    """Network + chain + statistics: everything sampling needs, nothing of the training code."""

    config: RunConfig
    network: EGNN
    chain: DiffusionChain
    stats: DatasetStats
    info: dict

    @staticmethod
    def from_config(cfg: RunConfig, stats: DatasetStats, network: EGNN | None = None) -> "Generator":
        return Generator(cfg, network or build_network(cfg), DiffusionChain(NoiseSchedule(cfg.schedule)), stats, {})

    @staticmethod
    def from_checkpoint(path: str | Path, weights: str = "ema", device: str | torch.device = "cpu") -> "Generator":
        """Load a checkpoint's network (its EMA weights by default) without the dataset or training flags."""
        blob = load_checkpoint(path)
        cfg = RunConfig.from_dict(blob["config"])
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
