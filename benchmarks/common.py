"""What every benchmark script shares: its argument-parser basics, atomic result files, and the record of the
machine a result was measured on (written into every result JSON as ``machine_info``).

    from common import parser, set_threads, machine_info, write_json, write_text, command_line

Scripts run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path`` and ``import common`` finds
this file. Nothing personal is recorded: no host name, user or path of a home folder.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from moldiff.io_utils import atomic_path, atomic_write_text

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"

CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
"""Instruction-set extensions that decide which GEMM kernels (and bf16 paths) the CPU can run."""


# ----- arguments ---------------------------------------------------------------------------------------
def parser(doc: str | None, *, threads: bool | str = False, seed: int | None = None,
           json: str | Path | None | bool = False, out: str | Path | None | bool = False,
           **kwargs: Any) -> argparse.ArgumentParser:
    """An ArgumentParser described by the first line of ``doc`` (a script's ``__doc__``) with the common flags:

    - ``threads=True``: ``--threads N`` (default None: leave torch's choice; apply it with :func:`set_threads`);
      a string instead of True is the flag's help;
    - ``seed=S``: ``--seed`` with default S (None: no flag);
    - ``json=PATH``: ``--json`` (a Path) with that default; ``json=None``: ``--json`` without default (nothing
      written unless given); ``json=False``: no flag. ``out`` likewise for ``--out``.
    """
    ap = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None, **kwargs)
    if threads:
        ap.add_argument("--threads", type=int, default=None,
                        help=threads if isinstance(threads, str) else "torch threads (default: torch's choice)")
    if seed is not None:
        ap.add_argument("--seed", type=int, default=seed, help=f"random seed (default {seed})")
    for flag, default, what in (("--json", json, "result JSON"), ("--out", out, "output file")):
        if default is False:
            continue
        ap.add_argument(flag, type=Path, default=None if default is None else Path(default),
                        help=f"{what}" + (f" (default {default})" if default is not None else ""))
    return ap


def set_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` when ``n`` is given; otherwise torch's choice stays."""
    if n:
        import torch

        torch.set_num_threads(n)


def command_line(argv: Sequence[str] | None = None, script: str | None = None) -> str:
    """``python benchmarks/<script>.py <argv>``, quoted so that it can be pasted into a shell; ``argv`` defaults
    to the process's arguments, ``script`` to the running script."""
    name = Path(script or sys.argv[0]).name
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", f"benchmarks/{name}", *args])


# ----- the machine -------------------------------------------------------------------------------------
def _cpuinfo() -> tuple[str | None, set[str]]:
    """(CPU model name, flags) from /proc/cpuinfo (x86 ``model name``/``flags``, Arm ``Features``)."""
    model, flags = None, set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit() -> dict:
    """The commit the benchmark ran from and whether tracked files differed from it (None outside a checkout)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def machine_info(device: Any = None) -> dict:
    """What a result was measured on: CPU model, cores, speed-relevant instruction sets, memory, load, torch and
    its CPU capability, threads, the GPU (when CUDA is there), Python, the time (UTC) and the git commit."""
    model, flags = _cpuinfo()
    info: dict[str, Any] = {
        "cpu_model": model or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_flags": {f: f in flags for f in CPU_FLAGS},
    }
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gib"] = None
    info["load_average"] = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    try:
        import torch
    except ImportError:
        info.update(torch=None, cpu_capability=None, threads=None, gpu=None)
    else:
        info["torch"] = torch.__version__
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["threads"] = torch.get_num_threads()
        cuda = torch.cuda.is_available()
        which = torch.device(device) if device is not None and str(device).startswith("cuda") else None
        info["gpu"] = torch.cuda.get_device_name(which) if cuda else None
        info["cuda"] = torch.version.cuda if cuda else None
    info["python"] = platform.python_version()
    info["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    info["git"] = git_commit()
    return info


# ----- results -----------------------------------------------------------------------------------------
def plain(obj: Any) -> Any:
    """``obj`` as plain JSON data: str keys, lists for tuples and sets, numpy/torch scalars and arrays via
    ``tolist()``, non-finite floats as None, paths and anything else as ``str``."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [plain(v) for v in sorted(obj, key=str)]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return plain(obj.tolist())
    return str(obj)


def write_json(path: str | Path, data: dict, *, indent: int = 1, info: dict | None = None) -> Path:
    """Write ``data`` with ``machine_info`` (``info``, or measured now) as JSON to ``path`` atomically."""
    path = Path(path)
    blob = {**data, "machine_info": info if info is not None else machine_info()}
    atomic_write_text(path, json.dumps(plain(blob), indent=indent) + "\n")
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (markdown tables beside a result JSON)."""
    atomic_write_text(path, text)
    return Path(path)


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG to ``path`` atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(path)


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSON-lines file (blank lines skipped)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


__all__ = ("CPU_FLAGS", "RESULTS", "REPO", "command_line", "git_commit", "machine_info", "parser",
           "plain", "read_jsonl", "save_figure", "set_threads", "write_json", "write_text")
