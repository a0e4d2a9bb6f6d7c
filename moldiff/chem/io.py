"""Read and write molecule files (SDF, XYZ, SMILES, each optionally gzip-compressed) with per-record errors.

Readers never stop at a bad record: every problem becomes one message naming the file and the record,
and the readable records are still returned. Molecules are read unsanitised, so that chemistry (valence,
charges) is judged by the metrics, not rejected by the reader. Each molecule gets the property
``moldiff_source`` = ``<file name>#<record number>`` (1-based). Only regular files are opened (never a FIFO,
a device or a folder); files are read line by line, records larger than the limits are refused before RDKit
sees them, and messages quote file content only as short escaped excerpts.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence, TextIO

import numpy as np
from rdkit import Chem, rdBase

from moldiff.chem.readers import MAX_ATOMS, MAX_RECORD_CHARS, PARSERS, FileTooLarge, Lines
from moldiff.chem.text import EXCERPT, clean_title, printable
from moldiff.chem.writers import WRITERS
from moldiff.io_utils import atomic_write

MAX_FILE_BYTES = 1 << 30
"""Files larger than this (after decompression) are refused: their molecules would not fit a small machine."""

SDF_SUFFIXES = (".sdf", ".mol", ".sd")
XYZ_SUFFIXES = (".xyz",)
SMILES_SUFFIXES = (".smi", ".smiles", ".txt")
CSV_SUFFIXES = (".csv",)
SOURCE_PROP = "moldiff_source"

__all__ = [
    "EXCERPT", "MAX_ATOMS", "MAX_FILE_BYTES", "MAX_RECORD_CHARS", "SOURCE_PROP", "check_molecule", "clean_title",
    "file_format", "iter_molecules", "not_regular", "printable", "read_molecules", "write_molecules",
]


def file_format(path: Path) -> str | None:
    """``sdf``, ``xyz``, ``smi`` or ``csv`` from the file name's suffix (a ``.gz`` after it allowed), ``None`` if unknown."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gz":
        suffix = Path(path.stem).suffix.lower()
    for name, suffixes in (("sdf", SDF_SUFFIXES), ("xyz", XYZ_SUFFIXES), ("smi", SMILES_SUFFIXES),
                            ("csv", CSV_SUFFIXES)):
        if suffix in suffixes:
            return name
    return None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def not_regular(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it exists but is not a regular file (``"a directory"``, ``"a named pipe (FIFO)"``,
    …), else ``None``. Symbolic links are followed; nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else _kind(mode)


def check_molecule(mol: Chem.Mol, max_atoms: int = MAX_ATOMS) -> str | None:
    """Reason why a parsed molecule is unusable (too big, unknown element, non-finite coordinates), or None."""
    n = mol.GetNumAtoms()
    if n == 0:
        return "no atoms"
    if n > max_atoms:
        return f"{n} atoms, more than the limit of {max_atoms}"
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() == 0:
            return f"atom {atom.GetIdx() + 1}: unknown element '{printable(atom.GetSymbol(), 12)}'"
    for conf in mol.GetConformers():
        if not np.isfinite(conf.GetPositions()).all():
            return "coordinates contain NaN or inf"
    return None


class _Refused(Exception):
    """The file is not read at all (the message says why)."""


def _open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading; a FIFO, device or folder is refused before it is opened, and once more
    on the open descriptor (``O_NONBLOCK``: opening a FIFO swapped in meanwhile does not wait for a writer)."""
    kind = not_regular(path)
    if kind:
        raise _Refused(f"{kind}, not a regular file: refused")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise _Refused(f"cannot read: {printable(exc.strerror or str(exc))}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Refused(f"{_kind(info.st_mode)}, not a regular file: refused")
        if info.st_size > MAX_FILE_BYTES:
            raise _Refused(f"{info.st_size >> 20:,} MB, larger than the limit of {MAX_FILE_BYTES >> 20:,} MB: "
                           "refused (split it)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def _open_text(path: Path) -> Iterator[TextIO]:
    """The file as UTF-8 text (undecodable bytes replaced, a BOM dropped, any newline convention), gunzipped
    when its name ends in ``.gz``."""
    with contextlib.ExitStack() as stack:
        raw: BinaryIO = stack.enter_context(_open_regular(path))
        if path.suffix.lower() == ".gz":
            raw = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        yield stack.enter_context(io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline=None))


def read_molecules(path: str | os.PathLike, max_atoms: int = MAX_ATOMS) -> tuple[list[Chem.Mol], list[str]]:
    """Read every molecule of an SDF, XYZ, SMILES or CSV file (``.gz`` allowed); returns (molecules, messages)."""
    mols: list[Chem.Mol] = []
    messages: list[str] = []
    for item in iter_molecules(path, max_atoms):
        (messages if isinstance(item, str) else mols).append(item)
    return mols, messages


def iter_molecules(path: str | os.PathLike, max_atoms: int = MAX_ATOMS) -> Iterator[Chem.Mol | str]:
    """The molecules of a file one at a time, in file order, each bad record a message string in its place
    (so that a large file never sits in memory at once); file-level problems are messages too."""
    path = Path(path)
    where = printable(str(path), 500)
    kind = file_format(path)
    if kind is None:
        yield (f"{where}: unknown file type '{printable(path.suffix, 20)}' (expected .sdf/.mol, .xyz, .smi or "
               ".csv, optionally .gz)")
        return
    lines = None
    found = False
    try:
        with _open_text(path) as stream, rdBase.BlockLogs():
            lines = Lines(stream, MAX_RECORD_CHARS, MAX_FILE_BYTES)
            for item in PARSERS[kind](lines, max_atoms):
                found = True
                if isinstance(item, str):
                    yield f"{where}: {item}"
                    continue
                number, mol = item
                problem = check_molecule(mol, max_atoms)
                if problem:
                    yield f"{where}: record {number}: {problem}"
                    continue
                mol.SetProp(SOURCE_PROP, f"{path.name}#{number}")
                yield mol
    except _Refused as exc:
        yield f"{where}: {exc}"
        return
    except FileTooLarge:
        yield f"{where}: more than {MAX_FILE_BYTES >> 20:,} MB of text: refused (split it)"
        return
    except EOFError:  # gzip: the compressed stream stops early; the complete records before are kept
        at = f" after line {lines.line_number}" if lines is not None and lines.line_number else ""
        yield f"{where}: truncated gzip file: the compressed data ends early{at}"
        return
    except (OSError, zlib.error) as exc:
        reason = printable(str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc))
        what = "not a valid gzip file" if path.suffix.lower() == ".gz" else "cannot read"
        at = f" (after line {lines.line_number})" if lines is not None and lines.line_number else ""
        yield f"{where}: {what}{at}: {reason}"
        return
    if not found:
        yield f"{where}: empty file, no molecules" if not lines.saw_text else f"{where}: no molecules found"


def write_molecules(mols: Sequence[Chem.Mol | None], path: str | os.PathLike) -> tuple[int, list[str]]:
    """Write molecules to ``.sdf``, ``.xyz`` or ``.smi`` atomically; returns (written, skipped-record messages).

    ``None`` entries and molecules that cannot be written in the format (e.g. no 3D for XYZ) are skipped
    with a message. The file appears complete or not at all (temporary file + ``os.replace``).
    """
    path = Path(path)
    kind = file_format(path) if path.suffix.lower() != ".gz" else None
    if kind is None:
        raise ValueError(f"{path}: unknown file type {path.suffix!r} (expected .sdf, .xyz or .smi; compressed "
                         "output is not written)")
    convert = WRITERS[kind]
    chunks, messages = [], []
    with rdBase.BlockLogs():
        for k, mol in enumerate(mols, start=1):
            if mol is None:
                messages.append(f"{path}: molecule {k}: nothing to write (None)")
                continue
            try:
                chunks.append(convert(mol))
            except (ValueError, RuntimeError) as exc:
                messages.append(f"{path}: molecule {k}: {exc}")
    atomic_write(path, "".join(chunks).encode("utf-8"))
    return len(chunks), messages


