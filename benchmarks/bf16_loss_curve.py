"""Training loss, bf16 autocast vs fp32, from the same initial weights on the same real QM9 batches and noise.

    python benchmarks/bf16_loss_curve.py --steps 300 --json benchmarks/results/bf16_loss_curve.json

Two moldiff Trainers (TrainConfig.bf16 False / True) are built with the same seed, so they start from identical
weights and draw identical t, noise and rotations at every step (the step generator is a function of the step);
they are stepped alternately on the same batches. Reports both loss curves, their running means and the
relative gap of the running means, plus the validation loss of both at the end (fp32 evaluation).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from moldiff.config import load_config
from moldiff.train import Trainer


def running_mean(xs: list[float], w: int) -> list[float]:
    return [statistics.fmean(xs[max(0, k - w + 1):k + 1]) for k in range(len(xs))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="edm")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--window", type=int, default=25)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--control", action="store_true",
                    help="control run: the second run is fp32 too, its initial weights perturbed by a relative 1e-4 "
                         "(the size of the trajectory divergence that any rounding change causes)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", default=None)
    args = ap.parse_args(argv)

    cfg = load_config(args.preset)
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, hidden=args.hidden, layers=args.layers),
        train=dataclasses.replace(cfg.train, batch_size=args.batch, lr=args.lr, warmup_steps=20, ema_decay=0.999,
                                  num_threads=args.threads, val_molecules=256))
    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("fp32", "bf16"):
            c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, bf16=name == "bf16"))
            trainers[name] = Trainer(c, Path(tmp) / name, device="cpu", progress=False)
    a, b = (trainers[k].net.state_dict() for k in ("fp32", "bf16"))
    assert all(torch.equal(a[k], b[k]) for k in a), "the two runs must start from the same weights"
    if args.control:  # "bf16" is then an fp32 run from weights perturbed at the 1e-4 level
        tr = trainers["bf16"]
        tr.cfg = dataclasses.replace(tr.cfg, train=dataclasses.replace(tr.cfg.train, bf16=False))
        g = torch.Generator().manual_seed(99)
        with torch.no_grad():
            for p_ in tr.net.parameters():
                p_.mul_(1 + 1e-4 * torch.randn(p_.shape, generator=g))
            tr.ema.model.load_state_dict(tr.net.state_dict())
    batches = trainers["fp32"].epoch_batches(0)
    losses = {k: [] for k in trainers}
    times = {k: [] for k in trainers}
    for step in range(args.steps):
        batch = trainers["fp32"].collate(batches[step % len(batches)])
        for name, tr in trainers.items():
            t0 = time.perf_counter()
            losses[name].append(tr.train_step(batch))
            times[name].append(time.perf_counter() - t0)
        if step % 25 == 0 or step == args.steps - 1:
            print(f"step {step}: fp32 {losses['fp32'][-1]:.4f}  bf16 {losses['bf16'][-1]:.4f}", flush=True)
    run = {k: running_mean(v, args.window) for k, v in losses.items()}
    gap = [(run["bf16"][k] - run["fp32"][k]) / run["fp32"][k] for k in range(args.steps)]
    val = {k: tr.validation_loss() for k, tr in trainers.items()}
    tail = args.steps // 3
    out = {
        "control": args.control,
        "config": {"preset": args.preset, "hidden": args.hidden, "layers": args.layers, "batch": args.batch,
                   "lr": args.lr, "steps": args.steps, "window": args.window, "threads": torch.get_num_threads()},
        "loss": losses, "running_mean": run, "relative_gap_running_mean": gap,
        "final_running_mean": {k: v[-1] for k, v in run.items()},
        "mean_loss_last_third": {k: statistics.fmean(v[-tail:]) for k, v in losses.items()},
        "max_abs_relative_gap_after_warmup": max(abs(g) for g in gap[args.window:]),
        "validation_loss_ema_fp32_eval": val,
        "seconds_per_step_median": {k: statistics.median(v) for k, v in times.items()},
    }
    print(json.dumps({k: out[k] for k in ("final_running_mean", "mean_loss_last_third",
                                          "max_abs_relative_gap_after_warmup", "validation_loss_ema_fp32_eval",
                                          "seconds_per_step_median")}, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for k in ("fp32", "bf16"):
            label = "fp32, weights × (1 + 1e-4 ε)" if args.control and k == "bf16" else k
            ax.plot(losses[k], alpha=0.25, lw=0.8)
            ax.plot(run[k], label=f"{label} (running mean {args.window})")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (L_simple)")
        ax.set_yscale("log")
        ax.legend()
        ax.set_title(f"EGNN {args.layers}×{args.hidden}, batch {args.batch}, real QM9"
                     + (" (control: fp32 vs perturbed fp32)" if args.control else ""))
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
