"""Atoms + bonds -> RDKit molecule: the one place where moldiff builds a ``Chem.Mol``."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from rdkit import Chem
from rdkit.Geometry import Point3D

BOND_TYPES: dict[int, Chem.BondType] = {
    1: Chem.BondType.SINGLE,
    2: Chem.BondType.DOUBLE,
    3: Chem.BondType.TRIPLE,
    4: Chem.BondType.AROMATIC,
}
"""Integer bond order used across moldiff (4 = aromatic) -> RDKit bond type."""

BOND_ORDERS: dict[Chem.BondType, int] = {v: k for k, v in BOND_TYPES.items()}


def build_mol(
    elements: Sequence[str],
    pos: np.ndarray | None,
    bonds: Iterable[tuple[int, int, int]],
    charges: Sequence[int] | None = None,
    *,
    implicit_hydrogens: bool = False,
) -> Chem.Mol:
    """Build an unsanitised RDKit molecule from element symbols, coordinates (Å) and bonds.

    ``bonds`` holds ``(i, j, order)`` with order 1/2/3 or 4 (aromatic). With ``pos`` the molecule gets
    one 3D conformer. By default every atom is marked ``NoImplicit`` so that sanitisation judges exactly the
    hydrogens given; ``implicit_hydrogens=True`` lets RDKit fill open valences with implicit H (the EDM
    validity protocol). Raises ``ValueError`` for an unknown element, a bad bond or mismatched shapes.
    """
    n = len(elements)
    if charges is not None and len(charges) != n:
        raise ValueError(f"{len(charges)} charges for {n} atoms")
    rw = Chem.RWMol()
    table = Chem.GetPeriodicTable()
    for k, symbol in enumerate(elements):
        try:
            z = table.GetAtomicNumber(str(symbol))
        except RuntimeError:
            z = 0
        if z <= 0:
            raise ValueError(f"atom {k}: unknown element {symbol!r}")
        atom = Chem.Atom(z)
        if charges is not None:
            atom.SetFormalCharge(int(charges[k]))
        atom.SetNoImplicit(not implicit_hydrogens)
        rw.AddAtom(atom)
    for i, j, order in bonds:
        i, j, order = int(i), int(j), int(order)
        if order not in BOND_TYPES:
            raise ValueError(f"bond {i}-{j}: unknown order {order}")
        if not (0 <= i < n and 0 <= j < n) or i == j:
            raise ValueError(f"bond {i}-{j}: atom index out of range for {n} atoms")
        if rw.GetBondBetweenAtoms(i, j) is not None:
            raise ValueError(f"bond {i}-{j}: given twice")
        rw.AddBond(i, j, BOND_TYPES[order])
        if order == 4:
            rw.GetBondBetweenAtoms(i, j).SetIsAromatic(True)
            rw.GetAtomWithIdx(i).SetIsAromatic(True)
            rw.GetAtomWithIdx(j).SetIsAromatic(True)
    mol = rw.GetMol()
    if pos is not None:
        set_conformer(mol, pos)
    return mol


def set_conformer(mol: Chem.Mol, pos: np.ndarray) -> None:
    """Replace the molecule's conformers by one 3D conformer at ``pos`` (N, 3) in Å."""
    pos = np.asarray(pos, dtype=np.float64)
    if pos.shape != (mol.GetNumAtoms(), 3):
        raise ValueError(f"coordinates of shape {pos.shape} for {mol.GetNumAtoms()} atoms")
    if not np.isfinite(pos).all():
        raise ValueError("coordinates contain NaN or inf")
    conf = Chem.Conformer(mol.GetNumAtoms())
    for k, (x, y, z) in enumerate(pos):
        conf.SetAtomPosition(k, Point3D(float(x), float(y), float(z)))
    conf.Set3D(True)
    mol.RemoveAllConformers()
    mol.AddConformer(conf, assignId=True)


def mol_elements(mol: Chem.Mol) -> list[str]:
    """Element symbols of the molecule's atoms, in atom order."""
    return [a.GetSymbol() for a in mol.GetAtoms()]


def mol_positions(mol: Chem.Mol) -> np.ndarray | None:
    """Coordinates (N, 3) in Å of the first 3D conformer, or ``None`` when the molecule has none."""
    for conf in mol.GetConformers():
        if conf.Is3D():
            return np.asarray(conf.GetPositions(), dtype=np.float64).reshape(-1, 3)
    return None


def mol_bonds(mol: Chem.Mol) -> list[tuple[int, int, int]]:
    """The molecule's bonds as ``(i, j, order)`` with moldiff's integer orders (4 = aromatic)."""
    out = []
    for b in mol.GetBonds():
        order = BOND_ORDERS.get(b.GetBondType())
        if order is None:
            raise ValueError(f"bond {b.GetBeginAtomIdx()}-{b.GetEndAtomIdx()}: unsupported type {b.GetBondType()}")
        out.append((b.GetBeginAtomIdx(), b.GetEndAtomIdx(), order))
    return out


def assign_stereo_from_3d(mol: Chem.Mol) -> Chem.Mol:
    """Set the molecule's stereocentres and double-bond stereo from its 3D conformer (RDKit
    ``AssignStereochemistryFrom3D``), so that its SMILES, its SDF and its geometry agree. Meant for sanitised
    molecules; in place, returns ``mol``. A molecule without a 3D conformer, or one RDKit cannot assign, is
    returned unchanged."""
    if mol.GetNumConformers() and mol.GetConformer().Is3D():
        try:
            Chem.AssignStereochemistryFrom3D(mol)
        except (ValueError, RuntimeError):  # e.g. a molecule RDKit cannot perceive rings of
            pass
    return mol
