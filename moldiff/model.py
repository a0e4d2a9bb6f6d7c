"""A trained generator in one object: features, network, chain and the training-set statistics."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from torch import nn

from moldiff.checkpoint import CheckpointError, load_checkpoint
from moldiff.config import RunConfig, config_from_checkpoint
from moldiff.data.store import DatasetStats
from moldiff.diffusion.chain import DiffusionChain
from moldiff.diffusion.schedule import NoiseSchedule
from moldiff.nn import registry


def build_network(cfg: RunConfig, kernel: str = "fast") -> nn.Module:
    """The ε-network a config describes (its kind through the registry), input sizes from its features."""
    return registry.build_network(cfg.network, cfg.model, cfg.features.h_dim, cfg.features.e_dim, cfg.condition_dim,
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
        """Load a checkpoint's network (its EMA weights by default) without the dataset or training flags.
        A checkpoint whose structure, config or weights do not fit raises CheckpointError in one line."""
        blob = load_checkpoint(path, kind="inference")
        try:
            cfg = config_from_checkpoint(blob["config"])
            stats = DatasetStats.from_dict(blob["stats"])
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise CheckpointError(f"{path}: its config or statistics are not valid: {_excerpt(err)}") from None
        key = weights if isinstance(blob.get(weights), dict) else "model"
        try:
            gen = Generator.from_config(cfg, stats)
            gen.network.load_state_dict(blob[key])
        except (RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: its weights do not fit its config: {_excerpt(err)}") from None
        gen.network.to(device).eval()
        gen.info = {"step": blob.get("step"), "epoch": blob.get("epoch"), "hours": blob.get("hours"),
                    "weights": key, "path": str(path)}
        return gen

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device


def _excerpt(err: Exception, limit: int = 160) -> str:
    """The first telling line of an error (after load_state_dict's "Error(s) in loading…" header), shapes
    written short, cut to ``limit`` characters."""
    import re

    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    text = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0]
    text = re.sub(r"torch\.Size\((\[[^\]]*\])\)", r"\1", text)
    return text if len(text) <= limit else text[:limit] + "…"
