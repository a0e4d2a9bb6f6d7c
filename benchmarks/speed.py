"""Speed of training and sampling through moldiff's real code paths (Trainer.train_step, moldiff.sampling.iter_chain).

    python benchmarks/speed.py --preset edm --device cpu --json out.json
    python benchmarks/speed.py --preset edm --variants reference:fp32,fast:fp32,fast:bf16 --repeats 7

Each *variant* is ``kernel:dtype`` with kernel in {reference, fast, compiled} (EGNN.set_kernel) and
dtype in {fp32, bf16} (bf16 = TrainConfig.bf16 autocast for training; the same autocast around the sampler).
All variants are measured in the SAME process, interleaved step by step (variant A, B, C, A, B, C, ...), so a
background load hits them alike; medians, min/max and the ratio of each variant to the first are reported.

Measured: seconds per training step on real QM9 training batches (``--batch`` molecules, default 64, and the
largest batch of a doubling sweep that fits, ``--max-batch``); seconds per denoising step and molecules/s for
sampling (sizes drawn from the training set's p(N), and the fixed 100 × 19-atom case); peak memory (CPU: peak
RSS, reset per phase via /proc/self/clear_refs; CUDA: max_memory_allocated); matmul FLOPs per step counted with
torch.utils.flop_counter.FlopCounterMode (forward + backward for training); achieved FLOP/s as a fraction of the
matrix-multiply peak measured in the same run (fp32 and bf16 GEMMs, before and after the steps, best kept).

``--allocator-ab`` additionally times the sampler step with and without moldiff.runtime.tune_allocator() in
alternating subprocesses (the glibc setting cannot be undone inside one process).
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from moldiff.config import load_config
from moldiff.nn import egnn
from moldiff.sampling import draw_size, empty_graph, iter_chain, molecule_seed
from moldiff.train import Trainer

from common import command_line, machine_info, parser, set_threads, write_json  # benchmarks/common.py


# ----- helpers -------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS)
        except OSError:
            pass


def peak_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "iqr": (statistics.quantiles(values, n=4)[2] - statistics.quantiles(values, n=4)[0])
            if len(values) >= 2 else 0.0, "n": len(values), "all": [round(v, 5) for v in values]}


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    """Best-of median FLOP/s of a square GEMM (size³) in ``dtype``."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2.0 * size ** 3 / statistics.median(times)


def parse_variants(text: str) -> list[tuple]:
    """``kernel[:dtype[:threads]]`` items; threads defaults to the process setting (--threads)."""
    out = []
    for item in text.split(","):
        parts = item.strip().split(":")
        kernel = parts[0]
        dtype = parts[1] if len(parts) > 1 else "fp32"
        threads = int(parts[2]) if len(parts) > 2 else None
        if kernel not in egnn.KERNELS or dtype not in ("fp32", "bf16"):
            raise SystemExit(f"bad variant {item!r}: kernel in {egnn.KERNELS}, dtype in fp32/bf16")
        out.append((kernel, dtype) if threads is None else (kernel, dtype, threads))
    return out


def vname(v: tuple) -> str:
    return ":".join(str(p) for p in v)


def set_kernels(trainer: Trainer, kernel: str) -> str:
    """Switch the trained and the EMA network (which samples) to ``kernel``; returns the previous one."""
    trainer.ema.model.set_kernel(kernel)
    return trainer.net.set_kernel(kernel)


class Variant:
    """Switches the process to one variant for the duration of a ``with`` block."""

    def __init__(self, trainer: Trainer, v: tuple):
        self.trainer, self.kernel, self.dtype = trainer, v[0], v[1]
        self.threads = v[2] if len(v) > 2 else None

    def __enter__(self):
        self.old_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        self.old_kernel = set_kernels(self.trainer, self.kernel)
        self.old_cfg = self.trainer.cfg
        self.trainer.cfg = dataclasses.replace(self.old_cfg, train=dataclasses.replace(
            self.old_cfg.train, bf16=self.dtype == "bf16"))
        return self

    def autocast(self):
        dev = self.trainer.device.type
        return torch.autocast(dev, dtype=torch.bfloat16) if self.dtype == "bf16" else nullcontext()

    def __exit__(self, *exc):
        torch.set_num_threads(self.old_threads)
        set_kernels(self.trainer, self.old_kernel)
        self.trainer.cfg = self.old_cfg


# ----- training ------------------------------------------------------------------------------------
def batch_indices(trainer: Trainer, size: int, k: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1234 + k)
    return torch.randperm(len(trainer.train_set), generator=g)[:size]


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def timed_step(fn, dev: torch.device, name: str, r: int, warmup: int, times: dict, cpu: dict, peaks: dict):
    """Run one step; record wall and CPU seconds after the warm-up, peak memory on the first repeat."""
    if r == 0:
        reset_peak(dev)
    sync(dev)
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync(dev)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    if r == 0:
        peaks[name] = peak_bytes(dev)
    if r >= warmup:
        times[name].append(dt)
        cpu[name].append(dc)
    return out


def bench_train(trainer: Trainer, variants, batch_size: int, repeats: int, warmup: int) -> dict:
    dev = trainer.device
    batches = [trainer.batches().collate(batch_indices(trainer, batch_size, k)) for k in range(repeats + warmup)]
    times = {vname(v): [] for v in variants}
    cpu = {vname(v): [] for v in variants}
    peaks, flops, losses = {}, {}, {}
    for r, batch in enumerate(batches):
        for v in variants:
            with Variant(trainer, v):
                loss = timed_step(lambda: trainer.train_step(batch), dev, vname(v), r, warmup, times, cpu, peaks)
                losses.setdefault(vname(v), []).append(loss)
    for v in variants:  # FLOPs of one training step (forward + backward), counted on the first batch
        with Variant(trainer, v):
            flops[vname(v)] = count_flops(lambda: trainer.train_step(batches[0]))
    n_atoms = [int(b.num_nodes) for b in batches]
    return {"batch_molecules": batch_size, "atoms_per_batch_median": statistics.median(n_atoms),
            "pairs_per_batch_median": statistics.median([int(b.pair_index.shape[1]) for b in batches]),
            "seconds_per_step": {k: summary(t) for k, t in times.items()},
            "cpu_seconds_per_step": {k: summary(t) for k, t in cpu.items()},
            "molecules_per_s": {k: batch_size / statistics.median(t) for k, t in times.items()},
            "peak_memory_bytes": peaks, "flops_per_step": flops,
            "loss_first_step": {k: l[0] for k, l in losses.items()}}


def largest_batch(trainer: Trainer, variants, start: int, max_batch: int, repeats: int) -> dict | None:
    """Double the batch from ``start`` while a training step runs (no OOM) and memory stays below 80 %."""
    dev = trainer.device
    best = None
    size = start * 2
    while size <= max_batch:
        try:
            res = bench_train(trainer, variants, size, repeats, warmup=1)
        except (RuntimeError, MemoryError) as err:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            print(f"  batch {size}: failed ({type(err).__name__}); stopping", flush=True)
            break
        best = res
        peak = max(p or 0 for p in res["peak_memory_bytes"].values())
        total = (torch.cuda.get_device_properties(dev).total_memory if dev.type == "cuda"
                 else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        print(f"  batch {size}: " + ", ".join(f"{k} {v['median']:.3f} s" for k, v in res["seconds_per_step"].items())
              + f", peak {peak / 2**30:.2f} GiB", flush=True)
        if peak * 2 > 0.8 * total:
            break
        size *= 2
    return best


# ----- sampling ------------------------------------------------------------------------------------
def bench_sample(trainer: Trainer, variants, sizes: list[int], steps: int, warmup: int) -> dict:
    """Seconds per denoising step of moldiff.sampling.iter_chain (the path generate_batches runs)."""
    gen = trainer.generator
    dev = trainer.device
    fc = gen.config.features
    template, graph = empty_graph(sizes, fc.h_dim, fc.e_dim, dev)
    net = gen.network
    net.eval()
    times = {vname(v): [] for v in variants}
    cpu = {vname(v): [] for v in variants}
    peaks, flops = {}, {}
    iters = {}
    for v in variants:
        g = torch.Generator(device=dev).manual_seed(0)
        iters[vname(v)] = iter_chain(net, gen.chain, template, graph, steps=steps, generator=g)
    with torch.no_grad():
        for r in range(steps - 1):
            for v in variants:
                with Variant(trainer, v) as var, var.autocast():
                    timed_step(lambda: next(iters[vname(v)]), dev, vname(v), r, warmup, times, cpu, peaks)
        for v in variants:
            with Variant(trainer, v) as var, var.autocast():
                t = torch.full((graph.num_graphs,), 0.5, device=dev)
                flops[vname(v)] = count_flops(lambda: net(template, t, graph))
    T = gen.chain.T
    return {"molecules": len(sizes), "atoms": int(sum(sizes)), "pairs": int(graph.pair_index.shape[1]),
            "seconds_per_step": {k: summary(t) for k, t in times.items()},
            "cpu_seconds_per_step": {k: summary(t) for k, t in cpu.items()},
            "molecules_per_s": {k: len(sizes) / (statistics.median(t) * T) for k, t in times.items()},
            "molecules_per_s_note": f"molecules / (median step time × {T} steps); excludes RDKit decoding",
            "peak_memory_bytes": peaks, "flops_per_step": flops}


def allocator_ab(args) -> dict:
    """Sampler step time with and without tune_allocator, in alternating subprocesses."""
    res = {"tuned": [], "default": []}
    for r in range(args.allocator_rounds):
        for mode in ("default", "tuned"):
            env = dict(os.environ, MOLDIFF_TUNE_ALLOCATOR="1" if mode == "tuned" else "0")
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "r.json"
                cmd = [sys.executable, __file__, "--device", args.device,
                       "--variants", args.allocator_variant, "--only", "sample19", "--sample-steps", "8",
                       "--json", str(out)] + (["--threads", str(args.threads)] if args.threads else [])
                cmd += (["--preset", args.preset] if args.preset else []) + (["--config", args.config]
                                                                              if args.config else [])
                subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
                blob = json.loads(out.read_text())
                res[mode].append(blob["sample_100x19"]["seconds_per_step"][args.allocator_variant]["median"])
    return {"variant": args.allocator_variant, "seconds_per_step_tuned": summary(res["tuned"]),
            "seconds_per_step_default": summary(res["default"]),
            "ratio_default_over_tuned": statistics.median(res["default"]) / statistics.median(res["tuned"])}


# ----- main ----------------------------------------------------------------------------------------
def add_efficiency(section: dict, peaks: dict) -> None:
    """Achieved matmul FLOP/s and its fraction of the measured GEMM peak of the variant's dtype."""
    section["achieved_flops_per_s"] = {}
    section["fraction_of_matmul_peak"] = {}
    for k, s in section["seconds_per_step"].items():
        fl = section["flops_per_step"].get(k)
        if not fl:
            continue
        rate = fl / s["median"]
        section["achieved_flops_per_s"][k] = rate
        parts = k.split(":")
        section["fraction_of_matmul_peak"][k] = rate / peaks[parts[1] if len(parts) < 3 else f"{parts[1]}:{parts[2]}"]


def add_ratios(section: dict, base: str) -> None:
    sp = section["seconds_per_step"]
    if base not in sp:
        base = next(iter(sp))
    section["speedup_vs_" + base.replace(":", "_")] = {k: sp[base]["median"] / v["median"] for k, v in sp.items()}
    cp = section["cpu_seconds_per_step"]
    section["cpu_time_speedup_vs_" + base.replace(":", "_")] = {k: cp[base]["median"] / v["median"]
                                                                for k, v in cp.items()}


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, threads=True, json=None)
    ap.add_argument("--preset", default=None, help="named configuration (default edm, or the one --config names)")
    ap.add_argument("--config", default=None, help="TOML file overriding the preset, as for moldiff train")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64, help="training batch (molecules)")
    ap.add_argument("--max-batch", type=int, default=None, help="largest batch tried by the sweep "
                    "(default 256 on CPU, 4096 on CUDA; 0 skips the sweep)")
    ap.add_argument("--largest-variants", default=None, help="variants of the batch sweep (default: the last one)")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per variant and measurement")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--bf16", action="store_true", help="shorthand: the measured variant uses bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="shorthand: the measured variant uses torch.compile")
    ap.add_argument("--variants", default=None, help="comma list of kernel:dtype, first = baseline; "
                    "default: reference:fp32 and the variant chosen by --bf16/--compile (fast:fp32 otherwise)")
    ap.add_argument("--sample-molecules", type=int, default=100)
    ap.add_argument("--sample-steps", type=int, default=None,
                    help="denoising steps run per variant (default 2 × repeats + warmup + 1)")
    ap.add_argument("--only", default="train,largest,sample,sample19",
                    help="comma list of parts: train, largest, sample, sample19")
    ap.add_argument("--allocator-ab", action="store_true", help="also A/B tune_allocator in subprocesses")
    ap.add_argument("--allocator-rounds", type=int, default=3)
    ap.add_argument("--allocator-variant", default="fast:fp32")
    ap.add_argument("--gemm-size", type=int, default=2048)
    args = ap.parse_args(argv)

    set_threads(args.threads)
    device = torch.device(args.device)
    main_variant = ("compiled" if args.compile else "fast", "bf16" if args.bf16 else "fp32")
    variants = parse_variants(args.variants) if args.variants else [("reference", "fp32"), main_variant]
    base = vname(variants[0])
    parts = set(args.only.split(","))
    max_batch = args.max_batch if args.max_batch is not None else (4096 if device.type == "cuda" else 256)
    steps = args.sample_steps or (2 * args.repeats + args.warmup + 1)

    cfg = load_config(args.preset, args.config) if args.config else load_config(args.preset or "edm")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, num_threads=args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run", device=args.device, progress=False)
    n_params = sum(p.numel() for p in trainer.net.parameters())
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"preset {cfg.preset}: {n_params / 1e6:.2f} M parameters, {torch.get_num_threads()} threads, "
          f"variants {[vname(v) for v in variants]}, load average {load}", flush=True)

    # GEMM peaks per dtype and per thread count used by a variant ("fp32", "bf16" = the process's threads)
    thread_counts = sorted({v[2] for v in variants if len(v) > 2} - {torch.get_num_threads()})
    peaks: dict[str, list[float]] = {}

    def measure_peaks():
        base_threads = torch.get_num_threads()
        for th in [None] + thread_counts:
            if th:
                torch.set_num_threads(th)
            for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                key = name if th is None else f"{name}:{th}"
                peaks.setdefault(key, []).append(matmul_peak(device, dt, args.gemm_size))
            torch.set_num_threads(base_threads)

    info = machine_info(device)  # at the start: the load and threads the measurement began with
    measure_peaks()
    out: dict = {
        "preset": cfg.preset, "device": str(device), "parameters": n_params, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "variants": [vname(v) for v in variants],
        "baseline": base, "repeats": args.repeats, "warmup": args.warmup,
        "allocator_tuned": os.environ.get("MOLDIFF_TUNE_ALLOCATOR", "1") != "0",
        "load_average_start": load, "command": command_line(argv),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    if "train" in parts:
        print(f"training, batch {args.batch} ...", flush=True)
        out["train"] = bench_train(trainer, variants, args.batch, args.repeats, args.warmup)
    if "largest" in parts and max_batch > args.batch:
        print("largest batch sweep ...", flush=True)
        sweep = parse_variants(args.largest_variants) if args.largest_variants else variants[-1:]
        out["train_largest"] = largest_batch(trainer, sweep, args.batch, max_batch, max(2, args.repeats // 2))
        out["train_largest_variants"] = [vname(v) for v in sweep]
    if "sample" in parts:
        g = torch.Generator().manual_seed(0)
        sizes = [draw_size(trainer.stats.n_atoms_hist, molecule_seed(0, k)) for k in range(args.sample_molecules)]
        print(f"sampling, {args.sample_molecules} molecules from p(N) ({sum(sizes)} atoms) ...", flush=True)
        out["sample_pN"] = bench_sample(trainer, variants, sizes, steps, args.warmup)
    if "sample19" in parts:
        print("sampling, 100 × 19 atoms ...", flush=True)
        out["sample_100x19"] = bench_sample(trainer, variants, [19] * 100, steps, args.warmup)
    measure_peaks()
    out["matmul_peak_flops_per_s"] = {k: max(v) for k, v in peaks.items()}
    out["matmul_peak_all"] = peaks
    out["matmul_peak_gemm"] = f"{args.gemm_size}^3 torch.mm, median of 5, best of before/after"
    for key in ("train", "train_largest", "sample_pN", "sample_100x19"):
        if out.get(key):
            add_efficiency(out[key], out["matmul_peak_flops_per_s"])
            add_ratios(out[key], base)
    out["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.allocator_ab:
        print("allocator A/B (subprocesses) ...", flush=True)
        out["allocator_ab"] = allocator_ab(args)

    for key in ("train", "train_largest", "sample_pN", "sample_100x19"):
        sec = out.get(key)
        if not sec:
            continue
        print(f"{key}:" + (f" (batch {sec['batch_molecules']})" if "batch_molecules" in sec else ""))
        base = vname(variants[0]) if vname(variants[0]) in sec["seconds_per_step"] else next(iter(sec["seconds_per_step"]))
        for k, s in sec["seconds_per_step"].items():
            frac = sec["fraction_of_matmul_peak"].get(k)
            c = sec["cpu_seconds_per_step"][k]["median"]
            print(f"  {k:16s} median {s['median']:.3f} s  [{s['min']:.3f}, {s['max']:.3f}]  "
                  f"x{sec['speedup_vs_' + base.replace(':', '_')][k]:.2f} vs {base}  "
                  f"{(frac or 0) * 100:.0f}% of {k.split(':')[1]} matmul peak;  CPU {c:.3f} s "
                  f"x{sec['cpu_time_speedup_vs_' + base.replace(':', '_')][k]:.2f}")
    print("matmul peak GFLOP/s:", {k: round(v / 1e9, 1) for k, v in out["matmul_peak_flops_per_s"].items()})
    if "allocator_ab" in out:
        print("allocator: default/tuned step time ratio", round(out["allocator_ab"]["ratio_default_over_tuned"], 2))
    if args.json:
        write_json(args.json, out, indent=2, info=info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
