import numpy as np
from rdkit import Chem

from moldiff.chem.build import mol_positions
from moldiff.chem.graph import mol_to_nx, nx_to_mol

from .conftest import embed


def test_round_trip_keeps_atoms_bonds_charges_and_positions():
    _, pos, mol = embed("C[N+](=O)[O-]")
    g = mol_to_nx(mol)
    assert g.number_of_nodes() == mol.GetNumAtoms() and g.number_of_edges() == mol.GetNumBonds()
    assert {d["element"] for _, d in g.nodes(data=True)} == {"C", "N", "O", "H"}
    assert sorted(d["formal_charge"] for _, d in g.nodes(data=True) if d["formal_charge"]) == [-1, 1]
    back = nx_to_mol(g)
    Chem.SanitizeMol(back)
    assert Chem.MolToSmiles(back) == Chem.MolToSmiles(mol)
    np.testing.assert_allclose(mol_positions(back), pos)


def test_round_trip_without_coordinates_keeps_implicit_hydrogens():
    mol = Chem.MolFromSmiles("c1ccccc1C(=O)[O-]")
    g = mol_to_nx(mol)
    assert all(d["pos"] is None for _, d in g.nodes(data=True))
    assert {d["order"] for _, _, d in g.edges(data=True)} == {1, 2, 4}
    back = nx_to_mol(g)
    Chem.SanitizeMol(back)
    assert Chem.MolToSmiles(back) == Chem.MolToSmiles(mol)
