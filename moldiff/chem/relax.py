"""An explicit force-field polish of generated molecules (``--relax mmff``): the MMFF94 relaxation of the strain
judge (:mod:`moldiff.chem.geometry`: hydrogens first with the heavy atoms fixed, then everything), applied.

Off by default and reported separately: the model's own geometry is what the benchmarks judge. Pure RDKit.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
from rdkit import Chem

from moldiff.chem.build import assign_stereo_from_3d
from moldiff.chem.geometry import MAX_ITERS, mmff_relaxation

RELAX_METHODS = ("none", "mmff")


def check_method(method: str) -> None:
    """A ValueError with a one-line reason unless ``method`` is one of :data:`RELAX_METHODS`."""
    if method not in RELAX_METHODS:
        raise ValueError(f"unknown relaxation {method!r} (choose from {', '.join(RELAX_METHODS)})")


def relax_mmff(mol: Chem.Mol, fixed: Iterable[int] = (), max_iters: int = MAX_ITERS) -> Chem.Mol:
    """A copy of ``mol`` with its conformer relaxed by MMFF94, the same atoms in the same order and its
    properties kept, plus ``moldiff_relaxed`` (1, or 0 when MMFF94 cannot take it: the copy keeps the input's
    coordinates) and, when relaxed, ``moldiff_mmff_drop`` (kcal/mol, the energy the heavy-atom relaxation
    released). ``fixed``: atom indices that do not move (e.g. a fragment kept at its pose)."""
    out = Chem.Mol(mol)
    r = mmff_relaxation(mol, max_iters, fixed)
    if r is None:
        out.SetIntProp("moldiff_relaxed", 0)
        return out
    pos = np.asarray(r.relaxed.GetConformer().GetPositions())[:out.GetNumAtoms()]  # added H come last
    out.GetConformer().SetPositions(pos)
    out.SetIntProp("moldiff_relaxed", 1)
    out.SetDoubleProp("moldiff_mmff_drop", r.e_start - r.e_relaxed)
    return assign_stereo_from_3d(out)  # the stereo tags follow the new coordinates


def relax(mols: Iterable[Chem.Mol], method: str = "none") -> list[Chem.Mol]:
    """``mols`` polished by ``method`` (``"none"``: as they are; ``"mmff"``: :func:`relax_mmff` on each)."""
    check_method(method)
    return list(mols) if method == "none" else [relax_mmff(m) for m in mols]
