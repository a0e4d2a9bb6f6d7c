"""Read and write molecule files (SDF, XYZ, SMILES) with per-record errors.

Readers never stop at a bad record: every problem becomes one message naming the file and the record,
and the readable records are still returned. Molecules are read unsanitised, so that chemistry (valence,
charges) is judged by the metrics, not rejected by the reader. Each molecule gets the property
``moldiff_source`` = ``<file name>#<record number>`` (1-based).
"""
from __future__ import annotations

import gzip
import math
import os
import stat
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from rdkit import Chem, rdBase

from moldiff.chem.build import mol_positions
from moldiff.io_utils import atomic_write

MAX_ATOMS = 1000
"""Records with more atoms than this are refused (QM9 has at most 29, GEOM-drugs 181)."""
MAX_RECORD_CHARS = 200_000
"""A SMILES line, XYZ line or SDF record longer than this is refused before it is parsed (a 1,000-atom SDF
record takes about 100,000 characters)."""
MAX_FILE_BYTES = 1 << 30
"""Files (after decompression) larger than this are refused: read whole, they would not fit a small machine."""
EXCERPT = 60

SDF_SUFFIXES = (".sdf", ".mol", ".sd")
XYZ_SUFFIXES = (".xyz",)
SMILES_SUFFIXES = (".smi", ".smiles", ".txt")
SOURCE_PROP = "moldiff_source"


def printable(text: str, limit: int = EXCERPT) -> str:
    """``text`` safe for a terminal: control characters and escape sequences written as escapes (``\\x1b``),
    at most ``limit`` characters (then "…")."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit + 1])
    return out[:limit] + "…" if len(out) > limit or len(text) > limit else out


def clean_title(text: str) -> str:
    """A molecule title fit for one line of an output file: control characters become spaces."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def file_format(path: Path) -> str | None:
    """``sdf``, ``xyz`` or ``smi`` from the file name's suffix (a ``.gz`` after it allowed), ``None`` if unknown."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        suffix = Path(path.stem).suffix.lower()
    for name, suffixes in (("sdf", SDF_SUFFIXES), ("xyz", XYZ_SUFFIXES), ("smi", SMILES_SUFFIXES)):
        if suffix in suffixes:
            return name
    return None


def check_molecule(mol: Chem.Mol, max_atoms: int = MAX_ATOMS) -> str | None:
    """Reason why a parsed molecule is unusable (too big, unknown element, non-finite coordinates), or None."""
    n = mol.GetNumAtoms()
    if n == 0:
        return "no atoms"
    if n > max_atoms:
        return f"{n} atoms, more than the limit of {max_atoms}"
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() == 0:
            return f"atom {atom.GetIdx() + 1}: unknown element {atom.GetSymbol()!r}"
    for conf in mol.GetConformers():
        if not np.isfinite(conf.GetPositions()).all():
            return "coordinates contain NaN or inf"
    return None


def read_molecules(path: str | os.PathLike, max_atoms: int = MAX_ATOMS) -> tuple[list[Chem.Mol], list[str]]:
    """Read every molecule of an SDF, XYZ or SMILES file; returns (molecules, error messages)."""
    path = Path(path)
    kind = file_format(path)
    if kind is None:
        return [], [f"{path}: unknown file type {printable(path.suffix)!r} (expected .sdf/.mol, .xyz or .smi, "
                    "optionally .gz)"]
    text, problem = _read_text(path)
    if problem:
        return [], [f"{path}: {problem}"]
    if not text.strip():
        return [], [f"{path}: empty file, no molecules"]
    reader = {"sdf": _read_sdf, "xyz": _read_xyz, "smi": _read_smiles}[kind]
    with rdBase.BlockLogs():
        records, errors = reader(text, max_atoms)
    mols: list[Chem.Mol] = []
    messages = [f"{path}: {e}" for e in errors]
    for number, mol in records:
        problem = check_molecule(mol, max_atoms)
        if problem:
            messages.append(f"{path}: record {number}: {problem}")
            continue
        mol.SetProp(SOURCE_PROP, f"{path.name}#{number}")
        mols.append(mol)
    if not mols and not messages:
        messages.append(f"{path}: no molecules found")
    return mols, messages


def _read_text(path: Path) -> tuple[str, str | None]:
    """The file's text (gunzipped for ``.gz``), or why not: only regular files are opened (a FIFO, a device
    or a folder is refused before it is opened), and at most ``MAX_FILE_BYTES`` are read."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return "", f"cannot read: {exc.strerror or exc}"
    if not stat.S_ISREG(info.st_mode):
        return "", "not a regular file (a folder, device or pipe): refused"
    try:
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        what = "not a valid gzip file" if path.suffix.lower() == ".gz" else "cannot read"
        return "", f"{what}: {printable(str(getattr(exc, 'strerror', None) or exc))}"
    if len(data) > MAX_FILE_BYTES:
        return "", f"larger than {MAX_FILE_BYTES >> 20} MB: refused (split it)"
    return data.decode("utf-8", errors="replace"), None


def _read_sdf(text: str, max_atoms: int) -> tuple[list[tuple[int, Chem.Mol]], list[str]]:
    records, errors = [], []
    blocks = text.replace("\r\n", "\n").split("$$$$\n")
    if blocks and blocks[-1].rstrip().endswith("$$$$"):
        blocks[-1] = blocks[-1].rstrip()[:-4]
    for number, block in enumerate(blocks, start=1):
        if not block.strip():
            continue
        name = block.split("\n", 1)[0].strip()
        label = f"record {number}" + (f" ({printable(name)})" if name else "")
        if len(block) > MAX_RECORD_CHARS:
            errors.append(f"{label}: {len(block):,} characters, more than the limit of {MAX_RECORD_CHARS:,}: "
                          "not parsed")
            continue
        counts = block.split("\n")[3] if block.count("\n") >= 3 else ""
        if counts[:3].strip().isdigit() and int(counts[:3]) > max_atoms:
            errors.append(f"{label}: {int(counts[:3])} atoms, more than the limit of {max_atoms}: not parsed")
            continue
        if "M  END" not in block:
            errors.append(f"{label}: truncated mol block (no 'M  END' line)")
            continue
        mol = Chem.MolFromMolBlock(block, sanitize=False, removeHs=False, strictParsing=True)
        if mol is None:
            errors.append(f"{label}: corrupt mol block (RDKit could not parse the counts, atom or bond lines)")
            continue
        records.append((number, mol))
    return records, errors


def _xyz_atom_line(line: str) -> str | None:
    """Why an XYZ atom line is bad, or None."""
    parts = line.split()
    if len(parts) < 4:
        return f"expected 'element x y z', got '{printable(line.strip())}'"
    symbol = parts[0]
    if symbol.isdigit():
        z = int(symbol)
        if not 0 < z < 119:
            return f"unknown atomic number {symbol}"
    else:
        try:
            z = Chem.GetPeriodicTable().GetAtomicNumber(symbol.capitalize())
        except RuntimeError:
            z = 0
        if z <= 0:
            return f"unknown element '{printable(symbol, 12)}'"
    try:
        coords = [float(v) for v in parts[1:4]]
    except ValueError:
        return f"coordinates are not numbers: '{printable(line.strip())}'"
    if not all(math.isfinite(v) for v in coords):
        return "coordinates contain NaN or inf"
    return None


def _is_count_line(line: str) -> bool:
    parts = line.split()
    return len(parts) == 1 and parts[0].isdigit()


def _read_xyz(text: str, max_atoms: int) -> tuple[list[tuple[int, Chem.Mol]], list[str]]:
    lines = text.replace("\r\n", "\n").split("\n")
    records, errors = [], []
    i, number = 0, 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        number += 1
        if not _is_count_line(lines[i]):
            errors.append(f"record {number} (line {i + 1}): expected an atom count, got "
                          f"'{printable(lines[i].strip())}'")
            i += 1  # resynchronise on the next line that is a lone integer
            while i < len(lines) and not _is_count_line(lines[i]):
                i += 1
            continue
        n = int(lines[i])
        label = f"record {number} (line {i + 1})"
        if n > max_atoms:
            errors.append(f"{label}: {n} atoms, more than the limit of {max_atoms}")
            i += 2 + n
            continue
        body = lines[i + 2:i + 2 + n]
        comment = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if len(body) < n or any(not line.strip() for line in body):
            # a blank line inside the atom block or the end of the file
            errors.append(f"{label}: truncated, {n} atoms announced but fewer atom lines follow")
            i += 2 + n
            continue
        bad = [(k, why) for k, line in enumerate(body)
               if (why := (f"{len(line):,} characters: not parsed" if len(line) > 1000 else _xyz_atom_line(line)))]
        if bad and _is_count_line(body[bad[0][0]]):  # the next record starts early: this one is cut short
            k = bad[0][0]
            errors.append(f"{label}: truncated, {n} atoms announced but only {k} atom lines before the next record")
            i += 2 + k
            continue
        if bad:
            k, why = bad[0]
            errors.append(f"{label}: line {i + 3 + k}: {why}")
        else:
            block = "\n".join([str(n), comment] + [_normalise_xyz_line(line) for line in body]) + "\n"
            mol = Chem.MolFromXYZBlock(block)
            if mol is None:
                errors.append(f"{label}: RDKit could not read the record")
            else:
                if comment:
                    mol.SetProp("_Name", comment)
                records.append((number, mol))
        i += 2 + n
    return records, errors


def _normalise_xyz_line(line: str) -> str:
    """``El x y z`` with a capitalised symbol (atomic numbers turned into symbols), extra columns dropped."""
    parts = line.split()
    symbol = parts[0]
    symbol = Chem.GetPeriodicTable().GetElementSymbol(int(symbol)) if symbol.isdigit() else symbol.capitalize()
    return " ".join([symbol, *parts[1:4]])


def _read_smiles(text: str, max_atoms: int) -> tuple[list[tuple[int, Chem.Mol]], list[str]]:
    records, errors = [], []
    number = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if number == 0 and parts[0].lower() == "smiles":
            continue  # header line
        number += 1
        if len(parts[0]) > MAX_RECORD_CHARS:
            errors.append(f"record {number} (line {lineno}): {len(parts[0]):,} characters, more than the limit "
                          f"of {MAX_RECORD_CHARS:,}: not parsed")
            continue
        mol = Chem.MolFromSmiles(parts[0], sanitize=False)
        if mol is None:
            errors.append(f"record {number} (line {lineno}): not a SMILES string: '{printable(parts[0])}'")
            continue
        if len(parts) > 1:
            mol.SetProp("_Name", parts[1].strip())
        records.append((number, mol))
    return records, errors


def _to_xyz(mol: Chem.Mol) -> str:
    pos = mol_positions(mol)
    if pos is None:
        raise ValueError("no 3D coordinates")
    name = clean_title(mol.GetProp("_Name")) if mol.HasProp("_Name") else ""
    if _invalid(mol):
        name = f"moldiff_valid=0 {name}".strip()
    lines = [str(mol.GetNumAtoms()), name]
    lines += [f"{a.GetSymbol():<2} {x:12.6f} {y:12.6f} {z:12.6f}" for a, (x, y, z) in zip(mol.GetAtoms(), pos)]
    return "\n".join(lines) + "\n"


def _invalid(mol: Chem.Mol) -> bool:
    return mol.HasProp("moldiff_valid") and not mol.GetIntProp("moldiff_valid")


def _to_sdf(mol: Chem.Mol) -> str:
    if mol.HasProp("_Name"):
        mol = Chem.Mol(mol)
        mol.SetProp("_Name", clean_title(mol.GetProp("_Name")))  # a newline in the title would break the record
    block = Chem.MolToMolBlock(mol, kekulize=False)
    props = "".join(f">  <{k}>\n{v}\n\n" for k, v in mol.GetPropsAsDict(includePrivate=False).items())
    return block + props + "$$$$\n"


def _to_smiles(mol: Chem.Mol) -> str:
    """Canonical SMILES without explicit hydrogens (stereochemistry as the molecule carries it); an invalid
    sample's line says so after the SMILES."""
    name = clean_title(mol.GetProp("_Name")) if mol.HasProp("_Name") else ""
    invalid = _invalid(mol)
    try:
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=not invalid))
    except (ValueError, RuntimeError):
        smiles = Chem.MolToSmiles(mol)
    if invalid:
        name = f"invalid {name}".strip()
    return (smiles + (f" {name}" if name else "")).rstrip() + "\n"


def write_molecules(mols: Sequence[Chem.Mol | None], path: str | os.PathLike) -> tuple[int, list[str]]:
    """Write molecules to ``.sdf``, ``.xyz`` or ``.smi`` atomically; returns (written, skipped-record messages).

    ``None`` entries and molecules that cannot be written in the format (e.g. no 3D for XYZ) are skipped
    with a message. The file appears complete or not at all (temporary file + ``os.replace``).
    """
    path = Path(path)
    kind = file_format(path) if path.suffix.lower() != ".gz" else None
    if kind is None:
        raise ValueError(f"{path}: unknown file type {path.suffix!r} (expected .sdf, .xyz or .smi)")
    convert = {"sdf": _to_sdf, "xyz": _to_xyz, "smi": _to_smiles}[kind]
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


