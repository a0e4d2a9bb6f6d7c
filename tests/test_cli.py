"""The command line end to end: train a tiny model, sample it to SDF/XYZ/SMILES/PNG, and bad input."""
import re
import subprocess
import sys

import pytest
from rdkit import Chem

from moldiff.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    code = main(["train", "--preset", "tiny", "--run-dir", str(root / "run"), "--data-dir", str(root / "data"),
                 "--limit", "150", "--max-steps", "5", "--no-progress"])
    assert code == 0
    return root / "run" / "checkpoint.pt"


def sample(checkpoint, out, *extra):
    return main(["sample", "--checkpoint", str(checkpoint), "-o", str(out), "--no-progress", *extra])


def test_train_then_sample_sdf_reads_back(checkpoint, tmp_path):
    out = tmp_path / "mols.sdf"
    assert sample(checkpoint, out, "-n", "4", "--steps", "10") == 0
    mols = list(Chem.SDMolSupplier(str(out), sanitize=False, removeHs=False))
    assert len(mols) == 4 and all(m is not None and m.GetConformer().Is3D() for m in mols)
    assert not (tmp_path / "mols.sdf.partial.sdf").exists()


def test_same_seed_same_molecules(checkpoint, tmp_path):
    a, b, c = tmp_path / "a.xyz", tmp_path / "b.xyz", tmp_path / "c.xyz"
    for path, seed in ((a, "3"), (b, "3"), (c, "4")):
        assert sample(checkpoint, path, "-n", "3", "--steps", "8", "--seed", seed, "--threads", "1") == 0
    assert a.read_text() == b.read_text()
    assert a.read_text() != c.read_text()
    assert a.read_text().splitlines()[0].strip().isdigit()  # XYZ: atom count first


def test_fixed_size_smiles_and_png(checkpoint, tmp_path):
    assert sample(checkpoint, tmp_path / "m.smi", "-n", "2", "--steps", "5", "--atoms", "7", "--ddim", "--bf16",
                  "--png", str(tmp_path / "grid.png")) == 0
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "m.smi").read_text().splitlines()) == 2


@pytest.mark.parametrize("args, message", [
    (["-n", "0"], "positive"),
    (["-n", "-3"], "positive"),
    (["--steps", "0"], "--steps"),
    (["--atoms", "0"], "--atoms"),
    (["--noise-scale", "-0.5"], "--noise-scale"),
    (["--noise-scale", "nan"], "--noise-scale"),
    (["--noise-scale-from", "1.5"], "--noise-scale-from"),
    (["--refine", "-1"], "--refine"),
    (["-o", "/nonexistent-dir/x.sdf"], "does not exist"),
    (["-o", "out.pdf"], "unknown output type"),
])
def test_sample_bad_arguments(checkpoint, tmp_path, capsys, args, message):
    argv = ["sample", "--checkpoint", str(checkpoint), "--no-progress", "-o", str(tmp_path / "o.sdf"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_missing_and_corrupt_checkpoint(tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "o.sdf")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    assert main(["sample", "--checkpoint", str(bad), "-o", str(tmp_path / "o.sdf")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot read checkpoint" in err and len(err.splitlines()) == 1


def test_unwritable_output_keeps_nothing_half_written(checkpoint, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert sample(checkpoint, blocker / "o.sdf", "-n", "1") == 2
    assert "does not exist" in capsys.readouterr().err


def test_unknown_preset_and_bad_config(tmp_path, capsys):
    assert main(["train", "--preset", "huge", "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown preset" in capsys.readouterr().err
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\nwidth = 3\n")
    assert main(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown model option(s): width" in capsys.readouterr().err


def test_resume_without_checkpoint(tmp_path, capsys):
    assert main(["train", "--resume", "--run-dir", str(tmp_path / "none")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_no_traceback_from_the_installed_command(tmp_path):
    done = subprocess.run([sys.executable, "-m", "moldiff", "sample", "-n", "0", "-o", str(tmp_path / "o.sdf")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.skipif(not __import__("moldiff.runtime").runtime.bf16_supported("cpu"),
                    reason="this CPU has no native bf16: --bf16 falls back to fp32 (tests/test_hostile_cli.py)")
def test_bf16_switched_on_at_resume_is_used_and_logged(tmp_path):
    import json

    from moldiff.checkpoint import load_checkpoint

    run = ["--run-dir", str(tmp_path / "run"), "--data-dir", str(tmp_path / "data"), "--limit", "150",
           "--no-progress", "--eval-every", "1000"]
    assert main(["train", "--preset", "tiny", "--max-steps", "3", *run]) == 0
    assert main(["train", "--resume", "--bf16", "--max-steps", "6", *run]) == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["train"]["bf16"] is True
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["bf16"] for r in rows] == [False, True]
    assert main(["train", "--resume", "--no-bf16", "--max-steps", "7", *run]) == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["train"]["bf16"] is False


def test_killed_sampling_keeps_every_finished_batch(checkpoint, tmp_path):
    """A crash (SIGKILL) loses at most the batch in flight: the partial file holds whole batches only."""
    import os
    import signal
    import time

    out = tmp_path / "many.sdf"
    partial = tmp_path / "many.sdf.partial.sdf"
    proc = subprocess.Popen([sys.executable, "-m", "moldiff", "sample", "--checkpoint", str(checkpoint),
                             "-n", "100000", "--batch-size", "7", "--steps", "20", "--threads", "1",
                             "--no-progress", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if partial.exists() and len(list(Chem.SDMolSupplier(str(partial), sanitize=False))) >= 14:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    kept = list(Chem.SDMolSupplier(str(partial), sanitize=False, removeHs=False))
    assert len(kept) >= 14 and len(kept) % 7 == 0 and all(m is not None for m in kept)
    assert not out.exists()


@pytest.mark.parametrize("suffix", ["sdf", "xyz"])
def test_killed_sampling_resumes_to_the_same_molecules(checkpoint, tmp_path, suffix):
    """SIGKILL mid-run, then the same command with --resume: the output file is byte for byte an uninterrupted
    run's (also for XYZ, whose 6-decimal coordinates a detour through SDF's 4 would change)."""
    import os
    import signal
    import time

    args = ["--checkpoint", str(checkpoint), "-n", "60", "--batch-size", "3", "--steps", "50", "--threads", "1",
            "--seed", "5", "--no-progress"]
    assert main(["sample", *args, "-o", str(tmp_path / f"full.{suffix}")]) == 0
    out = tmp_path / f"cut.{suffix}"
    partial = tmp_path / f"cut.{suffix}.partial.{suffix}"
    sidecar = tmp_path / f"cut.{suffix}.partial.json"
    proc = subprocess.Popen([sys.executable, "-m", "moldiff", "sample", *args, "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not partial.exists():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    if out.exists():
        pytest.skip("the run finished before it could be killed")
    assert main(["sample", *args, "-o", str(out)]) == 2  # a new run does not overwrite the finished batches
    assert main(["sample", *args, "--seed", "6", "--resume", "-o", str(out)]) == 2  # other parameters: refused
    assert main(["sample", *args, "--resume", "-o", str(out)]) == 0
    assert out.read_bytes() == (tmp_path / f"full.{suffix}").read_bytes()
    assert out.read_text().count("\n") > 60 and not sidecar.exists() and not partial.exists()


def test_stale_temporary_files_are_removed(tmp_path):
    import os

    from moldiff.io_utils import remove_stale_tmp

    stale = tmp_path / ".out.sdf.abc123.tmp"
    stale.write_text("half")
    os.utime(stale, (1e9, 1e9))
    keep = tmp_path / "notes.tmp"
    keep.write_text("mine")
    assert remove_stale_tmp(tmp_path) == [stale]
    assert not stale.exists() and keep.exists()


def test_valid_only_png_with_nothing_valid(checkpoint, tmp_path, capsys):
    """--valid-only --png when no sample sanitises (1 step of a tiny model): no picture, a line that says
    so, and an SDF with no records that still reads."""
    out, png = tmp_path / "v.sdf", tmp_path / "v.png"
    assert sample(checkpoint, out, "-n", "3", "--steps", "1", "--valid-only", "--png", str(png)) == 0
    with open(out, "rb") as handle:
        mols = list(Chem.ForwardSDMolSupplier(handle, sanitize=False))
    if mols:
        pytest.skip("a 1-step sample sanitised")
    assert not png.exists() and "no molecule to draw" in capsys.readouterr().err


def test_terminated_sampling_says_where_the_finished_batches_are(checkpoint, tmp_path):
    """SIGTERM mid-run: exit 143 and one line naming the partial file and --resume; whole batches kept."""
    import json
    import os
    import signal
    import time

    out = tmp_path / "t.sdf"
    sidecar = tmp_path / "t.sdf.partial.json"
    proc = subprocess.Popen([sys.executable, "-m", "moldiff", "sample", "--checkpoint", str(checkpoint),
                             "-n", "100000", "--batch-size", "5", "--steps", "10", "--threads", "1",
                             "--no-progress", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not (tmp_path / "t.sdf.partial.sdf").exists():
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read()
        os.kill(proc.pid, signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143 and "Traceback" not in err and err.count("\n") == 1, err[-500:]
    assert "terminated" in err and "t.sdf.partial.sdf" in err and "--resume" in err
    import re

    recorded = json.loads(sidecar.read_text())["done"]
    kept = len(list(Chem.SDMolSupplier(str(tmp_path / "t.sdf.partial.sdf"), sanitize=False, removeHs=False)))
    said = int(re.search(r"molecules 0–(\d+) of 100000", err).group(1)) + 1
    # whole batches; the record may lag the file by the batch written as the signal came (resume redoes it)
    assert kept % 5 == 0 and said % 5 == 0 and recorded <= said <= kept <= recorded + 5 and not out.exists()
    # the finished batches are never overwritten or trusted blindly
    partial = tmp_path / "t.sdf.partial.sdf"
    argv = ["sample", "--checkpoint", str(checkpoint), "-n", "100000", "--batch-size", "5", "--steps", "10",
            "--threads", "1", "--no-progress", "-o", str(out)]
    partial.write_bytes(b"X" + partial.read_bytes())
    assert main([*argv, "--resume"]) == 2 and not out.exists()
    sidecar.unlink()
    assert main(argv) == 2 and main([*argv, "--resume"]) == 2 and partial.exists()


def test_resume_with_nothing_to_resume_makes_everything(checkpoint, tmp_path, capsys):
    out = tmp_path / "r.xyz"
    assert sample(checkpoint, out, "-n", "3", "--steps", "2", "--resume") == 0
    assert "nothing to resume" in capsys.readouterr().err and out.read_text().count("\n") > 3


def test_checkpoint_every_reaches_the_trainer(tmp_path):
    """--checkpoint-every 2 (steps) and then 90s (minutes) on --resume end up in the run's config."""
    from moldiff.checkpoint import load_checkpoint

    run = ["--run-dir", str(tmp_path / "run"), "--data-dir", str(tmp_path / "data"), "--limit", "150",
           "--no-progress", "--eval-every", "1000"]
    assert main(["train", "--preset", "tiny", "--max-steps", "2", "--checkpoint-every", "2", *run]) == 0
    train = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["train"]
    assert train["checkpoint_steps"] == 2
    assert main(["train", "--resume", "--max-steps", "3", "--checkpoint-every", "90s", *run]) == 0
    train = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["train"]
    assert train["checkpoint_minutes"] == pytest.approx(1.5) and train["checkpoint_steps"] is None


def test_few_steps_default_to_the_measured_best_sampler(checkpoint, tmp_path):
    """--steps S < T without --solver/--spacing samples exactly as sde-dpm2m on quadratic spacing, not the
    ancestral step."""
    auto, best, plain = tmp_path / "auto.xyz", tmp_path / "best.xyz", tmp_path / "plain.xyz"
    common = ("-n", "3", "--steps", "6", "--threads", "1")
    assert sample(checkpoint, auto, *common) == 0
    assert sample(checkpoint, best, *common, "--solver", "sde-dpm2m", "--spacing", "quadratic") == 0
    assert sample(checkpoint, plain, *common, "--solver", "ancestral", "--spacing", "uniform") == 0
    assert auto.read_text() == best.read_text()
    assert auto.read_text() != plain.read_text()


def test_train_help_names_every_preset(capsys):
    from moldiff.config import PRESETS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = re.sub(r"-\s+", "-", " ".join(capsys.readouterr().out.split()))  # argparse wraps at hyphens
    assert all(name in text for name in PRESETS), text


def test_relax_mmff_writes_relaxed_molecules_and_says_so(tmp_path, capsys):
    """--relax mmff: the same molecules (same seed) as without it, at an MMFF94 minimum; off by default."""
    from moldiff.chem.geometry import mmff_strain

    args = ["sample", "--model", "qm9", "-n", "6", "--steps", "20", "--seed", "3", "--no-progress"]
    assert main([*args, "-o", str(tmp_path / "own.sdf")]) == 0
    assert "--relax" not in capsys.readouterr().out
    assert main([*args, "--relax", "mmff", "-o", str(tmp_path / "relaxed.sdf")]) == 0
    assert "molecules relaxed by MMFF94" in capsys.readouterr().out
    own = [m for m in Chem.SDMolSupplier(str(tmp_path / "own.sdf"), removeHs=False)]
    polished = [m for m in Chem.SDMolSupplier(str(tmp_path / "relaxed.sdf"), removeHs=False)]
    pairs = [(a, b) for a, b in zip(own, polished) if a is not None and b is not None]
    assert len(pairs) >= 3 and all(not a.HasProp("moldiff_relaxed") for a, _ in pairs)
    for a, b in pairs:
        assert Chem.MolToSmiles(Chem.RemoveHs(a)) == Chem.MolToSmiles(Chem.RemoveHs(b))
        if b.GetIntProp("moldiff_relaxed"):
            assert mmff_strain(b).strain < 0.5 < mmff_strain(a).strain
    assert sum(b.GetIntProp("moldiff_relaxed") for _, b in pairs) >= 3
