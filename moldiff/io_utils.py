"""Atomic file writes: a crash never leaves a half-written output behind. No torch here."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The result gets the usual permissions (0666 minus the umask), not the temporary file's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, text.encode("utf-8"))


def remove_stale_tmp(directory: str | os.PathLike, older_than: float | None = None) -> list[Path]:
    """Remove the temporary files an interrupted :func:`atomic_path` left in ``directory`` (``.<name>.<random>.tmp``
    older than ``older_than``, a Unix time, by default this process's start); returns what was removed."""
    import time

    directory = Path(directory)
    cutoff = older_than if older_than is not None else time.time() - time.monotonic() + _START_MONOTONIC
    removed = []
    try:
        candidates = list(directory.glob(".*.tmp"))
    except OSError:
        return removed
    for path in candidates:
        try:
            if path.is_file() and path.stat().st_mtime < cutoff and path.name.count(".") >= 3:
                path.unlink()
                removed.append(path)
        except OSError:
            pass
    return removed


def _monotonic() -> float:
    import time
    return time.monotonic()


_START_MONOTONIC = _monotonic()
