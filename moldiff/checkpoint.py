"""Checkpoints: plain data (config, statistics, tensors), written atomically, loaded with weights_only."""
from __future__ import annotations

from pathlib import Path

import torch

from moldiff.io_utils import atomic_path

FORMAT = "moldiff-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or not a moldiff checkpoint."""


def save_checkpoint(blob: dict, path: str | Path) -> None:
    """Write ``blob`` (tagged with the format) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **blob}, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint as data only (``weights_only=True``); a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load fails in many ways on foreign bytes; all mean the same
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a moldiff checkpoint")
    return blob


def inference_blob(blob: dict) -> dict:
    """What sampling needs from a training checkpoint: config, statistics, the EMA weights and the record of
    how it was trained (steps, epochs, hours); no optimizer, no raw weights."""
    keep = {k: blob[k] for k in ("config", "stats", "step", "epoch", "hours") if k in blob}
    weights = blob.get("ema", blob["model"])
    keep["model"] = {k: v.detach().clone().contiguous() for k, v in weights.items()}
    return keep
