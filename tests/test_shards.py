"""Data larger than memory: a molecule file processed in parallel into shards on disk (resumable), read
memory-mapped, CSV with a SMILES column, real MOSES molecules, and DDP ranks that read their own shards."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from moldiff.cli import main
from moldiff.data.files import load_file
from moldiff.data.shards import open_shard
from moldiff.data.store import DatasetStats

SMILES = ["c1ccsc1Cl", "CC(Br)C(=O)O", "ClCCS", "OC(=O)c1ccc(Br)cc1", "CSC(=O)N", "FC(Cl)Br", "c1ccccc1S",
          "CCCl", "BrCC#N", "CS(=O)C", "not_a_smiles", "OCCCl", "SCCS"]


@pytest.fixture(scope="module")
def smi(tmp_path_factory):
    path = tmp_path_factory.mktemp("shards") / "own.smi"
    path.write_text("\n".join(SMILES) + "\n")
    return path


def _quiet(line):
    pass


def test_shards_hold_every_record_once_in_file_order(smi, tmp_path):
    store = load_file(smi, tmp_path, shard_size=4, workers=1, say=_quiet)
    assert len(store.folders) == 4 and len(store) == 12 and store.info["skipped"] == 1  # 13 records, 4 per shard
    numbers = [n for m in store.metas for n in m["numbers"]]
    assert numbers == [n for n in range(1, 14) if n != 11]
    assert [m["records"] for m in store.metas] == [[1, 4], [5, 8], [9, 12], [13, 13]]
    assert set(store.elements) >= {"S", "Cl", "Br", "H"}
    for m in store.metas:  # each shard has its own fixed-seed split
        assert sum(m["counts"].values()) == m["molecules"]
    summary = store.summary_blob()
    assert int(summary["atom_ptr"][-1]) == sum(int(open_shard(f)["atom_ptr"][-1]) for f in store.folders)
    stats = DatasetStats.from_blob(summary)
    assert sum(stats.n_atoms_hist) == store.count("train")
    pos = open_shard(store.folders[0])["pos"]
    assert isinstance(np.load(store.folders[0] / "pos.npy", mmap_mode="r"), np.memmap) and pos.shape[1] == 3


def test_parallel_workers_make_the_same_conformers(smi, tmp_path):
    one = load_file(smi, tmp_path / "a", shard_size=5, workers=1, say=_quiet)
    two = load_file(smi, tmp_path / "b", shard_size=5, workers=2, say=_quiet)
    for fa, fb in zip(one.folders, two.folders):
        a, b = open_shard(fa), open_shard(fb)
        assert torch.equal(a["pos"], b["pos"]) and torch.equal(a["bonds"], b["bonds"])


def test_interrupted_processing_keeps_its_shards(smi, tmp_path):
    first = load_file(smi, tmp_path, shard_size=4, limit=8, workers=1, say=_quiet)
    assert len(first) == 8
    stamps = {f.name: (f / "meta.json").stat().st_mtime_ns for f in first.folders}
    full = load_file(smi, tmp_path, shard_size=4, workers=1, say=_quiet)
    assert len(full) == 12
    assert all((f / "meta.json").stat().st_mtime_ns == stamps[f.name] for f in full.folders if f.name in stamps)
    lines = []
    again = load_file(smi, tmp_path, shard_size=4, workers=1, say=lines.append)
    assert not lines and [f.name for f in again.folders] == [f.name for f in full.folders]  # from the index


def test_heavy_atom_view_drops_hydrogens(smi, tmp_path):
    store = load_file(smi, tmp_path, shard_size=6, workers=1, say=_quiet)
    heavy = store.view(hydrogens=False)
    assert "H" not in heavy.elements and len(heavy) == len(store)
    data = heavy.dataset("train")[0]
    assert (data.z > 1).all() and data.x.shape[1] == len(heavy.elements) + 1


def test_csv_with_a_smiles_column(tmp_path, capsys):
    path = tmp_path / "mols.csv"
    path.write_text("name,SMILES,score\n" + "".join(f"m{k},{s},{k}\n" for k, s in enumerate(SMILES)))
    store = load_file(path, tmp_path / "cache", workers=1, say=_quiet)
    assert len(store) == 12 and store.info["skipped"] == 1
    bad = tmp_path / "nocol.csv"
    bad.write_text("name,structure\nx,CCO\n")
    assert main(["train", "--preset", "tiny", "--data", str(bad), "--run-dir", str(tmp_path / "r"),
                 "--data-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no SMILES column" in err and len(err.splitlines()) == 1


def test_real_moses_molecules_train_and_sample(tmp_path, capsys):
    """The first 40 MOSES training SMILES: conformers, implicit-hydrogen training, sampling of S/Cl/Br."""
    from moldiff.data.moses import moses_file

    if not Path(str(moses_file("train"))).is_file():
        pytest.fail("molsets' data missing")
    run = tmp_path / "run"
    assert main(["train", "--preset", "qm9-bonds-noh", "--data", "moses", "--limit", "40", "--shard-size", "20",
                 "--run-dir", str(run), "--data-dir", str(tmp_path / "cache"), "--batch-size", "4",
                 "--max-steps", "2", "--eval-samples", "0", "--no-progress"]) == 0
    assert "40 molecules kept" in capsys.readouterr().out
    blob = torch.load(run / "checkpoint.pt", weights_only=True)
    assert blob["data"]["source"] == "moses" and blob["data"]["limit"] == 40
    assert "H" not in blob["config"]["features"]["atom_types"]
    assert max(n for n, c in enumerate(blob["stats"]["n_atoms_hist"]) if c) >= 20  # drug-like sizes


def test_ddp_ranks_read_their_own_shards(smi, tmp_path):
    """torchrun, two gloo processes: rank r reads shards r, r+2, …; the epoch has as many steps on each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = Path(__file__).with_name("ddp_shard_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           str(worker), str(smi), str(tmp_path / "run"), str(tmp_path / "cache")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    errors = "".join(p.read_text() for p in tmp_path.glob("rank*.err"))
    assert done.returncode == 0, errors or done.stderr[-2000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    names = sorted(p.name for p in (tmp_path / "cache" / "files").glob("*/records-*"))
    assert ranks[0]["folders"] == names[0::2] and ranks[1]["folders"] == names[1::2]
    assert ranks[0]["steps"] == ranks[1]["steps"] > 0
    for r in ranks:
        assert {f for f, _ in r["molecules"]} <= set(r["folders"])
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 2


def test_resume_without_the_source_file_uses_its_shards(smi, tmp_path):
    """A machine given the processed shards but not the file (e.g. a GPU lease) continues the run."""
    import shutil

    source = tmp_path / "copy.smi"
    shutil.copy(smi, source)
    run, cache = tmp_path / "run", tmp_path / "cache"
    common = ["--run-dir", str(run), "--data-dir", str(cache), "--no-progress"]
    assert main(["train", "--preset", "tiny", "--data", str(source), "--batch-size", "4", "--max-steps", "1",
                 "--conformer-workers", "1"] + common) == 0
    source.unlink()
    assert main(["train", "--resume", "--max-steps", "2"] + common) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 2
