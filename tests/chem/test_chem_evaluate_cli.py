"""``moldiff evaluate`` through ``moldiff.evaluate.run`` with parsed namespaces."""
import argparse
import importlib.util
import json

import pytest
from rdkit import Chem

from moldiff.chem.io import write_molecules
from moldiff.chem.reference_build import build_reference
from moldiff.evaluate import add_arguments, run

from .conftest import embed


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="moldiff evaluate")
    add_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


@pytest.fixture()
def sdf(tmp_path):
    path = tmp_path / "mols.sdf"
    write_molecules([embed(s)[2] for s in ["CCO", "CC(=O)O", "C#N"]], path)
    return path


def test_sdf_report_and_json(sdf, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert run(parse(sdf, "--reference", "none", "--json", out)) == 0
    text = capsys.readouterr().out
    assert "molecule stability (protocol)" in text and "novelty: no reference given" in text
    data = json.loads(out.read_text())
    assert data["n_molecules"] == 3 and data["n_3d"] == 3
    assert data["metrics"]["charge_molecule_stability"]["count"] == 3   # the SDF's own bonds are right
    assert data["source"]["files"][0]["molecules"] == 3


def test_smiles_file_skips_3d_metrics(tmp_path, capsys):
    path = tmp_path / "in.smi"
    path.write_text("CCO\nc1ccccc1\nC(C)(C)(C)(C)C\n")
    assert run(parse(path, "--reference", "none")) == 0
    text = capsys.readouterr().out
    assert "skipped:" in text and "atom stability (protocol): no molecule has 3D coordinates" in text
    assert "sanitises as given" in text


def test_partly_bad_input_still_exits_zero(sdf, tmp_path, capsys):
    bad = tmp_path / "bad.xyz"
    bad.write_text("2\nx\nC 0 0 0\nZz 1 0 0\n")
    assert run(parse(sdf, bad, tmp_path / "missing.sdf", "--reference", "none")) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "bad.xyz: record 1" in err[0] and "missing.sdf" in err[1]
    assert "Traceback" not in "".join(err)


def test_nothing_readable_exits_nonzero(tmp_path, capsys):
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    assert run(parse(empty, "--reference", "none")) == 2  # bad input: the usage/bad-input exit code
    err = capsys.readouterr().err
    assert "empty file" in err and "no molecule could be read" in err
    assert run(parse("--reference", "none")) == 2


def test_cached_reference_is_used(sdf, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLDIFF_DATA", str(tmp_path / "data"))
    train = [embed(s, seed=1) for s in ["CCO", "CC=O"]]
    cached = tmp_path / "data" / "qm9_train_reference_v1.npz"  # $MOLDIFF_DATA is the cache folder itself
    build_reference([(e, p, None) for e, p, _ in train], "qm9-train").save(cached)
    before = cached.stat().st_mtime_ns
    out = tmp_path / "r.json"
    assert run(parse(sdf, "--json", out)) == 0
    data = json.loads(out.read_text())
    assert data["reference"] == "qm9-train" and cached.stat().st_mtime_ns == before  # read, not rebuilt
    assert "computing" not in capsys.readouterr().err
    assert data["metrics"]["novelty"]["total"] >= 1 and "value" in data["metrics"]["bond_length_w1"]


def test_chem_modules_do_not_import_torch():
    import ast
    from pathlib import Path

    import moldiff.chem
    import moldiff.evaluate

    files = list(Path(moldiff.chem.__file__).parent.glob("*.py")) + [Path(moldiff.evaluate.__file__)]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "torch" or n.startswith("torch.") for n in names), path
            if path.parent.name == "chem":  # chemistry knows no dataset
                assert not any(n.startswith("moldiff.data") for n in names), path


def test_dataset_mode(qm9_test_sample, monkeypatch, tmp_path, capsys):
    calls = []

    def fake_sample(split, n, seed):
        calls.append((split, n, seed))
        return qm9_test_sample[:n]

    monkeypatch.setattr("moldiff.evaluate.qm9_sample", fake_sample)
    out = tmp_path / "qm9.json"
    assert run(parse("--dataset", "qm9", "--split", "test", "-n", "200", "--reference", "none", "--json", out)) == 0
    assert calls == [("test", 200, 0)]
    data = json.loads(out.read_text())
    assert data["source"]["dataset"] == "qm9" and data["n_molecules"] == 200
    assert data["metrics"]["molecule_stability"]["value"] > 0.8
    assert "of qm9 test" in capsys.readouterr().out


def test_structures_with_unknown_elements_or_nan_are_invalid_not_errors():
    import numpy as np

    from moldiff.chem.metrics import evaluate_structures

    m = evaluate_structures([(["C", "Xx"], np.zeros((2, 3)) + [[0, 0, 0], [1.5, 0, 0]]),
                             (["C", "O"], np.array([[0, 0, 0], [np.nan, 0, 0]]))])["metrics"]
    assert m["validity"]["count"] == 0 and m["molecule_stability"]["count"] == 0


def test_posebusters_figures_rank_a_distorted_conformer_below_a_relaxed_one(tmp_path, capsys):
    """--posebusters N judges the first N sanitising molecules: the relaxed conformer passes, a copy with every
    atom moved ~0.25 Å does not."""
    if importlib.util.find_spec("posebusters") is None:
        pytest.skip("posebusters not installed")
    import numpy as np
    from rdkit.Chem import AllChem

    good = Chem.AddHs(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))
    assert AllChem.EmbedMolecule(good, randomSeed=1) == 0
    AllChem.MMFFOptimizeMolecule(good, maxIters=5000)
    bad = Chem.Mol(good)
    pos = good.GetConformer().GetPositions()
    bad.GetConformer().SetPositions(pos + np.random.RandomState(0).normal(0, 0.25, pos.shape))
    path, out = tmp_path / "two.sdf", tmp_path / "report.json"
    write_molecules([good, bad], path)
    assert run(parse(path, "--reference", "none", "--posebusters", "2", "--json", out)) == 0
    assert "PoseBusters, all checks pass" in capsys.readouterr().out
    busters = json.loads(out.read_text())["metrics"]["posebusters"]
    assert busters["molecules"] == 2 and busters["all_pass"] == 0.5 and busters["per_check"]["bond_lengths"] == 0.5
    strain = json.loads(out.read_text())["metrics"]["mmff_strain"]
    assert strain["judged"] == 2 and strain["strain_p90"] > 10  # the distorted copy is strained


def test_xtb_figures_come_with_evaluate(tmp_path, capsys):
    """--xtb N: GFN2-xTB strain of the first N sanitising molecules, reported and written to the JSON."""
    if any(importlib.util.find_spec(p) is None for p in ("tblite", "ase")):
        pytest.skip("tblite or ase not installed")
    path, out = tmp_path / "mols.sdf", tmp_path / "report.json"
    write_molecules([embed(s)[2] for s in ["CCO", "CC(=O)O"]], path)
    assert run(parse(path, "--reference", "none", "--geometry", "0", "--xtb", "2", "--json", out)) == 0
    assert "GFN2-xTB strain, median / p90" in capsys.readouterr().out
    xtb = json.loads(out.read_text())["metrics"]["xtb_strain"]
    assert xtb["molecules"] == 2 and xtb["judged"] == 2 and xtb["strain_median"] >= 0
