"""Geometry judged by GFN2-xTB: the relaxation energy of a 3D molecule, as the GEOM-Drugs re-evaluations measure it.

The same protocol as the MMFF94 judge (``moldiff.chem.geometry``): hydrogens relaxed first with the heavy atoms
fixed, then everything; strain = the energy drop of the second relaxation (kcal/mol), RMSD = heavy-atom RMSD
before/after it. The energies and forces are GFN2-xTB's (the ``tblite`` package), the optimiser ASE's L-BFGS,
both used as they are; this module only feeds them molecules. Both are optional dependencies
(``pip install tblite ase``, or ``moldiff[judges]``). Seconds per molecule.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdMolAlign

from moldiff.chem.geometry import Strain, summarise, with_hydrogens

FMAX = 0.01  # eV/Å: the optimiser's force threshold (the xtb program's "normal" level is of this order)
MAX_STEPS = 1000


class XTBMissing(ImportError):
    """``tblite`` or ``ase`` is not installed."""


def _ase():
    try:
        from ase import Atoms, units
        from ase.constraints import FixAtoms
        from ase.optimize import LBFGS
        from tblite.ase import TBLite
    except ImportError as exc:
        raise XTBMissing("GFN2-xTB relaxation needs the tblite and ase packages: pip install tblite ase") from exc
    return Atoms, units, FixAtoms, LBFGS, TBLite


def xtb_strain(mol: Chem.Mol | None, fmax: float = FMAX, max_steps: int = MAX_STEPS) -> Strain | None:
    """GFN2-xTB strain (kcal/mol) and heavy-atom RMSD (Å) of ``mol``'s first conformer, or None when it does
    not sanitise, has no conformer, or xTB or the optimiser fails (no SCF convergence, no convergence in
    ``max_steps``). Hydrogens are added with coordinates when missing."""
    Atoms, units, FixAtoms, LBFGS, TBLite = _ase()
    work = with_hydrogens(mol)
    if work is None:
        return None
    charge = Chem.GetFormalCharge(work)
    unpaired = sum(a.GetNumRadicalElectrons() for a in work.GetAtoms())
    atoms = Atoms(numbers=[a.GetAtomicNum() for a in work.GetAtoms()],
                  positions=work.GetConformer().GetPositions())
    atoms.calc = TBLite(method="GFN2-xTB", charge=charge, multiplicity=unpaired + 1, verbosity=0)
    heavy = [a.GetIdx() for a in work.GetAtoms() if a.GetAtomicNum() > 1]
    try:
        atoms.set_constraint(FixAtoms(indices=heavy))
        if not LBFGS(atoms, logfile=None).run(fmax=fmax, steps=max_steps):
            return None
        start = atoms.get_positions()
        e_start = atoms.get_potential_energy()
        atoms.set_constraint()
        if not LBFGS(atoms, logfile=None).run(fmax=fmax, steps=max_steps):
            return None
        e_relaxed = atoms.get_potential_energy()
    except Exception:  # tblite raises a bare RuntimeError-like error on SCF failure
        return None
    before, after = Chem.Mol(work), Chem.Mol(work)
    before.GetConformer().SetPositions(start)
    after.GetConformer().SetPositions(atoms.get_positions())
    rmsd = rdMolAlign.AlignMol(after, before, atomMap=[(i, i) for i in heavy])
    strain = (e_start - e_relaxed) / (units.kcal / units.mol)
    return Strain(float(strain), float(rmsd)) if np.isfinite(strain) else None


def xtb_summary(mols: Iterable[Chem.Mol | None], fmax: float = FMAX) -> dict:
    """Median and 90th percentile of GFN2-xTB strain and RMSD over the molecules xTB can judge, with counts."""
    return summarise([xtb_strain(m, fmax) for m in mols])
