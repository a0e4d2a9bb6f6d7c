"""Read the QM9 records shipped by the ``qm9pack`` package (no torch, no RDKit).

``qm9pack`` ships the 130,831 DFT-checked QM9 molecules as CSV files in its package data. Its own
``get_data()`` imports ``pkg_resources``, which recent setuptools no longer provides, so the files are
located with ``importlib.util.find_spec`` (which does not import the package) and read directly.
"""
from __future__ import annotations

import ast
import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
QM9_SIZE = 130_831


@dataclass(frozen=True)
class RawMolecule:
    """One QM9 record: its QM9 index, the dataset's SMILES, element symbols and DFT coordinates (Å)."""

    index: int
    smiles: str
    elements: tuple[str, ...]
    pos: np.ndarray  # (N, 3) float64, Å


def qm9pack_dir() -> Path:
    """Directory holding qm9pack's CSV files; a clear error when the package is missing."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the QM9 source package 'qm9pack' is not installed (pip install qm9pack)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _parse_coords(text: str) -> np.ndarray:
    # QM9 writes numbers like "0." and, for tiny ones, Mathematica notation ("1.2*^-6").
    flat = text.replace("[", " ").replace("]", " ").replace("*^", "e").split(",")
    return np.asarray([float(v) for v in flat], dtype=np.float64).reshape(-1, 3)


def iter_qm9(limit: int | None = None) -> Iterator[RawMolecule]:
    """Yield QM9 molecules in file order (sorted by QM9 index), at most ``limit`` of them."""
    root = qm9pack_dir()
    count = 0
    for part in PARTS:
        with open(root / part, newline="") as handle:
            for row in csv.DictReader(handle):
                if limit is not None and count >= limit:
                    return
                elements = tuple(ast.literal_eval(row["Elements"]))
                pos = _parse_coords(row["XYZ_Ang"])
                if pos.shape != (len(elements), 3):
                    raise ValueError(f"QM9 record {row['Index']}: {len(elements)} elements but coordinates {pos.shape}")
                yield RawMolecule(int(row["Index"]), row["SMILES"], elements, pos)
                count += 1


SPLIT_SIZES = {"train": 100_000, "valid": 17_748, "test": 13_083}
SPLIT_SEED = 0


def split_positions(n: int = QM9_SIZE, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """The standard QM9 split as positions in file order: 100,000 train, 13,083 test (10 %), the rest valid.

    One fixed permutation (``numpy.random.RandomState(seed)``) of the molecules in file order; the first
    100,000 are the training set, the next ones validation, the last 10 % test.
    """
    if n != QM9_SIZE:
        raise ValueError(f"the standard split is defined for {QM9_SIZE} molecules, got {n}")
    perm = np.random.RandomState(seed).permutation(n)
    n_train, n_valid = SPLIT_SIZES["train"], SPLIT_SIZES["valid"]
    return {
        "train": np.sort(perm[:n_train]),
        "valid": np.sort(perm[n_train:n_train + n_valid]),
        "test": np.sort(perm[n_train + n_valid:]),
    }


# QM9's six properties of EDM's conditional benchmark: name -> (qm9pack column, unit). Values stay in QM9's units.
PROPERTIES = {
    "alpha": ("Polarizability_bohr3", "Bohr^3"),
    "gap": ("HOMO_LUMO_gap_au", "Hartree"),
    "homo": ("HOMO_au", "Hartree"),
    "lumo": ("LUMO_au", "Hartree"),
    "mu": ("Dipole_debye", "Debye"),
    "Cv": ("Heatcapacity_Cv_cal_mol_K", "cal/(mol K)"),
}


def read_properties(names=tuple(PROPERTIES)) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """QM9 indices (file order) and the named properties of every molecule, in QM9's units."""
    root = qm9pack_dir()
    index, values = [], {n: [] for n in names}
    for part in PARTS:
        with open(root / part, newline="") as handle:
            for row in csv.DictReader(handle):
                index.append(int(row["Index"]))
                for n in names:
                    values[n].append(float(row[PROPERTIES[n][0]]))
    return np.asarray(index), {n: np.asarray(v, dtype=np.float64) for n, v in values.items()}
