"""Where moldiff keeps processed data and caches."""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MOLDIFF_DATA"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``override``, else ``$MOLDIFF_DATA``, else ``data/cache`` of a source checkout,
    else ``~/.cache/moldiff``."""
    if override:
        return Path(override)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    checkout = Path(__file__).resolve().parents[1] / "data"
    if checkout.is_dir():
        return checkout / "cache"
    return Path.home() / ".cache" / "moldiff"
