"""Training on a user's own molecules (``moldiff train --data FILE``): SDF and SMILES with S, Cl and Br."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import AllChem

from moldiff.cli import main
from moldiff.data.files import load_file, record_of

SMILES = ["c1ccsc1Cl", "CC(Br)C(=O)O", "ClCCS", "OC(=O)c1ccc(Br)cc1", "CSC(=O)N", "FC(Cl)Br", "c1ccccc1S",
          "CCCl", "BrCC#N", "CS(=O)C", "not_a_smiles", "OCCCl", "SCCS"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    (root / "own.smi").write_text("\n".join(SMILES) + "\n")
    writer = Chem.SDWriter(str(root / "own.sdf"))
    for k, s in enumerate(s for s in SMILES if Chem.MolFromSmiles(s) is not None):
        mol = Chem.AddHs(Chem.MolFromSmiles(s))
        assert AllChem.EmbedMolecule(mol, randomSeed=k) == 0
        writer.write(mol)
    writer.close()
    return root


@pytest.mark.parametrize("name", ["own.smi", "own.sdf"])
def test_train_on_a_file_then_sample_its_vocabulary(files, tmp_path, name, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--data", str(files / name), "--run-dir", str(run), "--data-dir",
                 str(tmp_path / "cache"), "--batch-size", "4", "--max-steps", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert ("12 molecules kept, 1 skipped" if name.endswith(".smi") else "12 molecules kept, 0 skipped") in out
    blob = torch.load(run / "checkpoint.pt", weights_only=True)
    vocab = blob["config"]["features"]["atom_types"]
    assert {"S", "Cl", "Br"} <= set(vocab) and blob["data"]["split_seed"] == 0
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "-n", "6", "--steps", "5", "-o",
                 str(tmp_path / "s.sdf"), "--no-progress"]) == 0
    mols = list(Chem.SDMolSupplier(str(tmp_path / "s.sdf"), sanitize=False, removeHs=False))
    assert len(mols) == 6 and {a.GetSymbol() for m in mols for a in m.GetAtoms()} <= set(vocab) | {"H"}


def test_cache_is_reused_and_bad_records_logged(files, tmp_path):
    lines = []
    first = load_file(files / "own.smi", tmp_path, say=lines.append)
    caches = list((tmp_path / "files").iterdir())
    assert len(caches) == 1 and "12 molecules kept, 1 skipped" in lines[-1] and first.info["skipped"] == 1
    log = (caches[0] / "skipped-all.txt").read_text()
    assert "record 11" in log and "not_a_smiles" in log
    mtime = (first.folders[0] / "pos.npy").stat().st_mtime_ns
    seen = len(lines)
    again = load_file(files / "own.smi", tmp_path, say=lines.append)
    assert len(lines) == seen and (again.folders[0] / "pos.npy").stat().st_mtime_ns == mtime  # from the cache
    a, b = first.summary_blob(), again.summary_blob()
    assert a["splits"]["train"].tolist() == b["splits"]["train"].tolist()
    assert len(a["splits"]["valid"]) == 1 and len(a["splits"]["test"]) == 1


def test_conformers_are_deterministic_for_a_seed():
    mol = Chem.MolFromSmiles("OC(=O)c1ccc(Br)cc1")
    a, _ = record_of(mol, seed=3)
    b, _ = record_of(mol, seed=3)
    c, _ = record_of(mol, seed=4)
    assert np.array_equal(a.pos, b.pos) and not np.allclose(a.pos, c.pos)
    assert "Br" in a.elements and "H" in a.elements and a.bonds[:, 2].max() == 2  # kekulised


def test_a_file_with_no_usable_molecule_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.smi").write_text("xx\nyy\n")
    assert main(["train", "--preset", "tiny", "--data", str(tmp_path / "bad.smi"), "--run-dir", str(tmp_path / "r"),
                 "--data-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no usable molecule" in err and len(err.splitlines()) == 1
