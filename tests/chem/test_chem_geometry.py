"""MMFF94 strain: zero at a minimum, large for a distorted geometry, None where MMFF cannot judge."""
import numpy as np
import pytest
from rdkit import Chem

from moldiff.chem.geometry import mmff_strain, strain_summary

from .conftest import relaxed


def test_a_minimum_has_no_strain_and_a_distortion_has_some():
    mol = relaxed("CC(=O)Nc1ccc(O)cc1")
    at_min = mmff_strain(mol)
    assert abs(at_min.strain) < 1e-3 and at_min.rmsd < 1e-3
    pos = mol.GetConformer().GetPositions()
    bent = Chem.Mol(mol)
    bent.GetConformer().SetPositions(pos + np.random.RandomState(0).normal(0, 0.1, pos.shape))
    worse = mmff_strain(bent)
    assert worse.strain > 20 and 0.02 < worse.rmsd < 0.5


def test_hydrogens_are_relaxed_before_strain_is_counted():
    """Hydrogens removed and placed again by RDKit: the heavy atoms are at a minimum, so little strain."""
    heavy = Chem.RemoveHs(relaxed("OCC(N)c1ccccc1"))
    assert mmff_strain(heavy).strain < 2.0  # at most a rotamer of OH/NH2 hydrogens


def test_unjudgeable_molecules_are_none_and_counted():
    flat = Chem.MolFromSmiles("CCO")  # no conformer
    broken = Chem.RWMol(relaxed("CCO"))
    broken.GetAtomWithIdx(2).SetAtomicNum(9)  # the O bonded to C and H becomes a divalent F: does not sanitise
    assert mmff_strain(flat) is None and mmff_strain(broken.GetMol()) is None
    summary = strain_summary([relaxed("CCO"), flat, None])
    assert summary["molecules"] == 3 and summary["judged"] == 1 and summary["strain_median"] < 1e-3


def test_strain_terms_add_up_and_point_at_the_distortion():
    """A bond-angle distortion shows up as angle strain, a stretched bond as bond strain; the terms sum to the
    strain."""
    from rdkit.Chem import rdMolTransforms

    from moldiff.chem.geometry import MMFF_TERMS, strain_terms

    mol = relaxed("CCCO")
    bent = Chem.Mol(mol)
    rdMolTransforms.SetAngleDeg(bent.GetConformer(), 0, 1, 2, 135.0)
    stretched = Chem.Mol(mol)
    rdMolTransforms.SetBondLength(stretched.GetConformer(), 1, 2, 1.75)
    for distorted, main in ((bent, "Angle"), (stretched, "Bond")):
        terms = strain_terms(distorted)
        assert set(terms) == {*MMFF_TERMS, "total"}
        assert abs(sum(terms[t] for t in MMFF_TERMS) - terms["total"]) < 1e-3
        assert terms["total"] == pytest.approx(mmff_strain(distorted).strain, abs=1e-6)
        assert max(MMFF_TERMS, key=lambda t: terms[t]) == main
    assert strain_terms(Chem.MolFromSmiles("CCO")) is None
