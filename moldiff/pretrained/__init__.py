"""Models that ship inside the package, addressed by name."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = {"qm9": "qm9.pt", "moses": "moses.pt", "qm9-cond": "qm9-cond.pt"}
"""Built-in name -> file: ``qm9`` (QM9, heavy atoms, RDKit places the hydrogens), ``moses`` (drug-like, the MOSES
training set, likewise) and ``qm9-cond`` (``qm9`` conditioned on QM9's six properties)."""


def pretrained_path(name: str = "qm9") -> Path:
    """The file of a shipped model; a clear error for an unknown name or a missing file."""
    if name not in MODELS:
        raise ValueError(f"unknown pretrained model {name!r}; available: {', '.join(MODELS)}")
    path = HERE / MODELS[name]
    if not path.is_file():
        raise FileNotFoundError(f"the pretrained model {name!r} is not installed ({path} missing)")
    return path


def resolve_model(name_or_path: str | Path) -> Path:
    """``--model``: a built-in name (``qm9``, ``moses``, ``qm9-cond``) or the path of a checkpoint file."""
    text = str(name_or_path)
    if text in MODELS:
        return pretrained_path(text)
    path = Path(text)
    if path.suffix == ".pt" or path.exists() or "/" in text:
        return path
    raise ValueError(f"unknown model {text!r}: a built-in name ({', '.join(MODELS)}) or a checkpoint file")
