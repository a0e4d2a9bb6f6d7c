"""Metric definitions: proportions, charge-aware stability, SMILES, distributions, the evaluate entry point."""
import math

import numpy as np
import pytest
from rdkit import Chem

from moldiff.chem.build import build_mol
from moldiff.chem.metrics import (
    canonical_smiles, charge_stable_atoms, evaluate, evaluate_structures, total_variation,
    wasserstein1_hist, wilson_interval,
)
from moldiff.chem.reference import ANGLE_EDGES, LENGTH_EDGES
from moldiff.chem.reference_build import build_reference

from .conftest import embed, kekule_benzene


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(50, 100)
    assert (lo, hi) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_total_variation_and_w1():
    assert total_variation({"C": 1, "H": 1}, {"C": 1, "H": 1}) == 0
    assert total_variation({"C": 1}, {"H": 3}) == 1
    assert total_variation({"C": 3, "H": 1}, {"C": 1, "H": 1}) == pytest.approx(0.25)
    a = np.histogram([1.00], bins=LENGTH_EDGES)[0]
    b = np.histogram([1.10], bins=LENGTH_EDGES)[0]
    assert wasserstein1_hist(a, b, LENGTH_EDGES) == pytest.approx(0.10, abs=1e-9)


def _with_own_bonds(smiles: str) -> Chem.Mol:
    """Explicit-H molecule with its own bonds and charges, rebuilt through build_mol (no implicit H)."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    Chem.Kekulize(mol, clearAromaticFlags=True)
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), int(b.GetBondTypeAsDouble())) for b in mol.GetBonds()]
    return build_mol([a.GetSymbol() for a in mol.GetAtoms()], None, bonds,
                     [a.GetFormalCharge() for a in mol.GetAtoms()])


@pytest.mark.parametrize("smiles", ["CC(=O)[O-]", "C[N+](=O)[O-]", "C[NH3+]", "c1ccccc1", "[CH2-]C=O"])
def test_charge_aware_stability_accepts_charged_groups(smiles):
    assert charge_stable_atoms(_with_own_bonds(smiles)).all()


def test_charge_aware_stability_rejects_wrong_valences():
    ethyl = build_mol(["C", "C", "H", "H", "H", "H", "H"], None,
                      [(0, 1, 1), (0, 2, 1), (0, 3, 1), (0, 4, 1), (1, 5, 1), (1, 6, 1)])
    ok = charge_stable_atoms(ethyl)
    assert ok.tolist() == [True, False, True, True, True, True, True]  # no neutral 3-valent carbon
    pentavalent = build_mol(["C"] + ["H"] * 5, None, [(0, k, 1) for k in range(1, 6)])
    assert not charge_stable_atoms(pentavalent)[0]
    uncharged_nitro = _with_own_bonds("C[N+](=O)[O-]")
    for atom in uncharged_nitro.GetAtoms():
        atom.SetFormalCharge(0)
    assert not charge_stable_atoms(uncharged_nitro).all()


def test_canonical_smiles_ignores_hydrogens_stereo_and_atom_order():
    _, _, mol = embed("C/C=C/C")
    a = canonical_smiles(mol)
    perm = list(reversed(range(mol.GetNumAtoms())))
    b = canonical_smiles(Chem.RenumberAtoms(mol, perm))
    assert a == b == "CC=CC"
    assert canonical_smiles(build_mol(["C"] + ["H"] * 5, None, [(0, k, 1) for k in range(1, 6)])) is None


def test_evaluate_counts_and_skips():
    el, pos = kekule_benzene()
    benzene = build_mol(el, pos, [])                 # 3D, no bonds: protocol only
    smiles = Chem.MolFromSmiles("CCO", sanitize=False)  # bonds, no 3D: protocol skipped
    result = evaluate([benzene, benzene, smiles, None])
    m = result["metrics"]
    assert result["n_molecules"] == 4 and result["n_none"] == 1 and result["n_3d"] == 2
    assert (m["molecule_stability"]["count"], m["molecule_stability"]["total"]) == (2, 3)  # None counts as failure
    assert (m["atom_stability"]["count"], m["atom_stability"]["total"]) == (24, 24)
    assert (m["sanitises_as_given"]["count"], m["sanitises_as_given"]["total"]) == (1, 2)
    assert (m["uniqueness"]["count"], m["uniqueness"]["total"]) == (2, 3)   # benzene twice, ethanol
    assert "skipped" in m["novelty"] and "skipped" in m["bond_length_w1"]
    lo, hi = m["molecule_stability"]["ci95"]
    assert lo < 2 / 3 < hi


def test_evaluate_with_a_reference():
    train = [embed(s, seed=1) for s in ["CCO", "CC=O", "c1ccccc1", "CC#N"]]
    ref = build_reference([(e, p, None) for e, p, _ in train], "tiny")
    assert ref.n_molecules == 4 and "C-H:1" in ref.bond_lengths and "C" in ref.bond_angles
    same = evaluate_structures([(e, p) for e, p, _ in train[:1]], ref)["metrics"]
    new = evaluate_structures([embed("OCCO", seed=2)[:2]], ref)["metrics"]
    if same["validity"]["count"]:
        assert same["novelty"]["count"] == 0
    assert new["novelty"]["count"] == 1
    assert 0 <= new["atom_type_tv"]["value"] < 0.5
    assert same["bond_length_w1"]["value"] < 0.05
    assert math.isfinite(new["bond_angle_w1"]["value"])


def test_reference_round_trips_through_npz(tmp_path):
    train = [embed(s, seed=1) for s in ["CCO", "C#N"]]
    ref = build_reference([(e, p, s) for (e, p, _), s in zip(train, ["CCO", "C#N"])], "tiny")
    ref.save(tmp_path / "ref.npz")
    back = type(ref).load(tmp_path / "ref.npz")
    assert back.smiles == ref.smiles and back.atom_types == ref.atom_types
    for k, v in ref.bond_lengths.items():
        np.testing.assert_array_equal(back.bond_lengths[k], v)
    assert ANGLE_EDGES.size - 1 == next(iter(back.bond_angles.values())).size
