"""Hostile and careless input to the command line and the checkpoint loader: one line on stderr, the right
exit code, no traceback, nothing half-written; and the small frictions (version, help, start-up)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from moldiff.checkpoint import FORMAT, CheckpointError, load_checkpoint
from moldiff.cli import main
from moldiff.pretrained import pretrained_path
from moldiff.runtime import bf16_supported, cpu_flags, resolve_bf16, resolve_device


def one_line_error(capsys, code, rc=2) -> str:
    assert code == rc
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def shipped():
    return torch.load(pretrained_path("qm9"), weights_only=True)


def craft(tmp_path, blob, name="c.pt"):
    path = tmp_path / name
    torch.save(blob, path)
    return path


@pytest.mark.parametrize("drop", ["config", "stats", "model"])
def test_checkpoint_missing_a_key(tmp_path, capsys, shipped, drop):
    path = craft(tmp_path, {k: v for k, v in shipped.items() if k != drop})
    err = one_line_error(capsys, main(["sample", "--checkpoint", str(path), "-n", "1", "-o", str(tmp_path / "o.sdf")]))
    assert f"has no '{drop}'" in err and not (tmp_path / "o.sdf").exists()


def test_checkpoint_with_a_config_of_the_wrong_type(tmp_path, capsys, shipped):
    path = craft(tmp_path, {**shipped, "config": ["not", "a", "table"]})
    err = one_line_error(capsys, main(["sample", "--checkpoint", str(path), "-n", "1", "-o", str(tmp_path / "o.sdf")]))
    assert "'config' should be a dict" in err
    bad_value = {**shipped, "config": {**shipped["config"], "model": {**shipped["config"]["model"], "layers": "six"}}}
    err = one_line_error(capsys, main(["sample", "--checkpoint", str(craft(tmp_path, bad_value)), "-n", "1",
                                       "-o", str(tmp_path / "o.sdf")]))
    assert "model.layers" in err


def test_checkpoint_whose_weights_do_not_fit(tmp_path, capsys, shipped):
    weights = dict(shipped["model"])
    key = next(k for k in weights if k.endswith("weight"))
    weights[key] = torch.zeros(3, 3)
    err = one_line_error(capsys, main(["sample", "--checkpoint", str(craft(tmp_path, {**shipped, "model": weights})),
                                       "-n", "1", "-o", str(tmp_path / "o.sdf")]))
    assert "weights do not fit its config" in err and len(err) < 400


def test_pickled_code_is_refused_without_torchs_advice(tmp_path, capsys):
    path = craft(tmp_path, {"format": FORMAT, "config": {}, "hook": print})
    err = one_line_error(capsys, main(["sample", "--checkpoint", str(path), "-n", "1", "-o", str(tmp_path / "o.sdf")]))
    assert "never code" in err and "weights_only=False" not in err and "\x1b" not in err


def test_resume_from_an_exported_file_says_so_at_once(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(pretrained_path("qm9").read_bytes())
    err = one_line_error(capsys, main(["train", "--resume", "--run-dir", str(run), "--data-dir",
                                       str(tmp_path / "never-made")]))
    assert "no 'ema'" in err and "exported" in err
    assert not (tmp_path / "never-made").exists()  # refused before any data was processed
    with pytest.raises(CheckpointError, match="has no 'ema'"):
        load_checkpoint(pretrained_path("qm9"), kind="training")
    assert load_checkpoint(pretrained_path("qm9"), kind="inference")["model"]


@pytest.mark.parametrize("command", ["sample", "train"])
@pytest.mark.parametrize("device, message", [("bogus", "unknown device"), ("mps", "MPS"), ("cuda", "CUDA")])
def test_unavailable_devices(tmp_path, capsys, command, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    args = ["--device", device, "--run-dir", str(tmp_path / "r")] if command == "train" else \
        ["--device", device, "-n", "1", "-o", str(tmp_path / "o.sdf")]
    assert message in one_line_error(capsys, main([command, *args]))
    with pytest.raises(ValueError, match=message):
        resolve_device(device)


def test_run_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert "is a file" in one_line_error(capsys, main(["train", "--run-dir", str(tmp_path / "file")]))


@pytest.mark.parametrize("toml, message", [
    ('[train]\nlr = "fast"\n', "train.lr"), ("[model]\nlayers = 2.5\n", "model.layers"),
    ("[train]\nepochs = true\n", "train.epochs"), ("[modle]\nhidden = 3\n", "modle"),
    ("train = 3\n", "[train] must be a table"), ("[features]\natom_types = [1, 2]\n", "features.atom_types"),
])
def test_toml_with_wrong_types_or_unknown_tables(tmp_path, capsys, toml, message):
    (tmp_path / "c.toml").write_text(toml)
    err = one_line_error(capsys, main(["train", "--config", str(tmp_path / "c.toml"), "--run-dir", str(tmp_path / "r")]))
    assert message in err


def test_bf16_only_where_the_cpu_has_it(capsys):
    assert bf16_supported("cpu", {"avx2", "fma"}) is False
    assert bf16_supported("cpu", {"avx512f", "avx512_bf16"}) is True and bf16_supported("cpu", {"amx_bf16"}) is True
    assert bf16_supported("cpu") == bool({"avx512_bf16", "amx_bf16"} & cpu_flags()) or not cpu_flags()
    warnings = []
    assert resolve_bf16(True, "cpu", warn=warnings.append) is bf16_supported("cpu")
    assert len(warnings) == (0 if bf16_supported("cpu") else 1)
    assert resolve_bf16(False, "cpu", warn=warnings.append) is False


def test_version_and_bare_command(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("moldiff ")
    assert main([]) == 2
    assert "usage: moldiff" in capsys.readouterr().out


def test_bad_arguments_fail_before_the_heavy_imports():
    """A command that fails on its arguments never imports torch or RDKit (start-up stays well under 2 s)."""
    code = ("import sys\nfrom moldiff.cli import main\nrc = main(['sample', '-n', '0'])\n"
            "print(rc, 'torch' in sys.modules, 'rdkit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["2", "False", "False"], out.stderr[-500:]


@pytest.mark.parametrize("text, expected", [
    ("10m", (10.0, None)), ("90s", (1.5, None)), ("2h", (120.0, None)), ("0.5h", (30.0, None)),
    ("500", (None, 500)), (" 7 ", (None, 7))])
def test_checkpoint_every_parses_times_and_steps(text, expected):
    from moldiff.cli import _checkpoint_every

    assert _checkpoint_every(text) == expected


@pytest.mark.parametrize("value", ["10x", "0", "-5", "0m", "m", "", "1.5", "nanm", "infh"])
def test_checkpoint_every_refuses_in_one_line(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as done:
        main(["train", "--checkpoint-every", value, "--run-dir", str(tmp_path / "r")])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--checkpoint-every" in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv", [["sample", "--steps", "abc"], ["sample", "--nope"], ["train", "--max-steps", "x"],
                                  ["export"], ["frobnicate"]])
def test_usage_errors_are_one_line_with_exit_code_2(capsys, argv):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err and "--help" in err, err


def test_export_of_a_file_without_weights(tmp_path, capsys, shipped):
    path = craft(tmp_path, {k: v for k, v in shipped.items() if k != "model"})
    err = one_line_error(capsys, main(["export", str(path), str(tmp_path / "out.pt")]))
    assert "has no 'model'" in err and not (tmp_path / "out.pt").exists()


def test_train_resume_with_a_damaged_checkpoint_before_the_data(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(pretrained_path("qm9").read_bytes()[:1000])
    err = one_line_error(capsys, main(["train", "--resume", "--run-dir", str(run), "--data-dir",
                                       str(tmp_path / "never-made")]))
    assert "damaged" in err and not (tmp_path / "never-made").exists()


def test_stale_tmp_of_the_output_is_removed_at_the_next_start(tmp_path, capsys):
    """A stale temporary file beside the output goes when the next run starts (even one that then fails on
    its checkpoint); other files stay."""
    import os

    stale = tmp_path / ".o.sdf.k2j_x9ab.tmp"
    stale.write_text("half a file")
    os.utime(stale, (1e9, 1e9))
    other = tmp_path / "keep.tmp"
    other.write_text("mine")
    one_line_error(capsys, main(["sample", "--checkpoint", str(tmp_path / "none.pt"), "-n", "1",
                                 "-o", str(tmp_path / "o.sdf")]))
    assert not stale.exists() and other.read_text() == "mine"


@pytest.mark.parametrize("argv, message", [
    (["--condition", "gap"], "write NAME=VALUE"),
    (["--condition", "gap=low"], "'low' is not a number"),
    (["--condition", "gap=inf"], "finite number"),
    (["--condition", "gap=0.2", "--condition", "gap=0.3"], "given twice"),
    (["--guidance", "2"], "give one"),
    (["--condition", "gap=0.25"], "takes no condition"),  # the unconditioned qm9 model
])
def test_bad_conditions_are_one_line_errors(tmp_path, capsys, argv, message):
    out = tmp_path / "o.sdf"
    err = one_line_error(capsys, main(["sample", "-n", "2", "--steps", "2", "-o", str(out), *argv]))
    assert message in err and not out.exists()
