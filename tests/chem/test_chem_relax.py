"""The --relax mmff polish: relaxed molecules sit at an MMFF94 minimum, keep their atoms, order and properties,
fixed atoms stay put, and what MMFF94 cannot take comes back unchanged and flagged."""
import numpy as np
import pytest
from rdkit import Chem

from moldiff.chem.geometry import mmff_strain
from moldiff.chem.relax import relax, relax_mmff

from .conftest import relaxed


def _shaken(smiles: str, seed: int = 0) -> Chem.Mol:
    mol = relaxed(smiles)
    pos = mol.GetConformer().GetPositions()
    mol.GetConformer().SetPositions(pos + np.random.RandomState(seed).normal(0, 0.1, pos.shape))
    mol.SetIntProp("moldiff_valid", 1)
    return mol


def test_a_relaxed_molecule_has_no_strain_left_and_keeps_its_atoms():
    mol = _shaken("CC(=O)Nc1ccc(O)cc1")
    before = mmff_strain(mol).strain
    out = relax_mmff(mol)
    assert before > 20 and mmff_strain(out).strain < 0.1 * before
    assert out.GetIntProp("moldiff_relaxed") == 1 and out.GetIntProp("moldiff_valid") == 1
    assert out.GetDoubleProp("moldiff_mmff_drop") == pytest.approx(before, rel=0.05)
    assert [a.GetAtomicNum() for a in out.GetAtoms()] == [a.GetAtomicNum() for a in mol.GetAtoms()]
    assert Chem.MolToSmiles(out) == Chem.MolToSmiles(mol)
    moved = np.abs(out.GetConformer().GetPositions() - mol.GetConformer().GetPositions()).max()
    assert moved > 0.01  # the input itself is not touched: a copy moved
    assert np.allclose(mol.GetConformer().GetPositions(), _shaken("CC(=O)Nc1ccc(O)cc1").GetConformer().GetPositions())


def test_fixed_atoms_do_not_move():
    mol = _shaken("OCC(N)c1ccccc1", seed=1)
    fixed = [a.GetIdx() for a in mol.GetAtoms() if a.GetIsAromatic()]
    out = relax_mmff(mol, fixed=fixed)
    before, after = mol.GetConformer().GetPositions(), out.GetConformer().GetPositions()
    assert np.abs(after[fixed] - before[fixed]).max() < 1e-6
    others = [i for i in range(mol.GetNumAtoms()) if i not in fixed]
    assert np.abs(after[others] - before[others]).max() > 0.01


def test_heavy_atom_only_input_is_relaxed_and_stays_heavy_atom_only():
    mol = Chem.RemoveHs(_shaken("CCOC(=O)C"))
    out = relax_mmff(mol)
    assert out.GetIntProp("moldiff_relaxed") == 1 and out.GetNumAtoms() == mol.GetNumAtoms()


def test_what_mmff_cannot_take_comes_back_unchanged_and_flagged():
    broken = Chem.RWMol(relaxed("CCO"))
    broken.GetAtomWithIdx(2).SetAtomicNum(9)  # a divalent F: does not sanitise
    broken = broken.GetMol()
    out = relax_mmff(broken)
    assert out.GetIntProp("moldiff_relaxed") == 0 and not out.HasProp("moldiff_mmff_drop")
    assert np.array_equal(out.GetConformer().GetPositions(), broken.GetConformer().GetPositions())
    assert relax_mmff(Chem.MolFromSmiles("CCO")).GetIntProp("moldiff_relaxed") == 0  # no conformer


def test_relax_methods():
    mols = [_shaken("CCO")]
    assert relax(mols, "none")[0] is mols[0]
    assert relax(mols, "mmff")[0].GetIntProp("moldiff_relaxed") == 1
    with pytest.raises(ValueError, match="unknown relaxation"):
        relax(mols, "uff")
