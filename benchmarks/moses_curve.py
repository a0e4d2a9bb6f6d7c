"""The drug-like campaign's metrics against CPU-hours and GPU-minutes, beside issue 13's targets, and what the
trend projects: PNG + JSON.

    python benchmarks/moses_curve.py --metrics data/campaign/moses/metrics.jsonl \\
        data/campaign/moses-cool/metrics.jsonl --benchmarks benchmarks/results/moses.json \\
        benchmarks/results/moses_step23893_4000.json benchmarks/results/moses_step39368_1000.json \\
        benchmarks/results/moses_step54689_1000.json benchmarks/results/moses_cool_step60327_1000.json \\
        benchmarks/results/moses_cool_step64500_1000.json benchmarks/results/moses_cool_step72000_1000.json

Two kinds of points. (1) The runs' own scoring during training (``metrics.jsonl`` of the constant-rate trunk and
of each branch that continues it, e.g. a cool-down, drawn as separate lines: 100 molecules, 100 uniform steps,
every quarter epoch): validity with the model's own bonds (what MOSES judges),
the one-fragment share, and the validation loss. (2) Full benchmarks of EMA weights (``benchmarks/moses.py``
JSONs): validity, FCD/Test, PoseBusters all-checks pass and MMFF strain median. A benchmark is placed at the
CPU-hours of its step, interpolated between the training rows.

The projection fits validity = a + b · log(CPU-hours) to the in-training points of the second half of the run
of the first (trunk) metrics file (the early points are still in the fast phase) and solves it for the 95 %
target. It is a trend on a noisy
100-molecule score, not a promise; the JSON keeps the fit so that anyone can judge it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common import RESULTS, command_line, parser, read_jsonl, save_figure, write_json  # noqa: E402

TARGETS = {"valid": 0.95, "FCD/Test": 1.0, "posebusters": 0.85, "strain_median": 5.0}


def benchmark_point(path: Path, rows: list[dict]) -> dict:
    """One full benchmark's figures, placed at the CPU-hours of its training step."""
    blob = json.loads(path.read_text())
    step = blob["model"]["step"]
    steps = [r["step"] for r in rows]
    cpu = [r["cpu_hours"] for r in rows]
    if step <= steps[-1]:
        cpu_hours = float(np.interp(step, steps, cpu))
    else:  # a checkpoint written after the last scored row: the run's last rate of CPU-hours per step
        cpu_hours = cpu[-1] + (step - steps[-1]) * (cpu[-1] - cpu[-2]) / (steps[-1] - steps[-2])
    row = min(rows, key=lambda r: abs(r["step"] - step))
    bust = blob.get("posebusters", {}).get("generated", {})
    geo = blob.get("geometry", {}).get("generated", {})
    return {"file": str(path), "step": step, "cpu_hours": round(cpu_hours, 3), "gpu_minutes": 60 * row.get("gpu_hours", 0.0),
            "n": blob["n"], "steps": blob["steps"], "spacing": blob["spacing"], "solver": blob.get("solver", "ancestral"),
            "valid": blob["moses_metrics"].get("valid"), "FCD/Test": blob["moses_metrics"].get("FCD/Test"),
            "unique@10000": blob["moses_metrics"].get("unique@10000"), "Novelty": blob["moses_metrics"].get("Novelty"),
            "connected_valid": blob.get("connected_valid"), "posebusters": bust.get("all_pass"),
            "posebusters_n": bust.get("molecules"), "strain_median": geo.get("strain_median")}


def projection(rows: list[dict], target: float) -> dict:
    """Least-squares fit of own-bond validity on log CPU-hours over the second half of the rows, solved for target."""
    half = rows[len(rows) // 2:]
    x = np.log([r["cpu_hours"] for r in half])
    y = np.array([r["own_valid"] for r in half])
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    fit = {"points": len(half), "from_cpu_hours": half[0]["cpu_hours"], "to_cpu_hours": half[-1]["cpu_hours"],
           "intercept": a, "slope_per_log_hour": b, "residual_sd": float(resid.std(ddof=2)),
           "gain_per_doubling": b * math.log(2)}
    fit["cpu_hours_for_target"] = math.exp((target - a) / b) if b > 0 else None
    return fit


def main() -> None:
    ap = parser(__doc__, out=RESULTS / "moses_curve.png")
    ap.add_argument("--metrics", type=Path, nargs="+", default=[Path("data/campaign/moses/metrics.jsonl")],
                    help="the trunk's metrics.jsonl, then those of branches that continue it")
    ap.add_argument("--benchmarks", type=Path, nargs="*", default=[])
    args = ap.parse_args()
    runs, last = [], -1
    for p in args.metrics:  # a branch's log starts with a copy of its parent's rows: keep only its own
        rs = [r for r in read_jsonl(p) if "own_valid" in r and r["step"] > last]
        runs.append((p.parent.name, rs))
        last = max(last, rs[-1]["step"])
    trunk = runs[0][1]
    rows = [r for _, rs in runs for r in rs]
    points = sorted((benchmark_point(p, rows) for p in args.benchmarks), key=lambda p: p["step"])
    fit = projection(trunk, TARGETS["valid"])

    fig, grid = plt.subplots(2, 3, figsize=(16, 8.5))
    ax = grid[0, 0]
    for name, rs in runs:
        hours = [r["cpu_hours"] for r in rs]
        ax.plot(hours, [100 * r["own_valid"] for r in rs], "o-", ms=3, label=f"{name}: validity, in training (100)")
        ax.plot(hours, [100 * r["connected_valid"] for r in rs], "s--", ms=3,
                label=f"{name}: valid and one fragment, protocol bonds (100)")
    if points:
        ax.plot([p["cpu_hours"] for p in points], [100 * p["valid"] for p in points], "D", ms=8, color="k",
                label="validity, benchmark (molsets)")
    xs = np.linspace(fit["from_cpu_hours"], trunk[-1]["cpu_hours"] * 4, 50)
    ax.plot(xs, 100 * (fit["intercept"] + fit["slope_per_log_hour"] * np.log(xs)), ":", color="gray",
            label=f"log-linear trend ({runs[0][0]}, second half)")
    ax.axhline(100 * TARGETS["valid"], color="r", lw=0.8, label="target 95 %")
    ax.set(xscale="log", xlabel="CPU-hours (GPU-minutes: 0)", ylabel="%", title="validity")
    ax.legend(fontsize=7)
    ax = grid[0, 1]
    for name, rs in runs:
        ax.plot([r["cpu_hours"] for r in rs], [r["val_loss"] for r in rs], "o-", ms=3, label=name)
    ax.set(xscale="log", xlabel="CPU-hours", ylabel="validation loss", title="validation loss")
    ax.legend(fontsize=7)
    for ax, key, title, scale in ((grid[1, 0], "FCD/Test", "FCD/Test (benchmark)", "log"),
                                  (grid[1, 1], "posebusters", "PoseBusters all pass (benchmark, %)", "linear"),
                                  (grid[1, 2], "strain_median", "MMFF94 strain median (benchmark, kcal/mol)", "log")):
        vals = [p[key] for p in points]
        mult = 100 if key == "posebusters" else 1
        ax.plot([p["cpu_hours"] for p in points], [mult * v if v is not None else float("nan") for v in vals],
                "D-", ms=8, color="k")
        ax.axhline(mult * TARGETS[key], color="r", lw=0.8, label=f"target {mult * TARGETS[key]:g}")
        ax.set(xlabel="CPU-hours", title=title, yscale=scale)
        ax.legend(fontsize=7)
    grid[0, 2].axis("off")
    fig.suptitle("moses campaign (preset moses, first 100,000 MOSES molecules, one CPU thread)")
    fig.tight_layout()
    save_figure(fig, args.out)
    write_json(args.out.with_suffix(".json"), {
        "command": command_line(None, "moses_curve.py"), "targets": TARGETS, "validity_trend": fit,
        "benchmarks": points, "training_rows": [{k: r.get(k) for k in ("epoch", "step", "cpu_hours", "gpu_hours", "lr",
                                                   "val_loss", "own_valid", "connected_valid", "valid")} for r in rows]})
    print(json.dumps({"validity_trend": fit, "benchmarks": points}, indent=1))


if __name__ == "__main__":
    main()
