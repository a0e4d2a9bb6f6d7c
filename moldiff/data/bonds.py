"""Bond orders and formal charges of QM9 molecules, on their DFT geometry (RDKit; no torch).

The dataset's SMILES gives the chemistry (kekulised bond orders and formal charges); the DFT geometry
gives the atom order. The SMILES graph with explicit hydrogens is matched onto the geometry's
connectivity (RDKit ``DetermineConnectivity``, covalent radii × 1.3, then × 1.45 if needed) as a
substructure with every bond treated alike; the match with the shortest total bond length wins.
Kekulised orders (single/double/triple) are kept rather than an aromatic class: they make valences
add up exactly, and RDKit re-perceives aromaticity when the molecule is sanitised.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdDetermineBonds
from rdkit.Geometry import Point3D

_ORDERS = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
COV_FACTORS = (1.3, 1.45)


@dataclass(frozen=True)
class BondTargets:
    """Bonds (i < j, order 1–3) and formal charges in the geometry's atom order; ``status`` says how."""

    bonds: np.ndarray  # (B, 3) int: i, j, order
    charges: np.ndarray  # (N,) int
    status: str  # "matched", "matched-wide" (needed covFactor 1.45), or a failure reason


def _atoms_with_conformer(elements: Sequence[str], pos: np.ndarray) -> Chem.RWMol:
    mol = Chem.RWMol()
    for symbol in elements:
        mol.AddAtom(Chem.Atom(symbol))
    conf = Chem.Conformer(len(elements))
    for i, p in enumerate(pos):
        conf.SetAtomPosition(i, Point3D(float(p[0]), float(p[1]), float(p[2])))
    mol.AddConformer(conf, assignId=True)
    return mol


def bond_targets(smiles: str, elements: Sequence[str], pos: np.ndarray) -> BondTargets:
    """Map the SMILES's kekulised bonds and formal charges onto the atoms of the geometry (RDKit's warnings
    about the dataset's molecules are silenced for this call only)."""
    with rdBase.BlockLogs():
        return _bond_targets(smiles, elements, pos)


def _bond_targets(smiles: str, elements: Sequence[str], pos: np.ndarray) -> BondTargets:
    empty = BondTargets(np.zeros((0, 3), dtype=np.int64), np.zeros(len(elements), dtype=np.int64), "")
    ref = Chem.MolFromSmiles(smiles)
    if ref is None:
        return BondTargets(empty.bonds, empty.charges, "unparsable SMILES")
    ref = Chem.AddHs(ref)
    Chem.Kekulize(ref, clearAromaticFlags=True)
    if ref.GetNumAtoms() != len(elements):
        return BondTargets(empty.bonds, empty.charges, "atom count differs from SMILES")
    query = Chem.RWMol(ref)
    for atom in query.GetAtoms():
        atom.SetFormalCharge(0)
        atom.SetNoImplicit(True)
    for bond in query.GetBonds():
        bond.SetBondType(Chem.BondType.SINGLE)
    query = query.GetMol()
    for k, factor in enumerate(COV_FACTORS):
        target = _atoms_with_conformer(elements, pos)
        rdDetermineBonds.DetermineConnectivity(target, useHueckel=False, covFactor=factor)
        matches = target.GetSubstructMatches(query, uniquify=True, maxMatches=64, useChirality=False)
        if matches:
            break
    else:
        return BondTargets(empty.bonds, empty.charges, "SMILES graph not found in the geometry")

    def length(match: tuple[int, ...]) -> float:
        return sum(float(np.linalg.norm(pos[match[b.GetBeginAtomIdx()]] - pos[match[b.GetEndAtomIdx()]]))
                   for b in ref.GetBonds())

    match = min(matches, key=length)
    bonds = []
    for b in ref.GetBonds():
        i, j = sorted((match[b.GetBeginAtomIdx()], match[b.GetEndAtomIdx()]))
        bonds.append((i, j, _ORDERS[b.GetBondType()]))
    charges = np.zeros(len(elements), dtype=np.int64)
    for atom in ref.GetAtoms():
        charges[match[atom.GetIdx()]] = atom.GetFormalCharge()
    return BondTargets(np.asarray(sorted(bonds), dtype=np.int64).reshape(-1, 3), charges,
                       "matched" if k == 0 else "matched-wide")
