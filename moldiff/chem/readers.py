"""Record parsers of SDF, XYZ and SMILES text, read line by line from a stream.

Each parser yields ``(record number, unsanitised molecule)`` for a readable record and a message string for
a bad one. Memory stays bounded by one record: a line or record longer than ``MAX_RECORD_CHARS``, or one
announcing more atoms than allowed, is skipped without being kept or given to RDKit. Messages quote file
content only through :func:`moldiff.chem.text.printable`.
"""
from __future__ import annotations

import collections
import math
from typing import Iterator, NamedTuple, TextIO, Union

from rdkit import Chem

from moldiff.chem.text import printable

MAX_ATOMS = 1000
"""Records with more atoms than this are refused (QM9 has at most 29, GEOM-drugs 181)."""
MAX_RECORD_CHARS = 200_000
"""A SMILES line or SDF record longer than this is refused before it is parsed (a 1,000-atom SDF record takes
about 100,000 characters)."""
MAX_XYZ_LINE_CHARS = 1000
"""An XYZ atom line longer than this is refused."""

Item = Union[tuple[int, Chem.Mol], str]
"""What a parser yields: (record number, molecule) or an error message."""


class FileTooLarge(Exception):
    """The stream holds more characters than allowed."""


class Line(NamedTuple):
    """One line: its 1-based number, its text (without the newline; only the first ``limit`` characters of a
    longer line) and its full length."""

    number: int
    text: str
    length: int

    @property
    def too_long(self) -> bool:
        return self.length > len(self.text)


class Lines:
    """The lines of a text stream, at most ``limit`` characters of each kept, with push-back; raises
    :class:`FileTooLarge` once more than ``max_chars`` characters have been read."""

    def __init__(self, stream: TextIO, limit: int = MAX_RECORD_CHARS, max_chars: int | None = None):
        self._stream, self._limit, self._max = stream, limit, max_chars
        self._back: collections.deque[Line] = collections.deque()
        self._number = 0
        self.chars = 0
        self.saw_text = False  # a line that is not blank was read

    def _read(self, size: int) -> str:
        chunk = self._stream.readline(size)
        self.chars += len(chunk)
        if self._max is not None and self.chars > self._max:
            raise FileTooLarge(self._max)
        return chunk

    def next(self) -> Line | None:
        """The next line, or ``None`` at the end of the stream."""
        if self._back:
            return self._back.popleft()
        raw = self._read(self._limit + 1)
        if not raw:
            return None
        self._number += 1
        if raw.endswith("\n"):
            text, length = raw[:-1], len(raw) - 1
        else:
            text, length = raw, len(raw)
            if length > self._limit:  # too long: count the rest of the line without keeping it
                text = raw[:self._limit]
                while chunk := self._read(1 << 16):
                    if chunk.endswith("\n"):
                        length += len(chunk) - 1
                        break
                    length += len(chunk)
        self.saw_text = self.saw_text or bool(text.strip())
        return Line(self._number, text, length)

    @property
    def line_number(self) -> int:
        """Lines read from the stream so far."""
        return self._number

    def push_back(self, lines: list[Line]) -> None:
        """Make ``lines`` (in order) the next ones returned."""
        self._back.extendleft(reversed(lines))

    def __iter__(self) -> Iterator[Line]:
        while (line := self.next()) is not None:
            yield line


def _too_long(length: int) -> str:
    return f"{length:,} characters, more than the limit of {MAX_RECORD_CHARS:,}: not parsed"


# ---------------------------------------------------------------- SDF


def _announced_atoms(index: int, line: str) -> int | None:
    """Atom count announced by a mol block line (the V2000 counts line, line 4, or ``M  V30 COUNTS``)."""
    if index == 3 and line[:3].strip().isdigit():
        return int(line[:3])
    if line.startswith("M  V30 COUNTS"):
        fields = line.split()
        if len(fields) > 3 and fields[3].isdigit():
            return int(fields[3])
    return None


def _parse_record(text: str) -> Chem.Mol | None:
    """One SDF record with its data items (properties), unsanitised and with its hydrogens; ``None`` if corrupt."""
    supplier = Chem.SDMolSupplier()
    supplier.SetData(text, sanitize=False, removeHs=False, strictParsing=True)
    try:
        return supplier[0]
    except (IndexError, RuntimeError, ValueError):
        return None


def sdf_records(lines: Lines, max_atoms: int = MAX_ATOMS) -> Iterator[Item]:
    """Parse the mol blocks of an SDF stream (records end at ``$$$$``)."""
    number = 0
    while True:
        block: list[str] = []
        size, refused, read_any = 0, None, False
        for line in lines:
            read_any = True
            if line.text.startswith("$$$$"):
                break
            size += line.length + 1
            if refused is None and (line.too_long or size > MAX_RECORD_CHARS):
                refused = "too long"
            if refused is None and (n := _announced_atoms(len(block), line.text)) is not None and n > max_atoms:
                refused = f"{n} atoms, more than the limit of {max_atoms}: not parsed"
            if refused is None or not block:
                block.append(line.text)  # of a refused record only the title is kept, for the message
        if not read_any:
            return
        number += 1
        if not any(text.strip() for text in block) and refused is None:
            continue
        name = block[0].strip()
        label = f"record {number}" + (f" ({printable(name)})" if name else "")
        if refused == "too long":
            yield f"{label}: {_too_long(size)}"
        elif refused:
            yield f"{label}: {refused}"
        elif not any(text.startswith("M  END") for text in block):
            yield f"{label}: truncated mol block (no 'M  END' line)"
        else:
            mol = _parse_record("\n".join(block) + "\n$$$$\n")
            if mol is None:
                yield f"{label}: corrupt mol block (RDKit could not parse the counts, atom or bond lines)"
            else:
                yield number, mol


# ---------------------------------------------------------------- XYZ


def _xyz_atom_line(line: Line) -> str | None:
    """Why an XYZ atom line is bad, or None."""
    if line.length > MAX_XYZ_LINE_CHARS:
        return f"{line.length:,} characters: not parsed"
    parts = line.text.split()
    if len(parts) < 4:
        return f"expected 'element x y z', got '{printable(line.text.strip())}'"
    symbol = parts[0]
    if symbol.isdigit():
        if not 0 < int(symbol) < 119:
            return f"unknown atomic number {printable(symbol, 12)}"
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
        return f"coordinates are not numbers: '{printable(line.text.strip())}'"
    if not all(math.isfinite(v) for v in coords):
        return "coordinates contain NaN or inf"
    return None


def _is_count_line(line: Line) -> bool:
    parts = line.text.split()
    return not line.too_long and len(parts) == 1 and parts[0].isdigit()


def _normalise_xyz_line(text: str) -> str:
    """``El x y z`` with a capitalised symbol (atomic numbers turned into symbols), extra columns dropped."""
    parts = text.split()
    symbol = parts[0]
    symbol = Chem.GetPeriodicTable().GetElementSymbol(int(symbol)) if symbol.isdigit() else symbol.capitalize()
    return " ".join([symbol, *parts[1:4]])


def _skip(lines: Lines, n: int) -> None:
    for _ in range(n):
        if lines.next() is None:
            return


def xyz_records(lines: Lines, max_atoms: int = MAX_ATOMS) -> Iterator[Item]:
    """Parse the records of a (multi-record) XYZ stream: atom count, comment (the title), atom lines."""
    number = 0
    for head in lines:
        if not head.text.strip() and not head.too_long:
            continue
        number += 1
        if not _is_count_line(head):
            yield (f"record {number} (line {head.number}): expected an atom count, got "
                   f"'{printable(head.text.strip())}'")
            for line in lines:  # resynchronise on the next line that is a lone integer
                if _is_count_line(line):
                    lines.push_back([line])
                    break
            continue
        n = int(head.text)
        label = f"record {number} (line {head.number})"
        if n > max_atoms:
            yield f"{label}: {n} atoms, more than the limit of {max_atoms}"
            _skip(lines, n + 1)
            continue
        comment_line = lines.next()
        comment = comment_line.text.strip() if comment_line is not None else ""
        body: list[Line] = []
        while len(body) < n and (line := lines.next()) is not None:
            body.append(line)
        if len(body) < n or any(not line.text.strip() for line in body):
            # a blank line inside the atom block or the end of the file
            yield f"{label}: truncated, {n} atoms announced but fewer atom lines follow"
            continue
        bad = [(k, why) for k, line in enumerate(body) if (why := _xyz_atom_line(line))]
        if bad and _is_count_line(body[bad[0][0]]):  # the next record starts early: this one is cut short
            k = bad[0][0]
            yield f"{label}: truncated, {n} atoms announced but only {k} atom lines before the next record"
            lines.push_back(body[k:])
            continue
        if bad:
            k, why = bad[0]
            yield f"{label}: line {body[k].number}: {why}"
            continue
        block = "\n".join([str(n), comment] + [_normalise_xyz_line(line.text) for line in body]) + "\n"
        mol = Chem.MolFromXYZBlock(block)
        if mol is None:
            yield f"{label}: RDKit could not read the record"
            continue
        if comment:
            mol.SetProp("_Name", comment)
        yield number, mol


# ---------------------------------------------------------------- SMILES


def smiles_records(lines: Lines, max_atoms: int = MAX_ATOMS) -> Iterator[Item]:
    """Parse a SMILES file: one ``SMILES [title]`` per line; blank lines, ``#`` comments and a header skipped."""
    number = 0
    for line in lines:
        if not line.text.strip() or line.text.lstrip().startswith("#"):
            continue
        parts = line.text.split(maxsplit=1)
        if number == 0 and parts[0].lower() == "smiles" and not line.too_long:
            continue  # header line
        number += 1
        label = f"record {number} (line {line.number})"
        if line.too_long:
            yield f"{label}: {_too_long(line.length)}"
            continue
        mol = Chem.MolFromSmiles(parts[0], sanitize=False)
        if mol is None:
            yield f"{label}: not a SMILES string: '{printable(parts[0])}'"
            continue
        if len(parts) > 1:
            mol.SetProp("_Name", parts[1].strip())
        yield number, mol


def csv_records(lines: Lines, max_atoms: int = MAX_ATOMS) -> Iterator[Item]:
    """Parse a CSV file whose header names a SMILES column (``smiles``, any case); the other columns are kept
    as string properties of the molecule. A header without such a column is one message and no records."""
    import csv

    header = None
    number = 0
    for line in lines:
        if not line.text.strip():
            continue
        if line.too_long:
            if header is None:
                yield f"line {line.number}: header {_too_long(line.length)}"
                return
            number += 1
            yield f"record {number} (line {line.number}): {_too_long(line.length)}"
            continue
        row = next(csv.reader([line.text]), [])
        if header is None:
            header = [c.strip() for c in row]
            names = [c.lower() for c in header]
            if "smiles" not in names:
                yield (f"line {line.number}: no SMILES column in the CSV header "
                       f"('{printable(','.join(header), 80)}'; name one column 'SMILES')")
                return
            column = names.index("smiles")
            continue
        number += 1
        label = f"record {number} (line {line.number})"
        text = row[column].strip() if column < len(row) else ""
        mol = Chem.MolFromSmiles(text, sanitize=False) if text else None
        if mol is None:
            yield f"{label}: not a SMILES string: '{printable(text)}'"
            continue
        for name, value in zip(header, row):
            if name and name.lower() != "smiles":
                mol.SetProp(name, value)
        yield number, mol


PARSERS = {"sdf": sdf_records, "xyz": xyz_records, "smi": smiles_records, "csv": csv_records}
"""File format -> record parser."""
