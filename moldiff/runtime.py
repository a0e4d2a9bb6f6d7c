"""Process-level tuning for the CPU hot paths."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done = False


def tune_allocator() -> bool:
    """Keep freed memory in glibc's heap instead of returning it to the kernel.

    The network allocates and frees the same large edge tensors every step; glibc's defaults serve them
    with fresh mmap calls and page faults, which cost several times the arithmetic on a small CPU
    (benchmarks/speed.py measures it). Equivalent to MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>.
    Returns whether the settings were applied (glibc on Linux only). ``MOLDIFF_TUNE_ALLOCATOR=0`` in the
    environment turns it off (benchmarks/speed.py --allocator-ab uses that to measure what it buys).
    """
    global _done
    if _done:
        return True
    if os.environ.get("MOLDIFF_TUNE_ALLOCATOR", "1") == "0":
        return False
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**30) == 1
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok


def free_cores(load: float | None = None, cores: int | None = None) -> int:
    """CPU threads worth using now: the cores this process may run on, less the ones other work keeps busy
    (:func:`busy_elsewhere`), at least 1.

    On a small shared machine an OpenMP region with more threads than idle cores waits at every barrier
    for a descheduled thread; benchmarks/README.md measured one kernel 80× slower that way. ``load`` and
    ``cores`` default to :func:`busy_elsewhere` and the process's CPU affinity.
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if load is None:
        load = busy_elsewhere()
    return max(1, min(cores, int(cores - load + 0.5)))


def busy_elsewhere(loadavg: str | None = None) -> float:
    """How many cores other work keeps busy: the smaller of the 1-minute load average, which lags (a job
    that ended a minute ago still counts), and the number of runnable tasks right now besides this one
    (both from ``/proc/loadavg``; ``os.getloadavg()`` where that file does not exist)."""
    try:
        text = loadavg if loadavg is not None else Path("/proc/loadavg").read_text()
        fields = text.split()
        return max(0.0, min(float(fields[0]), float(fields[3].split("/")[0]) - 1))
    except (OSError, IndexError, ValueError):
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0


def set_threads(threads: int | None) -> int:
    """Use ``threads`` torch threads, or :func:`free_cores` when None; returns the number set."""
    import torch

    global _threads_set
    n = threads or free_cores()
    torch.set_num_threads(n)
    _threads_set = n
    return n


_threads_set: int | None = None  # the thread count set_threads last chose


def default_threads(cpuinfo: str | None = None) -> int:
    """The thread count torch starts with when nobody sets one: $OMP_NUM_THREADS (or $MKL_NUM_THREADS), else
    the physical cores (distinct physical id / core id pairs of /proc/cpuinfo; ``os.cpu_count()`` where that
    file does not say)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    cores, phys = set(), None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            phys = value.strip()
        elif key.strip() == "core id":
            cores.add((phys, value.strip()))
    return len(cores) or os.cpu_count() or 1


def threads_chosen_by_user() -> bool:
    """Whether torch's thread count was set by the caller (``torch.set_num_threads``, $OMP_NUM_THREADS): it
    differs from torch's default and from what :func:`set_threads` last set."""
    import torch

    if any(os.environ.get(var, "").strip() for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return True
    n = torch.get_num_threads()
    return n != _threads_set and n != default_threads()


def distributed_setup(device: str | None = None):
    """The device, rank and world size of this process: under ``torchrun`` (``WORLD_SIZE`` > 1) the process
    group is initialised (NCCL on CUDA, gloo on the CPU) and each rank takes its local GPU. ``device`` names the
    device (default: CUDA where present, else the CPU). Returns (device, rank, world)."""
    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    dev = resolve_device(device)
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev, rank, world


def resolve_device(name: str | None = None):
    """The torch device ``name`` names (default: CUDA where present, else the CPU), checked: ValueError in one
    line for a name torch does not know or a device this machine does not have."""
    import torch

    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: no CUDA GPU is available here (torch {torch.__version__}); use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {name!r}: Apple's MPS is not available here; use cpu")
    elif dev.type != "cpu":
        raise ValueError(f"device {name!r} is not supported; use cpu or cuda")
    return dev


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's instruction-set flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_supported(device=None, flags: set[str] | None = None) -> bool:
    """Whether bf16 matrix multiplies are native on ``device``: on a CPU the avx512_bf16 or amx_bf16 instructions
    (without them torch emulates bf16, several times slower than fp32), on CUDA ``torch.cuda.is_bf16_supported``."""
    import torch

    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type != "cpu":
        return False
    flags = cpu_flags() if flags is None else flags
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # no /proc/cpuinfo: torch's own check


_bf16_warned: set[str] = set()


def resolve_bf16(requested: bool, device=None, warn=None, flags: set[str] | None = None) -> bool:
    """``requested`` where bf16 is native on ``device``; else False, with a warning (once per process and kind of
    device, one line on stderr, or to ``warn``): without bf16 instructions torch emulates bf16, slower than fp32.
    ``flags`` stands in for the CPU's instruction-set flags (see :func:`bf16_supported`)."""
    import torch

    if not requested:
        return False
    if bf16_supported(device, flags):
        return True
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cpu":
        capability = torch.backends.cpu.get_cpu_capability() if flags is None else \
            ("AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "DEFAULT")
        message = f"bf16 requested but this CPU has no bf16 instructions ({capability} only); running fp32"
    else:
        message = f"bf16 requested but {dev.type} device {dev} has no native bf16; running fp32"
    if warn is not None:
        warn(message)
    elif dev.type not in _bf16_warned:
        _bf16_warned.add(dev.type)
        print(f"warning: {message}", file=sys.stderr)
    return False
