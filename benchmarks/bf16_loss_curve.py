"""Training loss, bf16 autocast vs fp32, from the same initial weights on the same real QM9 batches and noise.

    python benchmarks/bf16_loss_curve.py --steps 300 --seeds 0,1,2,3,4 --threads 1 \
        --json benchmarks/results/bf16_loss_curve.json --plot benchmarks/results/bf16_loss_curve.png

For every seed, three moldiff Trainers are built with that seed, so they start from identical weights and draw
identical t, noise and rotations at every step (the step generator is a function of the seed and step), and
they are stepped alternately on the same batches:

- ``fp32``: the default;
- ``bf16``: ``TrainConfig.bf16`` (autocast);
- ``control``: fp32 again, its initial weights perturbed by a relative 1e-4 — how far two runs drift apart
  from any rounding change alone.

Per seed it reports the mean training loss over the last third of the steps and the EMA network's validation
loss (fp32 evaluation) of each run, and their relative gaps to ``fp32``; over the seeds, the mean and standard
deviation of the bf16 gap and of the control gap. bf16 leaves the loss curve unchanged when its gap is of the
size of the control's.
"""
from __future__ import annotations

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

from common import command_line, machine_info, parser, save_figure, write_json

RUNS = ("fp32", "bf16", "control")


def running_mean(xs: list[float], w: int) -> list[float]:
    return [statistics.fmean(xs[max(0, k - w + 1):k + 1]) for k in range(len(xs))]


def spread(xs: list[float]) -> dict:
    return {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0, "values": xs}


def one_seed(cfg, seed: int, steps: int, window: int) -> dict:
    """Train the three runs of one seed side by side; returns their curves and end-points."""
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
    trainers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in RUNS:
            c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, bf16=name == "bf16"))
            trainers[name] = Trainer(c, Path(tmp) / name, device="cpu", progress=False)
    ref = trainers["fp32"].net.state_dict()
    for name in RUNS[1:]:
        other = trainers[name].net.state_dict()
        assert all(torch.equal(ref[k], other[k]) for k in ref), "the runs must start from the same weights"
    control = trainers["control"]
    g = torch.Generator().manual_seed(99 + seed)
    with torch.no_grad():
        for p_ in control.net.parameters():
            p_.mul_(1 + 1e-4 * torch.randn(p_.shape, generator=g))
        control.ema.model.load_state_dict(control.net.state_dict())
    batches = trainers["fp32"].epoch_batches(0)
    losses = {k: [] for k in RUNS}
    times = {k: [] for k in RUNS}
    for step in range(steps):
        batch = trainers["fp32"].collate(batches[step % len(batches)])
        for name, tr in trainers.items():
            t0 = time.perf_counter()
            losses[name].append(tr.train_step(batch))
            times[name].append(time.perf_counter() - t0)
        if step % 50 == 0 or step == steps - 1:
            print(f"seed {seed} step {step}: " + "  ".join(f"{k} {v[-1]:.4f}" for k, v in losses.items()),
                  flush=True)
    tail = steps // 3
    last = {k: statistics.fmean(v[-tail:]) for k, v in losses.items()}
    val = {k: tr.validation_loss() for k, tr in trainers.items()}
    run = {k: running_mean(v, window) for k, v in losses.items()}
    return {
        "seed": seed,
        "loss": losses,
        "relative_gap_running_mean": {k: [(run[k][s] - run["fp32"][s]) / run["fp32"][s] for s in range(steps)]
                                      for k in RUNS[1:]},
        "mean_loss_last_third": last,
        "validation_loss_ema_fp32_eval": val,
        "gap_last_third": {k: (last[k] - last["fp32"]) / last["fp32"] for k in RUNS[1:]},
        "gap_validation": {k: (val[k] - val["fp32"]) / val["fp32"] for k in RUNS[1:]},
        "seconds_per_step_median": {k: statistics.median(v) for k, v in times.items()},
    }


def plot(path: str, per_seed: list[dict], title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    first = per_seed[0]
    for k, colour in zip(RUNS, ("C0", "C3", "0.5")):
        a.plot(running_mean(first["loss"][k], 25), color=colour, label=k)
    a.set_xlabel("step")
    a.set_ylabel("training loss, running mean of 25")
    a.set_yscale("log")
    a.set_title(f"seed {first['seed']}")
    a.legend()
    for s in per_seed:
        for k, colour in zip(RUNS[1:], ("C3", "0.5")):
            b.plot([100 * v for v in s["relative_gap_running_mean"][k]], color=colour, lw=0.9,
                   label=f"{k} − fp32" if s is first else None)
    b.axhline(0, color="k", lw=0.5)
    b.set_ylim(-15, 15)
    b.set_xlabel("step")
    b.set_ylabel("relative gap to fp32 (%)")
    b.set_title(f"{len(per_seed)} seeds")
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, threads=True, json=None)
    ap.add_argument("--preset", default="edm")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2,3,4")
    ap.add_argument("--window", type=int, default=25)
    ap.add_argument("--plot", type=Path, default=None, help="PNG of seed 0's curves and every seed's gap")
    args = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        print(f"error: --seeds must be comma-separated integers, got {args.seeds!r}", file=sys.stderr)
        return 2
    if not seeds or args.steps < 3:
        print("error: need at least one seed and 3 steps", file=sys.stderr)
        return 2

    cfg = load_config(args.preset)
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, hidden=args.hidden, layers=args.layers),
        train=dataclasses.replace(cfg.train, batch_size=args.batch, lr=args.lr, warmup_steps=20, ema_decay=0.999,
                                  num_threads=args.threads, val_molecules=256))
    info = machine_info()
    per_seed = []
    for seed in seeds:
        per_seed.append(one_seed(cfg, seed, args.steps, args.window))
        summary = {f"{metric}:{k}": spread([s[metric][k] for s in per_seed])
                   for metric in ("gap_last_third", "gap_validation") for k in RUNS[1:]}
        out = {
            "config": {"preset": args.preset, "hidden": args.hidden, "layers": args.layers, "batch": args.batch,
                       "lr": args.lr, "steps": args.steps, "window": args.window, "seeds": seeds[:len(per_seed)],
                       "threads": torch.get_num_threads()},
            "summary": summary,
            "per_seed": per_seed,
            "command": command_line(argv, "bf16_loss_curve.py"),
        }
        if args.json:  # rewritten after every seed, so a long run keeps what it has measured
            write_json(args.json, out, info=info)
    print(json.dumps({k: {"mean": v["mean"], "sd": v["sd"]} for k, v in summary.items()}, indent=1))
    for s in per_seed:
        print(f"seed {s['seed']}: last third {s['mean_loss_last_third']}, validation "
              f"{s['validation_loss_ema_fp32_eval']}, s/step {s['seconds_per_step_median']}")
    if args.plot:
        plot(args.plot, per_seed, f"EGNN {args.layers}×{args.hidden}, batch {args.batch}, real QM9: bf16 vs fp32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
