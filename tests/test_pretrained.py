"""The model that ships inside the package loads by name and samples molecules with 3D conformers."""
import pytest
import torch

import moldiff
from moldiff.pretrained import pretrained_path


def test_shipped_model_loads_without_dataset_or_flags():
    blob = torch.load(pretrained_path("qm9"), weights_only=True)
    assert "optimizer" not in blob and {"config", "stats", "model"} <= set(blob)
    gen = moldiff.load_pretrained("qm9", device="cpu")
    assert gen.config.features.include_bonds
    assert sum(gen.stats.n_atoms_hist) == 100_000  # p(N) of the QM9 training split travels with the model


def test_config_saved_before_implicit_h_loads_as_explicit_h():
    from moldiff.config import config_from_checkpoint, load_config

    saved = load_config("qm9-bonds").to_dict()
    # as written before implicit_h and the stored vocabulary existed (the first shipped models)
    for key in ("implicit_h", "charges", "bond_orders"):
        saved["features"].pop(key)
    saved["features"]["atom_types"] = ["H", "C", "N", "O", "F"]
    cfg = config_from_checkpoint(saved)
    assert not cfg.features.implicit_h and cfg.features.atom_types == ("H", "C", "N", "O", "F")
    assert cfg.features.charges == (-1, 0, 1) and cfg.features.bond_orders == (1, 2, 3)
    assert cfg.features.h_dim == 5 + 3 and cfg.features.e_dim == 4


def test_shipped_model_samples_rdkit_molecules():
    mols = moldiff.sample(3, "qm9", steps=5, seed=0)
    assert len(mols) == 3
    for mol in mols:
        assert mol.GetNumAtoms() > 0 and mol.GetConformer().Is3D()
        assert mol.HasProp("moldiff_valid")


def test_api_relax_polishes_valid_samples_and_refuses_unknown_methods():
    own = moldiff.sample(4, "qm9", steps=20, seed=1, progress=False)
    polished = moldiff.sample(4, "qm9", steps=20, seed=1, progress=False, relax="mmff")
    relaxed = [(a, b) for a, b in zip(own, polished) if b.GetIntProp("moldiff_relaxed")]
    assert relaxed and all(a.GetIntProp("moldiff_valid") for a, _ in relaxed)
    for a, b in relaxed:
        assert a.GetNumAtoms() == b.GetNumAtoms()
        assert abs(a.GetConformer().GetPositions() - b.GetConformer().GetPositions()).max() > 1e-3
    with pytest.raises(ValueError, match="unknown relaxation"):
        moldiff.sample(1, "qm9", steps=2, relax="uff")


def test_unknown_pretrained_name():
    with pytest.raises(ValueError, match="unknown pretrained model"):
        moldiff.load_pretrained("zinc")


def test_bf16_sampling_keeps_the_network_close_and_coordinates_fp32():
    from moldiff.diffusion.chain import sample_noise
    from moldiff.sampling import empty_graph

    gen = moldiff.load_pretrained("qm9", device="cpu")
    f = gen.config.features
    template, graph = empty_graph([9, 14, 19], f.h_dim, f.e_dim, torch.device("cpu"))
    z = sample_noise(template, graph, torch.Generator().manual_seed(0))
    t = torch.full((3,), 0.3)
    with torch.no_grad():
        ref = gen.network(z, t, graph)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = gen.network(z, t, graph)
    assert low.x.dtype == torch.float32  # the coordinate path stays fp32 under autocast
    for a, b in zip(ref, low):
        err = (a.float() - b.float()).norm() / a.norm()
        assert 0 < err < 0.05  # bf16 was used (not bit-identical) and the prediction stays close

    mols = moldiff.sample(2, gen, steps=5, seed=0, bf16=True)
    assert len(mols) == 2 and all(m.GetConformer().Is3D() for m in mols)


def test_api_progress_bar_is_on_by_default_and_ends_at_100_percent(capfd):
    import re

    gen = moldiff.load_pretrained("qm9", device="cpu")
    for solver, evals in (("ancestral", 3), ("sde-dpm2m", 2)):  # 2 steps + the final x̂; the solver ends on x̂
        moldiff.sample(3, gen, steps=2, seed=0, batch_size=2, solver=solver)
        bar = capfd.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
        done, total = map(int, re.search(r"(\d+)/(\d+)", bar).groups())
        assert "100%" in bar and done == total == 3 * evals, bar
    moldiff.sample(1, gen, steps=1, seed=0, progress=False)
    assert capfd.readouterr().err == ""


def test_the_drug_like_model_ships_and_samples(tmp_path):
    """moldiff.load_pretrained("moses") and `moldiff sample --model moses`: MOSES' elements, drug-like sizes."""
    from rdkit import Chem

    import moldiff
    from moldiff.cli import main

    gen = moldiff.load_pretrained("moses")
    assert {"C", "N", "O", "S", "F", "Cl", "Br"} <= set(gen.config.features.atom_types)
    assert gen.config.features.implicit_h and gen.stats.size_range[1] >= 25
    out = tmp_path / "drug.sdf"
    assert main(["sample", "--model", "moses", "-n", "3", "--steps", "5", "-o", str(out), "--no-progress",
                 "--threads", "1"]) == 0
    mols = list(Chem.SDMolSupplier(str(out), sanitize=False, removeHs=False))
    assert len(mols) == 3 and all(m.GetNumConformers() == 1 and m.GetNumHeavyAtoms() >= 5 for m in mols)


def test_the_conditional_model_ships_and_follows_a_request(tmp_path):
    """`moldiff sample --model qm9-cond --condition …`: the six properties with their statistics, and a request
    for large polarisability gives larger molecules than one for small (sizes from p(N | α))."""
    from rdkit import Chem

    import moldiff
    from moldiff.cli import main

    gen = moldiff.load_pretrained("qm9-cond")
    assert gen.config.condition.properties == ("alpha", "gap", "homo", "lumo", "mu", "Cv")
    assert set(gen.stats.properties) == set(gen.config.condition.properties)
    out = tmp_path / "asked.sdf"
    assert main(["sample", "--model", "qm9-cond", "--condition", "gap=0.25", "--condition", "mu=2.5", "-n", "3",
                 "--steps", "5", "-o", str(out), "--no-progress", "--threads", "1"]) == 0
    assert len(list(Chem.SDMolSupplier(str(out), sanitize=False, removeHs=False))) == 3
    small = moldiff.sample(12, gen, steps=4, condition={"alpha": 50.0}, progress=False, threads=1)
    large = moldiff.sample(12, gen, steps=4, condition={"alpha": 95.0}, progress=False, threads=1)
    heavy = lambda mols: sum(m.GetNumHeavyAtoms() for m in mols) / len(mols)  # noqa: E731
    assert heavy(large) > heavy(small) + 1.0
    from moldiff.pretrained import pretrained_path

    assert len(moldiff.sample(2, pretrained_path("qm9-cond"), steps=2, progress=False, threads=1)) == 2  # a Path
