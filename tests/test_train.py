"""Training end to end on real QM9 molecules: overfitting, exact resume, checkpoints, DDP (gloo)."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
from torch_geometric.data import Batch

from moldiff.checkpoint import load_checkpoint
from moldiff.config import load_config
from moldiff.representation import encode
from moldiff.train import Trainer, random_rotations


def tiny(**train):
    cfg = load_config("tiny")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("qm9cache")


def fixed_loss(trainer: Trainer, molecules) -> float:
    """L_simple of the trained (non-EMA) network on given molecules with fixed t and noise."""
    batch = Batch.from_data_list(molecules)
    x0, graph = encode(batch, trainer.cfg.features)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        losses = [trainer.chain.loss(trainer.net, x0, graph, trainer.weights, generator=g)[0].mean()
                  for _ in range(20)]
    return float(torch.stack(losses).mean())


def test_tiny_model_overfits_a_handful_of_molecules(tmp_path, data_root):
    cfg = tiny(batch_size=8, lr=3e-3, ema_decay=0.99, val_molecules=8, eval_every_epochs=1000)
    trainer = Trainer(cfg, tmp_path / "run", data_root, limit=11, progress=False)
    molecules = [trainer.train_set[k] for k in range(len(trainer.train_set))]
    assert len(molecules) == 8
    before = fixed_loss(trainer, molecules)
    trainer.fit(max_steps=300)
    after = fixed_loss(trainer, molecules)
    assert after < 0.6 * before, (before, after)


@pytest.fixture
def one_thread():
    """Parallel CPU reductions may sum in a different order from run to run; one thread is bitwise repeatable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_resumed_run_equals_uninterrupted_run(tmp_path, data_root, one_thread):
    cfg = tiny(val_molecules=16, eval_every_epochs=0.5)
    full = Trainer(cfg, tmp_path / "full", data_root, limit=200, progress=False)
    full.fit(max_steps=24)  # crosses an epoch boundary (152 training molecules / 16 = 9 steps per epoch)
    part = Trainer(cfg, tmp_path / "part", data_root, limit=200, progress=False)
    part.fit(max_steps=13)
    del part
    resumed = Trainer(None, tmp_path / "part", data_root, limit=200, resume=True, progress=False)
    resumed.fit(max_steps=24)
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert a["step"] == b["step"] == 24
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    rows = [json.loads(line) for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8, 12, 13, 16, 20, 24]
    assert all(r["val_loss"] > 0 for r in rows)


def test_checkpoint_is_data_and_self_contained(tmp_path, data_root):
    trainer = Trainer(tiny(), tmp_path / "run", data_root, limit=60, progress=False)
    trainer.fit(max_steps=2)
    blob = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert {"config", "stats", "model", "ema", "optimizer", "run_state"} <= set(blob)
    assert blob["config"]["preset"] == "tiny"
    assert sum(blob["stats"]["n_atoms_hist"]) == len(trainer.train_set)


def test_existing_run_needs_resume(tmp_path, data_root):
    Trainer(tiny(), tmp_path / "run", data_root, limit=60, progress=False).fit(max_steps=1)
    with pytest.raises(ValueError, match="--resume"):
        Trainer(tiny(), tmp_path / "run", data_root, limit=60, progress=False)


def test_random_rotations_are_proper():
    r = random_rotations(50, torch.Generator().manual_seed(1), torch.device("cpu"))
    eye = torch.eye(3).expand(50, 3, 3)
    assert torch.allclose(r @ r.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(50), atol=1e-5)


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, data_root):
    """SIGKILL in the middle of training: the checkpoint on disk is whole and the run continues."""
    run = tmp_path / "run"
    config = tmp_path / "c.toml"
    config.write_text('preset = "tiny"\n[train]\ncheckpoint_steps = 2\nval_molecules = 8\n')
    cmd = [sys.executable, "-m", "moldiff", "train", "--config", str(config), "--run-dir", str(run),
           "--data-dir", str(data_root), "--limit", "200", "--max-steps", "400", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "checkpoint.pt"
    import time
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt.exists() and load_checkpoint(ckpt)["step"] >= 6):
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    step = load_checkpoint(ckpt)["step"]
    assert 6 <= step < 400
    done = subprocess.run(cmd[:-3] + ["--resume", "--max-steps", str(step + 3), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(ckpt)["step"] == step + 3


def test_two_process_ddp_step(tmp_path, data_root):
    """torchrun with two gloo processes trains and writes one checkpoint."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "moldiff", "train", "--preset", "tiny", "--run-dir", str(tmp_path / "ddp"),
           "--data-dir", str(data_root), "--limit", "200", "--max-steps", "3", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    blob = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert blob["step"] == 3
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["world_size"] == 2


def test_sigterm_finishes_the_step_and_checkpoints(tmp_path, data_root):
    """SIGTERM mid-run: the step in flight finishes, the checkpoint is written, exit code 0."""
    import signal
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "moldiff", "train", "--preset", "tiny", "--run-dir", str(run),
           "--data-dir", str(data_root), "--limit", "200", "--max-steps", "100000", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    blob = load_checkpoint(run / "checkpoint.pt")
    assert blob["step"] > 0 and blob["run_state"]["step"] == blob["step"]


def test_loader_workers_give_the_same_run(tmp_path, data_root, one_thread):
    """Batches built by loader processes (--workers) are the same batches: the run is bitwise the same."""
    cfg = tiny(val_molecules=16, eval_every_epochs=10)
    inline = Trainer(cfg, tmp_path / "inline", data_root, limit=200, progress=False)
    inline.fit(max_steps=12)  # crosses an epoch boundary (9 steps per epoch)
    loaded = Trainer(cfg, tmp_path / "loaded", data_root, limit=200, progress=False, workers=2)
    loaded.fit(max_steps=12)
    a = load_checkpoint(tmp_path / "inline" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "loaded" / "checkpoint.pt")
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name


def test_batch_size_override_on_resume_keeps_the_epoch_position(tmp_path, data_root):
    cfg = tiny(batch_size=4, val_molecules=8, eval_every_epochs=10)
    Trainer(cfg, tmp_path / "run", data_root, limit=200, progress=False).fit(max_steps=20)  # 38 steps/epoch
    resumed = Trainer(None, tmp_path / "run", data_root, limit=200, resume=True, progress=False)
    assert resumed.state.step_in_epoch == 20
    resumed.override(batch_size=16)
    assert resumed.state.step_in_epoch == 5 and resumed.cfg.train.batch_size == 16
    resumed.fit(max_steps=22)
    blob = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert blob["step"] == 22 and blob["run_state"]["step_in_epoch"] == 7
    assert blob["config"]["train"]["batch_size"] == 16
    with pytest.raises(ValueError):
        resumed.override(batch_size=0)


NOH_TOML = """preset = "tiny"
[features]
include_z = false
include_charge = true
include_bonds = true
implicit_h = true
atom_types = ["C", "N", "O", "F"]
"""


@pytest.mark.parametrize("implicit_h", [False, True], ids=["explicit-h", "implicit-h"])
def test_training_needs_neither_rdkit_nor_qm9pack(tmp_path, data_root, implicit_h):
    """The GPU machine has neither: training from a processed cache (hydrogens removed from it at load time
    for implicit H) must not import them."""
    Trainer(tiny(), tmp_path / "warm", data_root, limit=200, progress=False)  # make sure the cache exists
    (tmp_path / "noh.toml").write_text(NOH_TOML)
    config = ["--config", str(tmp_path / "noh.toml")] if implicit_h else ["--preset", "tiny"]
    code = ("import sys; sys.modules['rdkit'] = None; sys.modules['qm9pack'] = None\n"
            "from moldiff.cli import main\n"
            f"sys.exit(main(['train', *{config!r}, '--run-dir', {str(tmp_path / 'run')!r}, '--data-dir', "
            f"{str(data_root)!r}, '--limit', '200', '--max-steps', '2', '--eval-samples', '0', '--no-progress']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    blob = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert blob["step"] == 2 and blob["config"]["features"]["implicit_h"] == implicit_h
    assert len(blob["stats"]["n_atoms_hist"]) == (7 if implicit_h else 18)  # 6 heavy atoms, 17 atoms at most


def test_implicit_h_training_and_samples_with_hydrogens_added(tmp_path, data_root):
    """Heavy atoms only in the chain: p(N) counts heavy atoms, and sampled molecules that sanitise come back
    with explicit hydrogens in 3D; those that do not, heavy atoms only."""
    from rdkit import Chem

    from moldiff.sampling import generate

    base = tiny(val_molecules=8, eval_every_epochs=10)
    cfg = dataclasses.replace(base, features=load_config("qm9-bonds-noh").features)
    trainer = Trainer(cfg, tmp_path / "run", data_root, limit=200, progress=False)
    assert all(int((trainer.train_set[k].atom_type == 0).sum()) == 0 for k in range(len(trainer.train_set)))
    trainer.fit(max_steps=2)
    hist = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["stats"]["n_atoms_hist"]
    sizes = [trainer.train_set[k].num_nodes for k in range(len(trainer.train_set))]
    assert hist == torch.bincount(torch.tensor(sizes)).tolist()
    mols = generate(trainer.generator, 4, steps=5, seed=0) + generate(trainer.generator, 12, steps=5, seed=0,
                                                                      n_atoms=2)
    assert any(m.GetIntProp("moldiff_valid") for m in mols)
    hydrogens_added = []
    for mol in mols:
        n_h = sum(a.GetSymbol() == "H" for a in mol.GetAtoms())
        assert mol.GetConformer().Is3D() and mol.GetConformer().GetPositions().shape == (mol.GetNumAtoms(), 3)
        if mol.GetIntProp("moldiff_valid"):
            assert n_h == sum(a.GetTotalNumHs() for a in Chem.RemoveHs(mol).GetAtoms())
            assert all(a.GetNumImplicitHs() == 0 for a in mol.GetAtoms())
            hydrogens_added.append(n_h)
        else:
            assert n_h == 0
    assert max(hydrogens_added) > 0  # a saturated sample (O=C=O) may need none, but not every one


def test_snapshots_hold_the_ema_weights(tmp_path, data_root):
    from moldiff.model import Generator

    cfg = tiny(val_molecules=8, eval_every_epochs=10)
    trainer = Trainer(cfg, tmp_path / "run", data_root, limit=200, progress=False, snapshot_every=1.0)
    trainer.fit(max_steps=18)  # 9 steps per epoch: snapshots after steps 9 and 18
    snaps = sorted((tmp_path / "run" / "snapshots").glob("*.pt"))
    assert [p.name for p in snaps] == ["step0000009.pt", "step0000018.pt"]
    gen = Generator.from_checkpoint(snaps[-1])
    full = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert gen.info["step"] == 18 and "optimizer" not in load_checkpoint(snaps[-1])
    for name, value in gen.network.state_dict().items():
        assert torch.equal(value, full["ema"][name]), name
    with pytest.raises(ValueError):
        Trainer(cfg, tmp_path / "other", data_root, limit=200, progress=False, snapshot_every=0)


def test_lr_override_on_resume_is_used_and_logged(tmp_path, data_root):
    cfg = tiny(val_molecules=8, eval_every_epochs=1.0, warmup_steps=2)
    Trainer(cfg, tmp_path / "run", data_root, limit=200, progress=False).fit(max_steps=9)
    resumed = Trainer(None, tmp_path / "run", data_root, limit=200, resume=True, progress=False)
    resumed.override(lr=1e-5)
    resumed.fit(max_steps=18)
    assert resumed.opt.param_groups[0]["lr"] == 1e-5
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == [cfg.train.lr, 1e-5]
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["train"]["lr"] == 1e-5
    with pytest.raises(ValueError):
        resumed.override(lr=0.0)


def test_cpu_time_is_counted_beside_wall_time(tmp_path, data_root, one_thread):
    cfg = tiny(val_molecules=8, eval_every_epochs=1.0)
    Trainer(cfg, tmp_path / "run", data_root, limit=200, progress=False).fit(max_steps=9)
    resumed = Trainer(None, tmp_path / "run", data_root, limit=200, resume=True, progress=False)
    before = resumed.state.cpu_hours
    resumed.fit(max_steps=18)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["threads"] == 1 for r in rows)
    assert rows[0]["cpu_hours"] == pytest.approx(before, abs=1e-5)
    assert 0 < rows[0]["cpu_hours"] < rows[1]["cpu_hours"]
    for r in rows:  # one thread: the process cannot use more CPU than wall-clock time (slack for rounding)
        assert r["cpu_hours"] <= r["hours"] * 1.05 + 1e-5


def test_checkpoint_every_steps_or_minutes_and_the_first_one_early(tmp_path, data_root):
    """--checkpoint-every in steps: a checkpoint lands every that many steps; in minutes: the other turns off."""
    trainer = Trainer(tiny(val_molecules=8, eval_every_epochs=10), tmp_path / "run", data_root, limit=200,
                      progress=False)
    trainer.override_checkpointing(steps=3)
    assert trainer.cfg.train.checkpoint_steps == 3
    seen = []
    save = trainer.save
    trainer.save = lambda: (seen.append(trainer.state.step), save())
    trainer.fit(max_steps=7)
    assert seen == [3, 6, 7]
    trainer.override_checkpointing(minutes=0.5)
    assert trainer.cfg.train.checkpoint_minutes == 0.5 and trainer.cfg.train.checkpoint_steps is None
    with pytest.raises(ValueError, match="--checkpoint-every must be positive"):
        trainer.override_checkpointing(steps=0)
