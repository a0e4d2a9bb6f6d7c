"""Decoding states into RDKit molecules, and the batch sampler's bookkeeping."""
import dataclasses

import pytest
import torch
from rdkit import Chem
from torch_geometric.data import Batch

from moldiff.config import load_config
from moldiff.data.qm9 import QM9, DatasetStats, load_processed, without_hydrogens
from moldiff.model import Generator
from moldiff.representation import encode
from moldiff.data.store import vocabulary_of
from moldiff.sampling import draw_size, generate, to_molecules


@pytest.fixture(scope="module")
def blob(tmp_path_factory):
    return load_processed(tmp_path_factory.mktemp("qm9"), limit=300, progress=False)


def bonds_generator(blob, preset: str = "qm9-bonds") -> Generator:
    cfg = load_config(preset)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, hidden=16, layers=1, edge_hidden=8),
                              features=cfg.features.with_vocabulary(vocabulary_of(blob, split=None)))
    return Generator.from_config(cfg, DatasetStats.from_blob(blob))


def canonical(smiles: str) -> str:
    """The constitution only: stereo (assigned from 3D to samples, e.g. of an imine's N–H) and hydrogens off."""
    mol = Chem.MolFromSmiles(smiles)
    Chem.RemoveStereochemistry(mol)
    return Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)


def test_noise_free_qm9_graph_decodes_to_its_own_smiles(blob):
    gen = bonds_generator(blob)
    data = QM9("train", blob=blob)
    batch = Batch.from_data_list([data[k] for k in range(60)])
    state, graph = encode(batch, gen.config.features)
    mols = to_molecules(gen, state, graph)
    smiles = data.smiles()[:60]
    for mol, ref in zip(mols, smiles):
        assert mol.GetIntProp("moldiff_valid") == 1
        assert canonical(Chem.MolToSmiles(mol)) == canonical(ref)
        assert mol.GetConformer().Is3D()


def test_noise_free_heavy_atom_graph_decodes_to_its_own_molecule_with_hydrogens(blob):
    """Implicit H: the heavy-atom graph decodes to the molecule's SMILES with QM9's own number of hydrogens,
    added by RDKit as atoms in 3D after the heavy atoms, which keep the chain's coordinates."""
    heavy = without_hydrogens(blob)
    gen = bonds_generator(heavy, "qm9-bonds-noh")
    data, full = QM9("train", blob=heavy), QM9("train", blob=blob)
    batch = Batch.from_data_list([data[k] for k in range(60)])
    state, graph = encode(batch, gen.config.features)
    mols = to_molecules(gen, state, graph)
    starts = torch.cumsum(graph.n_atoms, 0) - graph.n_atoms
    for k, (mol, ref) in enumerate(zip(mols, data.smiles()[:60])):
        n_heavy = int(graph.n_atoms[k])
        assert mol.GetIntProp("moldiff_valid") == 1
        assert canonical(Chem.MolToSmiles(mol)) == canonical(ref)
        assert mol.GetNumAtoms() == full[k].num_nodes and mol.GetNumHeavyAtoms() == n_heavy
        assert all(a.GetSymbol() == "H" for a in mol.GetAtoms() if a.GetIdx() >= n_heavy)
        assert all(a.GetNumImplicitHs() == 0 for a in mol.GetAtoms())
        conf = mol.GetConformer()
        assert conf.Is3D()
        xyz = torch.tensor(conf.GetPositions(), dtype=torch.float32)
        assert torch.allclose(xyz[:n_heavy], state.x[starts[k]:starts[k] + n_heavy], atol=1e-6)
        for bond in mol.GetBonds():
            if "H" in (bond.GetBeginAtom().GetSymbol(), bond.GetEndAtom().GetSymbol()):
                d = float((xyz[bond.GetBeginAtomIdx()] - xyz[bond.GetEndAtomIdx()]).norm())
                assert 0.9 < d < 1.2, d  # X–H bond lengths


def test_heavy_atom_graph_that_does_not_sanitise_comes_back_without_hydrogens(blob):
    heavy = without_hydrogens(blob)
    gen = bonds_generator(heavy, "qm9-bonds-noh")
    data = QM9("train", blob=heavy)
    batch = Batch.from_data_list([data[k] for k in range(10, 14)])
    state, graph = encode(batch, gen.config.features)
    e = torch.zeros_like(state.e)
    e[:, 3] = 0.25  # every pair a triple bond
    mols = to_molecules(gen, state._replace(e=e), graph)
    assert [m.GetNumAtoms() for m in mols] == graph.n_atoms.tolist()
    for mol in mols:
        assert mol.GetIntProp("moldiff_valid") == 0 and mol.HasProp("moldiff_error")
        assert all(a.GetSymbol() != "H" and a.GetNoImplicit() for a in mol.GetAtoms())
        assert mol.GetConformer().Is3D()


def test_bad_decoded_chemistry_is_flagged_not_dropped(blob):
    gen = bonds_generator(blob)
    data = QM9("train", blob=blob)
    batch = Batch.from_data_list([data[k] for k in range(4)])
    state, graph = encode(batch, gen.config.features)
    e = state.e.clone()
    e[:, :] = 0
    e[:, 3] = 0.25  # every pair a triple bond
    mols = to_molecules(gen, state._replace(e=e), graph)
    assert len(mols) == 4
    assert all(m.GetIntProp("moldiff_valid") == 0 and m.HasProp("moldiff_error") for m in mols)


def test_sizes_follow_the_histogram():
    hist = [0, 0, 5, 0, 15]
    sizes = [draw_size(hist, seed) for seed in range(4000)]
    assert set(sizes) == {2, 4}
    frac = sizes.count(4) / len(sizes)
    assert abs(frac - 0.75) < 5 * (0.75 * 0.25 / 4000) ** 0.5  # 5 binomial standard errors


def test_batches_of_mixed_sizes_and_seeds(blob):
    gen = bonds_generator(blob)
    a = generate(gen, 7, steps=3, seed=5, batch_size=3)
    b = generate(gen, 7, steps=3, seed=5, batch_size=3)
    assert [m.GetNumAtoms() for m in a] == [m.GetNumAtoms() for m in b]
    assert all(x.GetConformer().GetPositions().tolist() == y.GetConformer().GetPositions().tolist()
               for x, y in zip(a, b))
    with pytest.raises(ValueError, match="positive"):
        generate(gen, 0)


def test_refinement_holds_the_atoms_and_approaches_a_fixed_point():
    """refine_coordinates: 0 evaluations is the sample itself; otherwise only coordinates move (zero CoM kept),
    the same input gives the same output, and repeated steps at one t shrink for samples that start within 1 Å
    of what the network accepts: a fixed point is approached (a sample far from one may cycle instead)."""
    from moldiff.api import load_pretrained
    from moldiff.sampling import MoleculeNoise, empty_graph, refine_coordinates, run_chain
    from moldiff.state import remove_mean

    torch.set_num_threads(1)
    gen = load_pretrained("qm9")
    cfg = gen.config.features
    template, graph = empty_graph([7, 9, 5], cfg.h_dim, cfg.e_dim, gen.device)
    with torch.no_grad():
        out = run_chain(gen.network, gen.chain, template, graph, steps=10, spacing="quadratic",
                        noise=MoleculeNoise([1, 2, 3], gen.device), solver="sde-dpm2m")
        assert refine_coordinates(gen.network, gen.chain, out, graph, 0) is out
        once = refine_coordinates(gen.network, gen.chain, out, graph, 3)
        again = refine_coordinates(gen.network, gen.chain, out, graph, 3)
        assert torch.equal(once.x, again.x) and torch.equal(once.h, out.h) and torch.equal(once.e, out.e)
        assert remove_mean(once.x, graph.batch, graph.num_graphs).sub(once.x).abs().max() < 1e-5
        assert (once.x - out.x).abs().max() > 1e-3
        x, moves = out, []
        for _ in range(8):
            nxt = refine_coordinates(gen.network, gen.chain, x, graph, 1, t_from=0.02, t_to=0.02)
            moves.append([float((nxt.x - x.x)[graph.batch == g].norm()) for g in range(graph.num_graphs)])
            x = nxt
    near = [g for g in range(graph.num_graphs) if moves[0][g] < 1.0]  # samples the network nearly accepts
    assert near and all(moves[-1][g] < 0.5 * moves[0][g] for g in near)
