"""Models that ship inside the package, addressed by name."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = {"qm9": "qm9.pt"}


def pretrained_path(name: str = "qm9") -> Path:
    """The file of a shipped model; a clear error for an unknown name or a missing file."""
    if name not in MODELS:
        raise ValueError(f"unknown pretrained model {name!r}; available: {', '.join(MODELS)}")
    path = HERE / MODELS[name]
    if not path.is_file():
        raise FileNotFoundError(f"the pretrained model {name!r} is not installed ({path} missing)")
    return path
