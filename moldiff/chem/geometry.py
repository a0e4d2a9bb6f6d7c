"""Geometry judged by a force field: MMFF94 strain of a 3D molecule and how far relaxation moves it.

Protocol (one definition, used for generated molecules and reference conformers alike): the hydrogens are
relaxed first with the heavy atoms fixed (hydrogens placed by RDKit, or generated ones, should not count as
strain of the heavy-atom geometry), then everything; strain = the energy drop of the second relaxation
(kcal/mol), and RMSD = heavy-atom RMSD between the geometry before and after it (best rigid alignment).
Pure RDKit + numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdForceFieldHelpers, rdMolAlign

MAX_ITERS = 2000


@dataclass(frozen=True)
class Strain:
    """MMFF94 strain (kcal/mol) and heavy-atom RMSD (Å) to the relaxed geometry."""

    strain: float
    rmsd: float


@dataclass(frozen=True)
class Relaxation:
    """The two MMFF94 relaxations of the protocol: ``start`` has the hydrogens relaxed with the heavy atoms
    fixed, ``relaxed`` everything; their energies (kcal/mol) and the heavy-atom indices."""

    start: Chem.Mol
    relaxed: Chem.Mol
    e_start: float
    e_relaxed: float
    heavy: tuple[int, ...]


def with_hydrogens(mol: Chem.Mol | None) -> Chem.Mol | None:
    """A sanitised copy of ``mol`` with its hydrogens explicit (placed by RDKit where missing), or None when it
    does not sanitise or has no conformer: what every geometry judge starts from."""
    if mol is None or mol.GetNumConformers() == 0:
        return None
    with rdBase.BlockLogs():
        work = Chem.Mol(mol)
        try:
            Chem.SanitizeMol(work)
            if any(a.GetTotalNumHs() for a in work.GetAtoms()):
                work = Chem.AddHs(work, addCoords=True)
        except (ValueError, RuntimeError):
            return None
    return work


def mmff_relaxation(mol: Chem.Mol, max_iters: int = MAX_ITERS, fixed: Iterable[int] = ()) -> Relaxation | None:
    """Relax ``mol``'s first conformer as the protocol says (hydrogens added with coordinates when missing),
    or None when it does not sanitise, has no 3D conformer or MMFF94 lacks parameters for it. ``fixed``:
    atom indices that stay put in the second relaxation as well."""
    work = with_hydrogens(mol)
    if work is None:
        return None
    with rdBase.BlockLogs():
        props = rdForceFieldHelpers.MMFFGetMoleculeProperties(work)
        if props is None:
            return None
        ff = rdForceFieldHelpers.MMFFGetMoleculeForceField(work, props)
        if ff is None:
            return None
        heavy = tuple(a.GetIdx() for a in work.GetAtoms() if a.GetAtomicNum() > 1)
        for i in heavy:
            ff.AddFixedPoint(i)
        ff.Minimize(maxIts=max_iters)
        start = Chem.Mol(work)
        start.GetConformer().SetPositions(np.asarray(ff.Positions(), dtype=float).reshape(-1, 3))
        e_start = rdForceFieldHelpers.MMFFGetMoleculeForceField(start, props).CalcEnergy()
        relaxed = Chem.Mol(start)
        ff2 = rdForceFieldHelpers.MMFFGetMoleculeForceField(relaxed, props)
        for i in fixed:
            ff2.AddFixedPoint(int(i))
        ff2.Minimize(maxIts=max_iters)
        relaxed.GetConformer().SetPositions(np.asarray(ff2.Positions(), dtype=float).reshape(-1, 3))
        e_relaxed = ff2.CalcEnergy()
    if not (np.isfinite(e_start) and np.isfinite(e_relaxed)):
        return None
    return Relaxation(start, relaxed, float(e_start), float(e_relaxed), heavy)


def mmff_strain(mol: Chem.Mol, max_iters: int = MAX_ITERS) -> Strain | None:
    """The strain of ``mol``'s first conformer (explicit hydrogens with coordinates are expected; they are
    added with coordinates when missing), or None when it does not sanitise, has no 3D conformer or MMFF94
    lacks parameters for it."""
    r = mmff_relaxation(mol, max_iters)
    if r is None:
        return None
    rmsd = rdMolAlign.AlignMol(Chem.Mol(r.relaxed), r.start, atomMap=[(i, i) for i in r.heavy])
    return Strain(r.e_start - r.e_relaxed, float(rmsd))


MMFF_TERMS = ("Bond", "Angle", "StretchBend", "Oop", "Torsion", "VdW", "Ele")  # RDKit's names of MMFF94's terms


def _term_energies(mol: Chem.Mol, props) -> dict[str, float]:
    """The MMFF94 energy of ``mol`` term by term (each term alone switched on), kcal/mol."""
    out = {}
    try:
        for term in MMFF_TERMS:
            for other in MMFF_TERMS:
                getattr(props, f"SetMMFF{other}Term")(other == term)
            out[term] = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props).CalcEnergy()
    finally:
        for other in MMFF_TERMS:
            getattr(props, f"SetMMFF{other}Term")(True)
    return out


def strain_terms(mol: Chem.Mol, max_iters: int = MAX_ITERS) -> dict[str, float] | None:
    """Where the strain of ``mol`` sits: the energy drop of the protocol's relaxation split over MMFF94's terms
    (bond stretch, angle bend, stretch–bend, out-of-plane, torsion, van der Waals, electrostatics; their sum is
    ``total``, the strain), or None where :func:`mmff_strain` is None."""
    r = mmff_relaxation(mol, max_iters)
    if r is None:
        return None
    with rdBase.BlockLogs():
        props = rdForceFieldHelpers.MMFFGetMoleculeProperties(r.start)
        before, after = _term_energies(r.start, props), _term_energies(r.relaxed, props)
    return {**{t: before[t] - after[t] for t in MMFF_TERMS}, "total": r.e_start - r.e_relaxed}


def strain_summary(mols: Iterable[Chem.Mol | None]) -> dict:
    """Median and 90th percentile of strain and RMSD over the molecules MMFF94 can judge, with counts."""
    return summarise([mmff_strain(m) for m in mols])


def summarise(results: list[Strain | None]) -> dict:
    """Median and 90th percentile of strain and RMSD over the judged molecules (not None), with counts."""
    judged = [r for r in results if r is not None]
    out = {"molecules": len(results), "judged": len(judged)}
    if judged:
        s = np.array([r.strain for r in judged])
        d = np.array([r.rmsd for r in judged])
        out.update({"strain_median": float(np.median(s)), "strain_p90": float(np.percentile(s, 90)),
                    "rmsd_median": float(np.median(d)), "rmsd_p90": float(np.percentile(d, 90)),
                    "unit": "kcal/mol, Å"})
    return out
