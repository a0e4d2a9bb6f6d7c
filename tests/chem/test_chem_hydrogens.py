"""Hydrogens added to a heavy-atom geometry: the heavy atoms stay exactly where they were, and the force-field
placement gives a lower-energy set of hydrogens than RDKit's own geometric placement."""
import numpy as np
from rdkit import Chem
from rdkit.Chem import rdForceFieldHelpers

from moldiff.chem.hydrogens import add_hydrogens

from .conftest import relaxed


def _heavy_geometry(smiles: str) -> Chem.Mol:
    return Chem.RemoveHs(relaxed(smiles, seed=3))


def _mmff_energy(mol: Chem.Mol) -> float:
    props = rdForceFieldHelpers.MMFFGetMoleculeProperties(mol)
    return rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, props).CalcEnergy()


def test_heavy_atoms_stay_and_the_hydrogens_relax():
    heavy = _heavy_geometry("CC(C)(C)C(=O)NC1CCCCC1")
    plain, placed = add_hydrogens(heavy, relax=False), add_hydrogens(heavy)
    assert placed.GetNumAtoms() == plain.GetNumAtoms() > heavy.GetNumAtoms()
    n = heavy.GetNumAtoms()
    assert np.array_equal(placed.GetConformer().GetPositions()[:n], heavy.GetConformer().GetPositions())
    assert all(a.GetAtomicNum() == 1 for a in placed.GetAtoms() if a.GetIdx() >= n)
    assert _mmff_energy(placed) < _mmff_energy(plain) - 1.0  # kcal/mol


def test_nothing_to_add_returns_the_molecule_as_it_is():
    heavy = _heavy_geometry("ClC(Cl)(Cl)Cl")
    out = add_hydrogens(heavy)
    assert out.GetNumAtoms() == heavy.GetNumAtoms()
    assert np.array_equal(out.GetConformer().GetPositions(), heavy.GetConformer().GetPositions())
