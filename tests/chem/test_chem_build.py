import numpy as np
import pytest
from rdkit import Chem

from moldiff.chem.build import build_mol, mol_bonds, mol_elements, mol_positions


def test_build_mol_keeps_atoms_bonds_and_conformer():
    pos = np.array([[0.0, 0, 0], [1.2, 0, 0], [-0.6, 0.9, 0]])
    mol = build_mol(["C", "O", "H"], pos, [(0, 1, 2), (0, 2, 1)])
    assert mol_elements(mol) == ["C", "O", "H"]
    assert mol_bonds(mol) == [(0, 1, 2), (0, 2, 1)]
    np.testing.assert_allclose(mol_positions(mol), pos)
    assert mol.GetConformer().Is3D()


def test_no_implicit_hydrogens_by_default():
    mol = build_mol(["C"], None, [])
    Chem.SanitizeMol(mol)
    assert mol.GetAtomWithIdx(0).GetTotalNumHs() == 0  # judged as given: a bare carbon
    mol = build_mol(["C"], None, [], implicit_hydrogens=True)
    Chem.SanitizeMol(mol)
    assert mol.GetAtomWithIdx(0).GetTotalNumHs() == 4


def test_charges_and_aromatic_bonds():
    ring = [(k, (k + 1) % 6, 4) for k in range(6)]
    mol = build_mol(["C"] * 6, None, ring, implicit_hydrogens=True)
    Chem.SanitizeMol(mol)
    assert Chem.MolToSmiles(mol) == "c1ccccc1"
    mol = build_mol(["N", "H", "H", "H", "H"], None, [(0, k, 1) for k in range(1, 5)], charges=[1, 0, 0, 0, 0])
    Chem.SanitizeMol(mol)
    assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == "[NH4+]"


@pytest.mark.parametrize("elements,pos,bonds,match", [
    (["C", "Xx"], None, [], "unknown element"),
    (["C", "C"], None, [(0, 2, 1)], "out of range"),
    (["C", "C"], None, [(0, 1, 7)], "unknown order"),
    (["C", "C"], None, [(0, 1, 1), (1, 0, 1)], "twice"),
    (["C", "C"], np.zeros((3, 3)), [], "shape"),
    (["C"], np.array([[np.nan, 0, 0]]), [], "NaN"),
])
def test_bad_input_raises(elements, pos, bonds, match):
    with pytest.raises(ValueError, match=match):
        build_mol(elements, pos, bonds)
