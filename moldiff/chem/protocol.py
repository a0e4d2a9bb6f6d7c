"""The EDM distance protocol (Hoogeboom et al. 2022): bond orders from inter-atomic distances.

Every atom pair is scored. With d the distance in pm and the standard covalent bond lengths (single,
double, triple) of the pair's elements, the order is 1 if d < single + 10, then 2 if also d < double + 5,
then 3 if also d < triple + 3; else no bond. A higher order is only tested when the pair has that order
in the table. No aromatic bonds, no formal charges. An atom is stable when the sum of its bond orders
equals its element's valence; a molecule is stable when all its atoms are.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from rdkit import Chem

from moldiff.chem.build import build_mol

MARGINS_PM: tuple[int, int, int] = (10, 5, 3)
"""Margins (pm) added to the single, double and triple bond lengths."""

# Standard covalent bond lengths in pm (the tables EDM uses, symmetric here). One row per pair:
# element, element, single, double, triple (0 = no such bond in the table).
_LENGTHS_PM = """
H H 74 0 0 | H C 109 0 0 | H N 101 0 0 | H O 96 0 0 | H F 92 0 0 | H B 119 0 0 | H Si 148 0 0
H P 144 0 0 | H As 152 0 0 | H S 134 0 0 | H Cl 127 0 0 | H Br 141 0 0 | H I 161 0 0
C C 154 134 120 | C N 147 129 116 | C O 143 120 113 | C F 135 0 0 | C Si 185 0 0 | C P 184 0 0
C S 182 160 0 | C Cl 177 0 0 | C Br 194 0 0 | C I 214 0 0
N N 145 125 110 | N O 140 121 0 | N F 136 0 0 | N Cl 175 0 0 | N Br 214 0 0 | N S 168 0 0
N I 222 0 0 | N P 177 0 0
O O 148 121 0 | O F 142 0 0 | O Br 172 0 0 | O S 151 0 0 | O P 163 150 0 | O Si 163 0 0
O Cl 164 0 0 | O I 194 0 0
F F 142 0 0 | F S 158 0 0 | F Si 160 0 0 | F Cl 166 0 0 | F Br 178 0 0 | F P 156 0 0 | F I 187 0 0
B Cl 175 0 0
Si Si 233 0 0 | Si S 200 0 0 | Si Cl 202 0 0 | Si Br 215 0 0 | Si I 243 0 0
Cl Cl 199 0 0 | Cl I 232 0 0 | Cl Br 214 0 0 | Cl P 203 0 0 | Cl S 207 0 0
S S 204 0 0 | S Br 225 0 0 | S P 210 186 0 | S I 234 0 0
Br Br 228 0 0 | Br P 222 0 0
P P 221 0 0
I I 266 0 0
"""

VALENCES: dict[str, tuple[int, ...]] = {
    "H": (1,), "B": (3,), "C": (4,), "N": (3,), "O": (2,), "F": (1,), "Si": (4,), "P": (3, 5),
    "S": (2, 4, 6), "Cl": (1,), "Br": (1,), "I": (1,), "As": (3,),
}
"""Allowed sums of bond orders per element (formal charges ignored). EDM uses S 4 only; QM9 has no S."""


def _parse_lengths(text: str) -> dict[frozenset[str], tuple[int, int, int]]:
    table: dict[frozenset[str], tuple[int, int, int]] = {}
    for row in text.replace("\n", "|").split("|"):
        if row.strip():
            a, b, s, d, t = row.split()
            table[frozenset((a, b))] = (int(s), int(d), int(t))
    return table


BOND_LENGTHS_PM: dict[frozenset[str], tuple[int, int, int]] = _parse_lengths(_LENGTHS_PM)
"""frozenset({element, element}) -> (single, double, triple) length in pm, 0 where the order is absent."""


def bond_order(a: str, b: str, distance: float) -> int:
    """Protocol bond order (0-3) of elements ``a``, ``b`` at ``distance`` Å."""
    lengths = BOND_LENGTHS_PM.get(frozenset((a, b)))
    if lengths is None:
        return 0
    d = 100.0 * distance
    order = 0
    for k, (length, margin) in enumerate(zip(lengths, MARGINS_PM)):
        if length == 0 or d >= length + margin:
            break
        order = k + 1
    return order


def _thresholds(elements: Sequence[str]) -> np.ndarray:
    """(3, N, N) thresholds in pm (length + margin), -inf where the pair lacks that order."""
    kinds = sorted(set(elements))
    index = {e: k for k, e in enumerate(kinds)}
    small = np.full((3, len(kinds), len(kinds)), -np.inf)
    for p, a in enumerate(kinds):
        for q, b in enumerate(kinds):
            lengths = BOND_LENGTHS_PM.get(frozenset((a, b)), (0, 0, 0))
            for k in range(3):
                if lengths[k]:
                    small[k, p, q] = lengths[k] + MARGINS_PM[k]
    t = np.array([index[e] for e in elements], dtype=np.intp)
    return small[:, t[:, None], t[None, :]]


def protocol_order_matrix(elements: Sequence[str], pos: np.ndarray) -> np.ndarray:
    """(N, N) integer matrix of protocol bond orders (0 = no bond), symmetric, zero diagonal."""
    pos = np.asarray(pos, dtype=np.float64)
    n = len(elements)
    if pos.shape != (n, 3):
        raise ValueError(f"coordinates of shape {pos.shape} for {n} atoms")
    if n == 0:
        return np.zeros((0, 0), dtype=np.int64)
    d = 100.0 * np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    thr = _thresholds(elements)
    b1 = d < thr[0]
    b2 = b1 & (d < thr[1])
    b3 = b2 & (d < thr[2])
    order = b1.astype(np.int64) + b2 + b3
    np.fill_diagonal(order, 0)
    return order


def protocol_bonds(elements: Sequence[str], pos: np.ndarray) -> list[tuple[int, int, int]]:
    """Protocol bonds ``(i, j, order)`` with i < j, for every atom pair that the distance rule bonds."""
    order = protocol_order_matrix(elements, pos)
    i, j = np.nonzero(np.triu(order, 1))
    return [(int(a), int(b), int(order[a, b])) for a, b in zip(i, j)]


def protocol_mol(elements: Sequence[str], pos: np.ndarray) -> Chem.Mol:
    """Unsanitised RDKit molecule with protocol bonds; open valences may take implicit H (EDM validity)."""
    return build_mol(elements, pos, protocol_bonds(elements, pos), implicit_hydrogens=True)


def stable_atoms(elements: Sequence[str], valence: np.ndarray) -> np.ndarray:
    """Boolean per atom: its bond-order sum ``valence`` is one of its element's allowed valences."""
    return np.array([int(v) in VALENCES.get(e, ()) for e, v in zip(elements, valence)], dtype=bool)


def protocol_stability(elements: Sequence[str], pos: np.ndarray) -> tuple[int, int, bool]:
    """(stable atoms, atoms, molecule stable) under the protocol."""
    valence = protocol_order_matrix(elements, pos).sum(axis=1)
    ok = stable_atoms(elements, valence)
    return int(ok.sum()), len(elements), bool(ok.all())
