"""QM9 from qm9pack: record count, the standard split, bond/charge targets, the processed cache."""
import numpy as np
import pytest
import torch
from rdkit import Chem

from moldiff.chem.build import build_mol
from moldiff.data.bonds import bond_targets
from moldiff.data.qm9 import ATOM_TYPES, QM9, DatasetStats, complete_pairs, load_processed, pair_position
from moldiff.data.raw import QM9_SIZE, iter_qm9, split_positions


@pytest.fixture(scope="module")
def qm9_head():
    return list(iter_qm9(400))


@pytest.fixture(scope="module")
def small_blob(tmp_path_factory):
    return load_processed(tmp_path_factory.mktemp("qm9"), limit=300, progress=False)


def canonical(smiles_or_mol) -> str:
    mol = Chem.MolFromSmiles(smiles_or_mol) if isinstance(smiles_or_mol, str) else smiles_or_mol
    return Chem.MolToSmiles(Chem.MolFromSmiles(Chem.MolToSmiles(mol)), isomericSmiles=False)


def test_standard_split_sizes_and_disjoint():
    s = split_positions()
    assert {k: len(v) for k, v in s.items()} == {"train": 100_000, "valid": 17_748, "test": 13_083}
    every = np.concatenate(list(s.values()))
    assert len(np.unique(every)) == QM9_SIZE
    assert (split_positions()["test"] == s["test"]).all()  # fixed seed


def test_records_parse(qm9_head):
    for mol in qm9_head[:50]:
        assert mol.pos.shape == (len(mol.elements), 3)
        assert np.isfinite(mol.pos).all()
        assert set(mol.elements) <= set(ATOM_TYPES)


def test_bond_targets_reproduce_dataset_smiles(qm9_head):
    """Bonds and charges mapped onto the DFT geometry rebuild the dataset's own molecule."""
    for mol in qm9_head[::7]:
        t = bond_targets(mol.smiles, mol.elements, mol.pos)
        assert t.status.startswith("matched"), (mol.index, t.status)
        built = build_mol(mol.elements, mol.pos, [tuple(b) for b in t.bonds.tolist()], t.charges.tolist())
        Chem.SanitizeMol(built)
        assert canonical(built) == canonical(mol.smiles)


def test_bond_targets_zwitterion_charges():
    """A QM9 zwitterion keeps its formal charges (found by scanning the head of the data set)."""
    for mol in iter_qm9(20_000):
        if "+" in mol.smiles and "-" in mol.smiles:
            t = bond_targets(mol.smiles, mol.elements, mol.pos)
            assert sorted(c for c in t.charges.tolist() if c) == [-1, 1]
            return
    pytest.skip("no zwitterion in the first 20,000 records")


def test_pair_positions():
    for n in (2, 5, 9):
        pairs = complete_pairs(n)
        assert pairs.shape[1] == n * (n - 1) // 2
        assert (pairs[0] < pairs[1]).all()
        assert torch.equal(pair_position(pairs[0], pairs[1], n), torch.arange(pairs.shape[1]))


def test_processed_cache_and_dataset(small_blob):
    ds = QM9("train", blob=small_blob)
    d = ds[0]
    n = d.num_nodes
    assert d.x.shape == (n, 6) and d.pos.shape == (n, 3)
    assert torch.equal(d.x[:, :5].argmax(1), d.atom_type)
    assert d.pair_index.shape[1] == n * (n - 1) // 2 and d.bond.shape[0] == d.pair_index.shape[1]
    # each atom's bond orders plus charge-free valence: carbon 4, hydrogen 1, ...
    valence = torch.zeros(n, dtype=torch.long)
    valence.index_add_(0, d.pair_index[0], d.bond)
    valence.index_add_(0, d.pair_index[1], d.bond)
    expected = torch.tensor([1, 4, 3, 2, 1])[d.atom_type] + d.charge * torch.where(d.atom_type == 2, 1, -1)
    assert torch.equal(valence, expected)


def test_cache_loads_again(tmp_path):
    blob = load_processed(tmp_path, limit=40, progress=False)
    again = load_processed(tmp_path, limit=40, progress=False)
    assert again["smiles"] == blob["smiles"] and torch.equal(again["pos"], blob["pos"])
    stats = DatasetStats.from_blob(blob)
    assert sum(stats.n_atoms_hist) == len(blob["splits"]["train"])
    assert abs(sum(stats.atom_type_freq) - 1) < 1e-9 and abs(sum(stats.bond_freq) - 1) < 1e-9
    assert DatasetStats.from_dict(stats.to_dict()) == stats


def test_training_blob_holds_the_same_molecules(small_blob):
    """The carried training cache: every train molecule and the first validation ones, unchanged."""
    from moldiff.data.qm9 import training_blob

    full = small_blob
    part = training_blob(full, val_molecules=5)
    for split, n in (("train", None), ("valid", 5)):
        a, b = QM9(split, blob=full), QM9(split, blob=part)
        assert len(b) == (len(a) if n is None else n)
        for k in range(len(b)):
            x, y = a[k], b[k]
            assert torch.equal(x.pos, y.pos) and torch.equal(x.atom_type, y.atom_type)
            assert torch.equal(x.charge, y.charge) and torch.equal(x.bond, y.bond)
    assert len(QM9("test", blob=part)) == 0 and "smiles" not in part
    assert DatasetStats.from_blob(full).to_dict() == DatasetStats.from_blob(part).to_dict()


def test_heavy_atom_dataset_has_no_hydrogens_and_its_own_pN(small_blob):
    """Hydrogens removed at load time: heavy atoms and their bonds as RDKit reads them from the SMILES, the
    coordinates and charges of those atoms, and p(N) the heavy-atom count histogram."""
    from moldiff.data.qm9 import without_hydrogens

    heavy = without_hydrogens(small_blob)
    assert not (heavy["atom_type"] == ATOM_TYPES.index("H")).any()
    full, part = QM9("train", blob=small_blob), QM9("train", blob=heavy)
    smiles = full.smiles()
    for k in range(len(part)):
        x, y, ref = full[k], part[k], Chem.MolFromSmiles(smiles[k])
        keep = x.atom_type != ATOM_TYPES.index("H")
        assert y.num_nodes == ref.GetNumHeavyAtoms() and int(y.bond.count_nonzero()) == ref.GetNumBonds()
        assert torch.equal(y.pos, x.pos[keep]) and torch.equal(y.atom_type, x.atom_type[keep])
        assert torch.equal(y.charge, x.charge[keep])
        dense_x = torch.zeros(x.num_nodes, x.num_nodes, dtype=torch.long)
        dense_x[x.pair_index[0], x.pair_index[1]] = x.bond
        dense_y = torch.zeros(y.num_nodes, y.num_nodes, dtype=torch.long)
        dense_y[y.pair_index[0], y.pair_index[1]] = y.bond
        assert torch.equal(dense_y, dense_x[keep][:, keep])
    stats = DatasetStats.from_blob(heavy)
    direct = torch.bincount(torch.tensor([Chem.MolFromSmiles(s).GetNumHeavyAtoms() for s in smiles]))
    assert stats.n_atoms_hist == direct.tolist()
    assert stats.atom_type_freq[ATOM_TYPES.index("H")] == 0 and abs(sum(stats.atom_type_freq) - 1) < 1e-9
