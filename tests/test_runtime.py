"""Process-level settings: how many threads to use on a shared machine."""
from __future__ import annotations

import pytest
import torch

from moldiff.runtime import free_cores, set_threads


@pytest.mark.parametrize("load, cores, expected", [
    (0.0, 2, 2), (0.4, 2, 2), (0.6, 2, 1), (1.0, 2, 1), (3.7, 2, 1), (1.2, 16, 15), (0.0, 1, 1), (-1.0, 4, 4)])
def test_free_cores(load, cores, expected):
    assert free_cores(load, cores) == expected


def test_set_threads_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        n = set_threads(None)
        assert 1 <= n == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("text, expected", [
    ("1.07 1.87 1.99 1/345 12345\n", 0.0),   # a job just ended: the average lags, nothing else runs now
    ("1.07 1.87 1.99 3/345 12345\n", 1.07),  # two others run now: the average is the smaller figure
    ("0.20 0.50 0.90 2/345 12345\n", 0.2),
])
def test_busy_elsewhere(text, expected):
    from moldiff.runtime import busy_elsewhere

    assert busy_elsewhere(text) == pytest.approx(expected)


# ---------------------------------------------------------------- threads the caller chose
def test_threads_chosen_by_the_caller_are_kept(monkeypatch):
    from moldiff.runtime import default_threads, threads_chosen_by_user

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert not threads_chosen_by_user()  # moldiff set it
        torch.set_num_threads(default_threads())
        assert not threads_chosen_by_user()  # torch's own default: nobody chose
        torch.set_num_threads(default_threads() + 3)
        assert threads_chosen_by_user()  # the caller chose
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        set_threads(1)
        assert threads_chosen_by_user() and default_threads() == 1  # $OMP_NUM_THREADS is a choice too
    finally:
        torch.set_num_threads(before)


def test_default_threads_counts_physical_cores(monkeypatch):
    from moldiff.runtime import default_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    two_cores_four_threads = "".join(f"processor\t: {k}\nphysical id\t: 0\ncore id\t\t: {k // 2}\n\n" for k in range(4))
    assert default_threads(two_cores_four_threads) == 2
    assert default_threads("") == (__import__("os").cpu_count() or 1)


def test_api_picks_idle_cores_unless_the_caller_chose(monkeypatch):
    """moldiff.sample sets the thread count as the command line does, but keeps one the caller set."""
    import moldiff
    from moldiff.runtime import default_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    gen = moldiff.load_pretrained("qm9", device="cpu")
    before = torch.get_num_threads()
    try:
        mine = default_threads() + 2
        torch.set_num_threads(mine)
        moldiff.sample(1, gen, steps=1, progress=False)
        assert torch.get_num_threads() == mine
        moldiff.sample(1, gen, steps=1, progress=False, threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- devices and bf16
@pytest.mark.parametrize("name, message", [
    ("bogus", "unknown device"), ("cuda:99", "CUDA"), ("mps", "MPS"), ("xla", "not supported")])
def test_resolve_device_refuses_in_one_line(name, message):
    from moldiff.runtime import resolve_device

    with pytest.raises(ValueError, match=message) as err:
        resolve_device(name)
    assert "\n" not in str(err.value)


def test_resolve_device_default_and_cpu():
    from moldiff.runtime import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_bf16_falls_back_with_one_warning_on_a_cpu_without_it(capsys):
    from moldiff import runtime

    warned = []
    assert runtime.resolve_bf16(True, "cpu", warn=warned.append, flags={"avx", "avx2", "fma"}) is False
    assert warned == ["bf16 requested but this CPU has no bf16 instructions (AVX2 only); running fp32"]
    assert runtime.resolve_bf16(True, "cpu", warn=warned.append, flags={"avx2", "amx_bf16"}) is True
    assert runtime.resolve_bf16(False, "cpu", warn=warned.append, flags={"avx2"}) is False and len(warned) == 1


@pytest.mark.skipif(__import__("moldiff.runtime").runtime.bf16_supported("cpu"), reason="this CPU has bf16")
def test_bf16_warning_once_per_process_on_this_cpu(capsys):
    from moldiff import runtime

    runtime._bf16_warned.discard("cpu")
    assert runtime.resolve_bf16(True, "cpu") is False and runtime.resolve_bf16(True, "cpu") is False
    err = capsys.readouterr().err
    assert err.count("no bf16 instructions") == 1 and err.count("\n") == 1


# ---------------------------------------------------------------- temporary files of interrupted writes
def test_remove_stale_tmp_removes_only_what_atomic_path_left(tmp_path):
    import os
    import time

    from moldiff.io_utils import atomic_path, process_start_time, remove_stale_tmp

    assert process_start_time() <= time.time()
    old = (1e9, 1e9)
    stale = [tmp_path / ".out.sdf.k2j_x9ab.tmp", tmp_path / ".checkpoint.pt.a1b2c3d4.tmp"]
    kept = [tmp_path / ".out.sdf.zzzzzzzz.tmp",  # newer than this process: maybe a write in progress
            tmp_path / "notes.tmp", tmp_path / ".x.tmp", tmp_path / "out.sdf", tmp_path / ".out.sdf.AB12CD34.tmp"]
    for path in stale + kept:
        path.write_text("x")
        if path != kept[0]:
            os.utime(path, old)
    link = tmp_path / ".l.sdf.aaaaaaaa.tmp"
    link.symlink_to(tmp_path / "out.sdf")
    folder = tmp_path / ".d.sdf.bbbbbbbb.tmp"
    folder.mkdir()
    os.utime(folder, old)
    assert remove_stale_tmp(tmp_path, name="elsewhere") == []
    assert sorted(remove_stale_tmp(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept) and link.is_symlink() and folder.is_dir()
    with atomic_path(tmp_path / "new.sdf") as tmp:  # a write in progress in this process is never touched
        tmp.write_text("y")
        assert remove_stale_tmp(tmp_path) == []
    assert (tmp_path / "new.sdf").read_text() == "y"
    assert remove_stale_tmp(tmp_path / "missing") == []


# ---------------------------------------------------------------- python -m moldiff
def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


def test_python_m_moldiff_beside_a_clone_named_moldiff(tmp_path):
    """`python -m moldiff` from the folder holding a clone named moldiff: the clone must not shadow the package
    (its data/ folder was imported as moldiff.data)."""
    import subprocess
    import sys

    (tmp_path / "moldiff").symlink_to(_repo_root(), target_is_directory=True)
    done = subprocess.run([sys.executable, "-m", "moldiff", "sample", "--checkpoint", str(tmp_path / "none.pt"),
                           "-n", "1", "-o", str(tmp_path / "o.sdf")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "checkpoint not found" in done.stderr and "Traceback" not in done.stderr


def test_python_m_moldiff_without_the_dependencies_says_why(tmp_path):
    """A Python without moldiff's dependencies (here: no site-packages, -S) gets one line, not a traceback."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-S", "-m", "moldiff", "sample", "-n", "1", "-o", str(tmp_path / "o.sdf")],
                          cwd=_repo_root(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-400:]
    assert done.stderr.count("\n") == 1 and "has no '" in done.stderr and "pip install" in done.stderr
