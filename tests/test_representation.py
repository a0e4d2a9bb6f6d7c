"""Molecule ⇄ diffusion state on real QM9 molecules: layout, scaling, centring, decoding, sampling template."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

from moldiff.data.qm9 import ATOM_TYPES, ATOMIC_NUMBERS, QM9, complete_pairs, load_processed, pair_position
from moldiff.data.qm9 import without_hydrogens
from moldiff.diffusion.chain import DiffusionChain, sample_noise
from moldiff.diffusion.schedule import NoiseSchedule, ScheduleConfig
from moldiff.data.store import MoleculeDataset, MoleculeRecord, pack_records, vocabulary_of
from moldiff.representation import FeatureConfig, decode, encode, graph_of
from moldiff.vocab import Vocabulary

CHARGES = (-1, 0, 1)  # QM9's formal charges
BOND_CLASSES = 4  # no bond, single, double, triple
EDM = FeatureConfig(atom_types=ATOM_TYPES)  # one-hot(H, C, N, O, F)/4 and Z/10
BONDS = FeatureConfig(atom_types=ATOM_TYPES, charges=CHARGES, include_z=False, include_charge=True,
                      include_bonds=True)  # the qm9-bonds preset
NOH = FeatureConfig(atom_types=("C", "N", "O", "F"), charges=CHARGES, include_z=False, include_charge=True,
                    include_bonds=True, implicit_h=True)  # the qm9-bonds-noh preset
SAMPLE = [206, 1227, 1232, 1246] + list(range(0, 96_000, 1_600))


@pytest.fixture(scope="module")
def blob():
    return load_processed()


@pytest.fixture(scope="module")
def batch(blob):
    """64 training molecules: every 1,600th (small and large ones, all bond orders) and four with formal
    charges (zwitterion-style N+/O− pairs; train positions 206, 1227, 1232, 1246)."""
    data = QM9("train", blob=blob)
    return Batch.from_data_list([data[k] for k in SAMPLE])


@pytest.fixture(scope="module")
def heavy_batch(blob):
    """The same 64 molecules with their hydrogens removed."""
    data = QM9("train", blob=without_hydrogens(blob))
    return Batch.from_data_list([data[k] for k in SAMPLE])


def test_pair_order_is_canonical():
    for n in range(1, 12):
        i, j = complete_pairs(n)
        assert bool((i < j).all()) and i.numel() == n * (n - 1) // 2
        assert torch.equal(pair_position(i, j, n), torch.arange(i.numel()))


def test_batch_bookkeeping(batch):
    graph = graph_of(batch)
    assert graph.num_graphs == 64
    i, j = graph.pair_index
    assert bool((i < j).all()) and bool((graph.batch[i] == graph.batch[j]).all())
    n = graph.n_atoms
    assert int(graph.pair_index.shape[1]) == int((n * (n - 1) // 2).sum())
    assert set(batch.charge.tolist()) >= {-1, 0, 1} and set(batch.bond.tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("cfg", [EDM, BONDS], ids=["edm", "bonds"])
def test_encode_layout_and_scaling(batch, cfg):
    x0, graph = encode(batch, cfg)
    N, P = batch.num_nodes, batch.pair_index.shape[1]
    assert x0.x.shape == (N, 3) and x0.h.shape == (N, cfg.h_dim)
    assert (x0.e is None) if cfg.e_dim == 0 else (x0.e.shape == (P, cfg.e_dim))
    # coordinates: the molecule's own, centred (float32 storage: 1e-5 Å)
    mean = torch.zeros(64, 3).index_add_(0, graph.batch, batch.pos) / graph.n_atoms[:, None].float()
    assert torch.allclose(x0.x, batch.pos - mean[graph.batch], atol=1e-5)
    assert torch.zeros(64, 3).index_add_(0, graph.batch, x0.x).abs().max() < 1e-4
    # every categorical block is a one-hot row scaled by 1/4
    for field, cols, scale in cfg.categorical_blocks():
        block = getattr(x0, field)[:, cols]
        assert block.shape[1] in (len(cfg.atom_types), len(CHARGES), BOND_CLASSES)
        assert torch.equal((block / scale).sum(1), torch.ones(block.shape[0]))
        assert set((block / scale).unique().tolist()) <= {0.0, 1.0}
    k = len(cfg.atom_types)
    assert torch.equal(x0.h[:, :k].argmax(1), batch.atom_type)
    if cfg.include_z:
        z = torch.tensor(ATOMIC_NUMBERS, dtype=torch.float32)[batch.atom_type]
        assert torch.allclose(x0.h[:, k], z * cfg.z_scale)


@pytest.mark.parametrize("cfg", [EDM, BONDS], ids=["edm", "bonds"])
def test_decode_inverts_encode(batch, cfg):
    x0, _ = encode(batch, cfg)
    d = decode(x0, cfg)
    assert torch.equal(d.atom_type, batch.atom_type)
    assert torch.equal(d.pos, x0.x)
    if cfg.include_charge:
        assert torch.equal(d.charge, batch.charge)
    else:
        assert torch.equal(d.charge, torch.zeros_like(batch.charge))
    if cfg.include_bonds:
        assert torch.equal(d.bond, batch.bond)
    else:
        assert d.bond is None


@pytest.mark.parametrize("cfg", [EDM, BONDS], ids=["edm", "bonds"])
def test_decode_survives_t0_noise(batch, cfg):
    """z_0 = α_0 x + σ_0 ε decodes to the same molecule: σ_0 ≈ 0.003 against a one-hot gap of 0.25 needs
    a ~80σ draw to flip an argmax."""
    chain = DiffusionChain(NoiseSchedule(ScheduleConfig()))
    x0, graph = encode(batch, cfg)
    t0 = torch.zeros(graph.num_graphs, dtype=torch.long)
    z0 = chain.q_sample(x0, t0, sample_noise(x0, graph, torch.Generator().manual_seed(0)), graph)
    a, b = decode(z0, cfg), decode(x0, cfg)
    assert torch.equal(a.atom_type, b.atom_type) and torch.equal(a.charge, b.charge)
    assert (a.bond is None and b.bond is None) or torch.equal(a.bond, b.bond)


@pytest.mark.parametrize("cfg", [EDM, BONDS], ids=["edm", "bonds"])
def test_empty_graph_matches_the_data_batch(batch, cfg):
    from moldiff.sampling import empty_graph

    sizes = torch.bincount(batch.batch).tolist()
    template, graph = empty_graph(sizes, cfg.h_dim, cfg.e_dim, torch.device("cpu"))
    ref = graph_of(batch)
    assert graph.num_graphs == ref.num_graphs
    assert torch.equal(graph.batch, ref.batch) and torch.equal(graph.pair_index, ref.pair_index)
    x0, _ = encode(batch, cfg)
    for a, b in zip(template, x0):
        assert (a is None and b is None) or (a.shape == b.shape and not a.any())


def test_implicit_h_one_hot_has_no_h_class_and_decodes_back(heavy_batch):
    x0, _ = encode(heavy_batch, NOH)
    assert NOH.h_dim == 4 + len(CHARGES) and x0.h.shape == (heavy_batch.num_nodes, NOH.h_dim)
    assert [cols for _, cols, _ in NOH.categorical_blocks()] == [slice(0, 4), slice(4, 7), slice(0, BOND_CLASSES)]
    onehot = x0.h[:, :4] / NOH.onehot_scale
    assert torch.equal(onehot.sum(1), torch.ones(heavy_batch.num_nodes))
    assert [NOH.atom_types[c] for c in onehot.argmax(1).tolist()] == \
        [ATOM_TYPES[t] for t in heavy_batch.atom_type.tolist()]
    d = decode(x0, NOH)
    assert d.elements(NOH) == [ATOM_TYPES[t] for t in heavy_batch.atom_type.tolist()]
    assert torch.equal(d.charge, heavy_batch.charge)
    assert torch.equal(d.bond, heavy_batch.bond) and set(heavy_batch.charge.tolist()) == {-1, 0, 1}


def test_implicit_h_refuses_hydrogens_and_inconsistent_options(batch):
    with pytest.raises(ValueError, match="element H is not in the model's vocabulary"):
        encode(batch, NOH)  # explicit-H molecules: the one-hot has no column for H
    with pytest.raises(ValueError, match="without 'H'"):
        FeatureConfig(atom_types=ATOM_TYPES, include_bonds=True, implicit_h=True)
    with pytest.raises(ValueError, match="include_bonds"):
        FeatureConfig(atom_types=("C", "N", "O", "F"), implicit_h=True)
    with pytest.raises(ValueError, match="unknown element"):
        FeatureConfig(atom_types=("C", "Xx"))


def test_vocabulary_is_read_from_the_data(blob):
    assert vocabulary_of(blob) == Vocabulary(ATOM_TYPES, CHARGES, (1, 2, 3))
    assert vocabulary_of(without_hydrogens(blob)).elements == ("C", "N", "O", "F")
    cfg = FeatureConfig(include_charge=True, include_bonds=True).with_vocabulary(vocabulary_of(blob))
    assert cfg.atom_types == ATOM_TYPES and cfg.charges == CHARGES and cfg.h_dim == 5 + 1 + 3
    with pytest.raises(ValueError, match="element H"):
        NOH.with_vocabulary(vocabulary_of(blob))  # names its classes, and they lack what the data hold


def test_a_vocabulary_with_sulfur_and_chlorine_builds_featurises_and_decodes():
    """Thiophene-2-sulfonyl chloride-like records with S and Cl (and a charged N): the vocabulary comes from
    the records, encode/decode round-trips every class."""
    import numpy as np

    rng = np.random.default_rng(0)
    recs = [MoleculeRecord(("C", "S", "Cl", "O"), rng.normal(size=(4, 3)), np.array([0, 0, 0, 0]),
                           np.array([[0, 1, 1], [1, 2, 1], [1, 3, 2]])),
            MoleculeRecord(("N", "C", "Cl", "H", "S"), rng.normal(size=(5, 3)), np.array([1, 0, 0, 0, -1]),
                           np.array([[0, 1, 3], [1, 2, 1], [0, 3, 1], [1, 4, 1]]))]
    blob = pack_records(recs)
    blob["splits"] = {"train": torch.arange(2)}
    vocab = vocabulary_of(blob)
    assert vocab.elements == ("H", "C", "N", "O", "S", "Cl") and vocab.charges == (-1, 0, 1)
    cfg = FeatureConfig(include_charge=True, include_bonds=True).with_vocabulary(vocab)
    data = MoleculeDataset("train", blob)
    batch = Batch.from_data_list([data[0], data[1]])
    assert batch.z.tolist() == [6, 16, 17, 8, 7, 6, 17, 1, 16]
    x0, _ = encode(batch, cfg)
    assert x0.h.shape == (9, 6 + 1 + 3) and x0.e.shape == (6 + 10, 4)
    d = decode(x0, cfg)
    assert d.elements(cfg) == ["C", "S", "Cl", "O", "N", "C", "Cl", "H", "S"]
    assert d.charge.tolist() == [0, 0, 0, 0, 1, 0, 0, 0, -1] and torch.equal(d.bond, batch.bond)
