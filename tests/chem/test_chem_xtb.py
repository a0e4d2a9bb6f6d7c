"""GFN2-xTB strain: small at a minimum of xTB's own, large for a distorted copy, None where it cannot judge, and
the same order as MMFF94's on a strained and a relaxed conformer."""
import importlib.util

import numpy as np
import pytest
from rdkit import Chem

from moldiff.chem.geometry import mmff_strain

from .conftest import relaxed

pytestmark = pytest.mark.skipif(any(importlib.util.find_spec(p) is None for p in ("tblite", "ase")),
                                reason="tblite or ase not installed")


def test_a_distorted_conformer_is_more_strained_than_a_relaxed_one():
    from moldiff.chem.xtb import xtb_strain

    mol = relaxed("CC(=O)Nc1ccccc1")  # MMFF94's minimum: near, not at, xTB's
    pos = mol.GetConformer().GetPositions()
    bent = Chem.Mol(mol)
    bent.GetConformer().SetPositions(pos + np.random.RandomState(0).normal(0, 0.1, pos.shape))
    near, far = xtb_strain(mol), xtb_strain(bent)
    assert 0 <= near.strain < 3 and near.rmsd < 0.1
    assert far.strain > near.strain + 10 and far.rmsd > near.rmsd
    assert mmff_strain(bent).strain > mmff_strain(mol).strain + 10  # the two judges agree on the order


def test_hydrogens_are_placed_and_relaxed_first():
    """Hydrogens removed and placed again by RDKit: they are relaxed with the heavy atoms fixed, not counted."""
    from moldiff.chem.xtb import xtb_strain

    mol = relaxed("OCC(N)C")
    assert xtb_strain(Chem.RemoveHs(mol)).strain == pytest.approx(xtb_strain(mol).strain, abs=1.5)


def test_unjudgeable_molecules_are_none_and_counted():
    from moldiff.chem.xtb import xtb_summary

    summary = xtb_summary([relaxed("CCO"), Chem.MolFromSmiles("CCO"), None])  # the 2nd has no conformer
    assert summary["molecules"] == 3 and summary["judged"] == 1 and 0 <= summary["strain_median"] < 3
