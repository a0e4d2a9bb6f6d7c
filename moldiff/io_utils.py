"""Atomic file writes: a crash never leaves a half-written output behind. No torch here."""
from __future__ import annotations

import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_IMPORTED = time.time()


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


# what atomic_path leaves behind when the process dies between creating and replacing: ".{name}.XXXXXXXX.tmp"
# (tempfile.mkstemp: 8 characters of [a-z0-9_]; 6 to 16 accepted)
_TMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{6,16}\.tmp$")


def process_start_time() -> float:
    """When this process started (seconds since the epoch): from /proc where it exists, else when this module
    was imported (before any atomic write of this process)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return min(_IMPORTED, boot + ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED


def remove_stale_tmp(directory: str | os.PathLike, name: str | None = None,
                     older_than: float | None = None) -> list[Path]:
    """Remove the temporary files an interrupted :func:`atomic_path` left in ``directory`` (for the output
    ``name`` only, when given); returns the paths removed.

    Only regular files (not links) named like atomic_path's (``.{name}.XXXXXXXX.tmp``) and last modified before
    ``older_than`` (a Unix time; default: when this process started) are removed: nothing else, and no temporary
    file of a write in progress in this process.
    """
    directory = Path(directory)
    started = process_start_time() if older_than is None else older_than
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _TMP_PATTERN.match(entry.name)
        if not match or (name is not None and match["name"] != name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_mtime >= started:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed
