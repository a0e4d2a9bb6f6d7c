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


# what each kind of checkpoint must hold, and the type of each entry
_REQUIRED = {
    "inference": {"config": dict, "stats": dict, "model": dict},
    "training": {"config": dict, "stats": dict, "model": dict, "ema": dict, "optimizer": dict,
                 "run_state": dict, "ema_updates": int},
}


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", kind: str | None = None) -> dict:
    """Read a checkpoint as data only (``weights_only=True``); a clear one-line error for anything else.

    ``kind`` "inference" (what sampling needs) or "training" (what resuming needs) also checks that the
    checkpoint holds those entries with the right types before anything is built from it.
    """
    if kind is not None and kind not in _REQUIRED:
        raise ValueError(f"unknown checkpoint kind {kind!r}; use one of {', '.join(_REQUIRED)}")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}" if not path.exists() else
                              f"{path} is not a regular file")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load fails in many ways on foreign bytes; all mean the same
        # torch's own message advises loading with weights_only=False, i.e. running the file's code: never pass it on
        # (an unpickler that met a GLOBAL: the file names Python objects to build; any other failure: bytes
        # that are not a checkpoint, e.g. a copy cut short, an empty file, a text file)
        unsafe = "GLOBAL" in str(err) or "Unsupported global" in str(err)
        why = ("it holds Python objects besides tensors and plain data (refused: a checkpoint is data, never "
               "code)") if unsafe else "it is damaged or not a PyTorch file"
        raise CheckpointError(f"cannot read checkpoint {path}: {why}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a moldiff checkpoint")
    if kind is not None:
        check_structure(blob, kind, path)
    return blob


def check_structure(blob: dict, kind: str, path: str | Path = "checkpoint") -> None:
    """Raise CheckpointError naming the first entry a ``kind`` checkpoint lacks or holds with the wrong type."""
    for key, typ in _REQUIRED[kind].items():
        if key not in blob:
            what = " (an exported sampling file cannot resume training)" if kind == "training" and "model" in blob else ""
            raise CheckpointError(f"{path} cannot be used for {kind}: it has no '{key}'{what}")
        if not isinstance(blob[key], typ) or isinstance(blob[key], bool):
            raise CheckpointError(f"{path}: '{key}' should be a {typ.__name__}, not {type(blob[key]).__name__}")
    for key in ("model", "ema") if kind == "training" else ("model",):
        bad = [k for k, v in blob[key].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{path}: '{key}' must map parameter names to tensors")


def inference_blob(blob: dict) -> dict:
    """What sampling needs from a training checkpoint: config, statistics, the EMA weights and the record of
    how it was trained (steps, epochs, hours); no optimizer, no raw weights."""
    keep = {k: blob[k] for k in ("config", "stats", "step", "epoch", "hours") if k in blob}
    weights = blob.get("ema", blob["model"])
    keep["model"] = {k: v.detach().clone().contiguous() for k, v in weights.items()}
    return keep
