"""The distance protocol on molecules whose answers are worked out by hand."""
import numpy as np
import pytest

from moldiff.chem.metrics import judge_protocol
from moldiff.chem.protocol import bond_order, protocol_bonds, protocol_stability

from .conftest import embed, kekule_benzene


@pytest.mark.parametrize("a,b,d,order", [
    ("C", "C", 1.63, 1), ("C", "C", 1.64, 0),    # single: < 154 + 10 pm
    ("C", "C", 1.38, 2), ("C", "C", 1.39, 1),    # double: < 134 + 5 pm (aromatic 1.39-1.40 reads single)
    ("C", "C", 1.22, 3), ("C", "C", 1.23, 2),    # triple: < 120 + 3 pm
    ("C", "O", 1.24, 2), ("N", "O", 1.25, 2),
    ("C", "H", 1.18, 1), ("C", "H", 1.19, 0),
    ("C", "F", 1.30, 1),                         # no C=F in the table: stays single however short
    ("O", "H", 1.05, 1), ("H", "H", 0.83, 1), ("C", "Xx", 1.0, 0),
])
def test_bond_order_thresholds(a, b, d, order):
    assert bond_order(a, b, d) == order
    assert bond_order(b, a, d) == order


def test_order_matrix_agrees_with_pairwise_rule():
    elements, pos, _ = embed("OC(=O)C#N")
    bonds = {(i, j): o for i, j, o in protocol_bonds(elements, pos)}
    for i in range(len(elements)):
        for j in range(i + 1, len(elements)):
            assert bonds.get((i, j), 0) == bond_order(elements[i], elements[j], np.linalg.norm(pos[i] - pos[j]))


def test_kekule_benzene_is_stable_and_valid():
    elements, pos = kekule_benzene()
    assert sorted(o for _, _, o in protocol_bonds(elements, pos)) == [1] * 9 + [2] * 3
    j = judge_protocol(elements, pos)
    assert (j.stable_atoms, j.stable, j.valid, j.connected_valid) == (12, True, True, True)
    assert j.smiles == "c1ccccc1"


def test_aromatic_benzene_fails_the_protocol():
    # Real benzene has all C-C at 1.39-1.40 Å: above 134 + 5 pm, so every ring bond reads single.
    elements, pos = kekule_benzene(double=1.395, single=1.395)
    assert protocol_stability(elements, pos) == (6, 12, False)


def test_carboxylate_anion():
    elements, pos, _ = embed("CC(=O)[O-]")
    stable, n, mol_stable = protocol_stability(elements, pos)
    assert not mol_stable and stable < n            # no formal charges in the protocol: O- is 1-valent


def test_nitro_group_is_unstable_and_invalid():
    elements, pos, _ = embed("C[N+](=O)[O-]")
    j = judge_protocol(elements, pos)
    n_index = elements.index("N")
    valence = j.order[n_index].sum()
    assert valence >= 4                              # N bonded to C and two O: over its valence of 3
    assert not j.stable and not j.valid              # uncharged 4-valent N does not sanitise


def test_disconnected_pair_valid_but_not_connected():
    e1, p1, _ = embed("C")
    e2, p2, _ = embed("O")
    j = judge_protocol(e1 + e2, np.vstack([p1, p2 + [6.0, 0, 0]]))
    assert j.stable and j.valid and not j.connected_valid
    assert j.smiles == "C"                           # EDM: SMILES of the largest fragment


def test_over_valent_carbon():
    elements, pos, _ = embed("C")
    extra = pos[0] + 1.09 * np.array([0.0, 0.0, 1.0]) * -np.sign(pos[1:, 2].sum() or 1)
    j = judge_protocol(elements + ["H"], np.vstack([pos, extra]))
    assert j.order[0].sum() == 5
    assert not j.stable and not j.valid


def test_missing_hydrogen_is_unstable_but_edm_valid():
    elements, pos, _ = embed("CC")
    drop = elements.index("H")
    keep = [k for k in range(len(elements)) if k != drop]
    j = judge_protocol([elements[k] for k in keep], pos[keep])
    assert j.stable_atoms == len(keep) - 1 and not j.stable
    assert j.valid and j.smiles == "CC"              # implicit H fills the radical centre (EDM validity)


def test_permuted_copy_gives_same_answers():
    elements, pos, _ = embed("OCC1=CC=CN1")
    perm = np.random.default_rng(3).permutation(len(elements))
    a = judge_protocol(elements, pos)
    b = judge_protocol([elements[k] for k in perm], pos[perm])
    assert (a.stable_atoms, a.stable, a.valid, a.smiles) == (b.stable_atoms, b.stable, b.valid, b.smiles)
    np.testing.assert_array_equal(a.order[np.ix_(perm, perm)], b.order)


def test_protocol_mol_is_unsanitised_with_implicit_hydrogens_allowed():
    from rdkit import Chem

    from moldiff.chem.build import mol_positions
    from moldiff.chem.protocol import protocol_mol

    elements, pos, _ = embed("CC")
    drop = elements.index("H")
    keep = [k for k in range(len(elements)) if k != drop]
    mol = protocol_mol([elements[k] for k in keep], pos[keep])
    assert mol.GetNumAtoms() == 7 and mol.GetNumBonds() == 6
    np.testing.assert_allclose(mol_positions(mol), pos[keep])
    Chem.SanitizeMol(mol)
    assert sum(a.GetNumImplicitHs() for a in mol.GetAtoms()) == 1   # the missing H comes back implicitly
