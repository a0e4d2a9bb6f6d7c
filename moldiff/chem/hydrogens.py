"""Hydrogens for a heavy-atom geometry: RDKit fills each heavy atom's open valence and places the hydrogens in 3D.

``Chem.AddHs(addCoords=True)`` sets each hydrogen from its own heavy atom's neighbours alone, which can put it
into another atom (eclipsed methyls, hydrogens of neighbouring groups on top of each other). With ``relax`` the
hydrogens are then moved by MMFF94 (UFF where MMFF94 has no parameters) with every heavy atom held where it
was: the heavy-atom geometry stays exactly the one given, the hydrogens take the positions it implies.
Pure RDKit + numpy.
"""
from __future__ import annotations

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdForceFieldHelpers

MAX_ITERS = 500


def add_hydrogens(mol: Chem.Mol, relax: bool = True, max_iters: int = MAX_ITERS) -> Chem.Mol:
    """A copy of the sanitised ``mol`` (one 3D conformer) with explicit hydrogens placed in 3D after its
    atoms; with ``relax``, placed by a force field with the other atoms fixed (kept as RDKit set them where
    no force field can be set up)."""
    with_h = Chem.AddHs(mol, addCoords=True)
    if not relax or with_h.GetNumAtoms() == mol.GetNumAtoms():
        return with_h
    heavy = [a.GetIdx() for a in with_h.GetAtoms() if a.GetAtomicNum() > 1]
    fixed = with_h.GetConformer().GetPositions()[heavy]
    with rdBase.BlockLogs():
        ff = _force_field(with_h)
        if ff is None:
            return with_h
        for i in heavy:
            ff.AddFixedPoint(i)
        ff.Minimize(maxIts=max_iters)
    pos = np.asarray(ff.Positions(), dtype=float).reshape(-1, 3)
    if not np.isfinite(pos).all():
        return Chem.AddHs(mol, addCoords=True)
    pos[heavy] = fixed  # exactly the heavy atoms given, whatever the minimiser's rounding
    with_h.GetConformer().SetPositions(pos)
    return with_h


def _force_field(mol: Chem.Mol):
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    if props is not None:
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props)
        if ff is not None:
            return ff
    if rdForceFieldHelpers.UFFHasAllMoleculeParams(mol):
        return rdForceFieldHelpers.UFFGetMoleculeForceField(mol)
    return None
