"""Checkpoints are data: loaded with weights_only, their structure checked per kind, one-line errors that name
the entry at fault and never pass on torch's advice to load code."""
from __future__ import annotations

import os

import pytest
import torch

from moldiff.checkpoint import FORMAT, CheckpointError, inference_blob, load_checkpoint, save_checkpoint
from moldiff.model import Generator
from moldiff.pretrained import pretrained_path


@pytest.fixture(scope="module")
def shipped() -> dict:
    return torch.load(pretrained_path("qm9"), weights_only=True)


@pytest.fixture(scope="module")
def training(shipped) -> dict:
    """A training checkpoint's structure around the shipped weights (real Adam state of a real parameter)."""
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([param])
    param.grad = torch.ones(2)
    opt.step()
    return {**shipped, "ema": shipped["model"], "optimizer": opt.state_dict(), "ema_updates": 3,
            "run_state": {"step": 3, "epoch": 0}}


def write(tmp_path, blob, name="c.pt"):
    path = tmp_path / name
    torch.save(blob, path)
    return path


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "weights_only=False" not in text
    return text


def test_a_written_checkpoint_reads_back_for_both_kinds(tmp_path, training):
    save_checkpoint(training, tmp_path / "run" / "checkpoint.pt")
    blob = load_checkpoint(tmp_path / "run" / "checkpoint.pt", kind="training")
    assert blob["format"] == FORMAT and blob["ema_updates"] == 3
    save_checkpoint(inference_blob(blob), tmp_path / "small.pt")
    small = load_checkpoint(tmp_path / "small.pt", kind="inference")
    assert "optimizer" not in small and torch.equal(small["model"][next(iter(small["model"]))],
                                                    blob["ema"][next(iter(blob["ema"]))])


@pytest.mark.parametrize("kind, drop", [("inference", "config"), ("inference", "stats"), ("inference", "model"),
                                        ("training", "ema"), ("training", "optimizer"), ("training", "run_state"),
                                        ("training", "ema_updates")])
def test_each_missing_entry_is_named(tmp_path, training, kind, drop):
    path = write(tmp_path, {k: v for k, v in training.items() if k != drop})
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, kind=kind)
    assert f"has no '{drop}'" in one_line(err)


@pytest.mark.parametrize("key, value, message", [
    ("config", "qm9", "'config' should be a dict, not str"),
    ("stats", [1, 2], "'stats' should be a dict, not list"),
    ("ema_updates", True, "'ema_updates' should be a int, not bool"),
    ("model", {"layer.weight": [1.0, 2.0]}, "'model' must map parameter names to tensors"),
])
def test_entries_of_the_wrong_type_are_named(tmp_path, training, key, value, message):
    path = write(tmp_path, {**training, key: value})
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, kind="training")
    assert message in one_line(err)


def test_an_exported_file_cannot_resume_training():
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(pretrained_path("qm9"), kind="training")
    assert "no 'ema'" in one_line(err) and "exported" in str(err.value)


def test_unknown_kind_is_a_programming_error(tmp_path, shipped):
    with pytest.raises(ValueError, match="unknown checkpoint kind 'sampling'"):
        load_checkpoint(pretrained_path("qm9"), kind="sampling")


def test_not_moldiff_damaged_or_not_a_file(tmp_path, shipped):
    cases = {
        "untagged": write(tmp_path, {"config": {}, "stats": {}, "model": {}}, "untagged.pt"),
        "a list": write(tmp_path, [1, 2, 3], "list.pt"),
    }
    for path in cases.values():
        with pytest.raises(CheckpointError, match="is not a moldiff checkpoint"):
            load_checkpoint(path)
    whole = pretrained_path("qm9").read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])  # a copy cut short
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    for name in ("cut.pt", "empty.pt", "text.pt"):
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path / name)
        assert "damaged or not a PyTorch file" in one_line(err)
    os.mkfifo(tmp_path / "pipe.pt")  # a real FIFO: refused without blocking on a read
    (tmp_path / "folder.pt").mkdir()
    for name in ("pipe.pt", "folder.pt"):
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path / name)
        assert "is not a regular file" in one_line(err)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_code_in_a_checkpoint_is_refused_without_torchs_advice(tmp_path):
    path = write(tmp_path, {"format": FORMAT, "config": {}, "stats": {}, "model": {}, "hook": os.system})
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, kind="inference")
    text = one_line(err)
    assert "never code" in text and "weights_only" not in text and "Unsupported global" not in text


def test_generator_refuses_weights_and_configs_that_do_not_fit(tmp_path, shipped):
    weights = dict(shipped["model"])
    key = next(k for k, v in weights.items() if v.dim() == 2)
    weights[key] = torch.zeros(weights[key].shape[0] + 1, weights[key].shape[1])
    with pytest.raises(CheckpointError) as err:
        Generator.from_checkpoint(write(tmp_path, {**shipped, "model": weights}, "shape.pt"))
    assert "weights do not fit its config" in one_line(err) and len(str(err.value)) < 400
    assert f"size mismatch for {key}" in str(err.value)  # the telling line, not load_state_dict's header
    extra = {**shipped["model"], "spare.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="weights do not fit its config"):
        Generator.from_checkpoint(write(tmp_path, {**shipped, "model": extra}, "extra.pt"))
    config = {**shipped["config"], "train": {**shipped["config"]["train"], "lr": "fast"}}
    with pytest.raises(CheckpointError) as err:
        Generator.from_checkpoint(write(tmp_path, {**shipped, "config": config}, "config.pt"))
    assert "train.lr" in one_line(err)
    config = {**shipped["config"], "modle": {}}
    with pytest.raises(CheckpointError, match="modle"):
        Generator.from_checkpoint(write(tmp_path, {**shipped, "config": config}, "table.pt"))
    gen = Generator.from_checkpoint(pretrained_path("qm9"))  # the shipped file itself still loads
    assert gen.info["weights"] == "model"
