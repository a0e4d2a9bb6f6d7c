"""Training-split reference statistics for novelty and distribution distances, cached as one ``.npz``.

Computed once from the QM9 training split: the set of canonical SMILES (the dataset's own SMILES and the
distance-protocol SMILES of the DFT geometry, so that a copy of a training molecule is not novel whichever
way it is read), element frequencies, and histograms of protocol bond lengths per bond type and of angles
between protocol bonds per central element.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from moldiff.io_utils import atomic_write
from moldiff.paths import data_dir

LENGTH_EDGES = np.linspace(0.0, 4.0, 4001)    # Å, 0.001 Å bins
ANGLE_EDGES = np.linspace(0.0, 180.0, 1801)   # degrees, 0.1° bins
CACHE_VERSION = 1


def bond_key(a: str, b: str, order: int) -> str:
    """Name of a bond type, e.g. ``C-H:1``, ``C-O:2`` (elements sorted)."""
    x, y = sorted((a, b))
    return f"{x}-{y}:{int(order)}"


def geometry_samples(
    elements: Sequence[str],
    pos: np.ndarray,
    order: np.ndarray,
    lengths: dict[str, list[float]],
    angles: dict[str, list[float]],
) -> None:
    """Append the bond lengths (Å, per ``bond_key``) and bond angles (degrees, per central element) of one
    structure with bond-order matrix ``order`` to ``lengths`` and ``angles``."""
    pos = np.asarray(pos, dtype=np.float64)
    i, j = np.nonzero(np.triu(order, 1))
    for a, b in zip(i, j):
        lengths.setdefault(bond_key(elements[a], elements[b], order[a, b]), []).append(
            float(np.linalg.norm(pos[a] - pos[b])))
    adj = order > 0
    c, p, q = np.nonzero(adj[:, :, None] & adj[:, None, :])
    keep = p < q
    c, p, q = c[keep], p[keep], q[keep]
    if c.size == 0:
        return
    u, v = pos[p] - pos[c], pos[q] - pos[c]
    cos = np.einsum("ij,ij->i", u, v) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    deg = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    for centre, value in zip(c, deg):
        angles.setdefault(elements[centre], []).append(float(value))


@dataclass(frozen=True)
class Reference:
    """Reference statistics: SMILES set, element counts, histograms on ``LENGTH_EDGES``/``ANGLE_EDGES``."""

    name: str
    smiles: frozenset[str]
    atom_types: dict[str, float]
    bond_lengths: dict[str, np.ndarray]
    bond_angles: dict[str, np.ndarray]
    n_molecules: int = 0

    def save(self, path: Path) -> None:
        """Write atomically as ``.npz`` (no pickled objects)."""
        arrays = {
            "smiles": np.frombuffer("\n".join(sorted(self.smiles)).encode(), dtype=np.uint8),
            "meta": np.frombuffer(json.dumps({"name": self.name, "version": CACHE_VERSION,
                                              "n_molecules": self.n_molecules,
                                              "atom_types": self.atom_types}).encode(), dtype=np.uint8),
        }
        arrays |= {f"len/{k}": v for k, v in self.bond_lengths.items()}
        arrays |= {f"ang/{k}": v for k, v in self.bond_angles.items()}
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> "Reference":
        """Read a file written by ``save``; ``ValueError`` when it is of another version."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes().decode())
            if meta.get("version") != CACHE_VERSION:
                raise ValueError(f"{path}: reference cache version {meta.get('version')}, expected {CACHE_VERSION}")
            text = data["smiles"].tobytes().decode()
            return cls(
                name=meta["name"],
                smiles=frozenset(text.split("\n")) if text else frozenset(),
                atom_types=meta["atom_types"],
                bond_lengths={k[4:]: data[k] for k in data.files if k.startswith("len/")},
                bond_angles={k[4:]: data[k] for k in data.files if k.startswith("ang/")},
                n_molecules=int(meta["n_molecules"]),
            )


def cache_dir() -> Path:
    """The package's cache directory (see :func:`moldiff.paths.data_dir`): the same place as the QM9 cache."""
    return data_dir()
