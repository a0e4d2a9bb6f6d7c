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

    n = threads or free_cores()
    torch.set_num_threads(n)
    return n


def distributed_setup(device: str | None = None):
    """The device, rank and world size of this process: under ``torchrun`` (``WORLD_SIZE`` > 1) the process
    group is initialised (NCCL on CUDA, gloo on the CPU) and each rank takes its local GPU. ``device`` names the
    device (default: CUDA where present, else the CPU). Returns (device, rank, world)."""
    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    resolve = globals().get("resolve_device")
    dev = resolve(device) if resolve else torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev, rank, world
