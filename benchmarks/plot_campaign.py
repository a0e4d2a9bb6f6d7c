"""The training campaign's quality and validation loss against epochs (with the CPU and GPU hours spent):
PNG plot + the data behind it.

    python benchmarks/plot_campaign.py      # the campaign: qm9-bonds, then qm9-bonds-noh and its cool-downs

(``benchmarks/plot_recipes.py`` draws the runs from scratch and the ablations against CPU-hours.) A run with a
``branch.json`` (``{"parent": run, "step": step}``) started from a copy of its parent's checkpoint: only its rows
after that step are drawn.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import RESULTS, parser, read_jsonl, save_figure, write_json  # noqa: E402

SERIES = [("mol_stable", "molecule stability (protocol)"), ("valid", "validity (protocol)"),
          ("own_mol_stable", "molecule stability (own bonds)"), ("own_valid", "validity (own bonds)"),
          ("atom_stable", "atom stability (protocol)")]


CAMPAIGN = ("qm9-bonds", "qm9-bonds-noh", "qm9-bonds-noh-cooldown", "qm9-bonds-noh-cooldown31")


def main() -> None:
    ap = parser(__doc__, out=RESULTS / "campaign_curve.png")
    ap.add_argument("--runs", type=Path, nargs="*",
                    default=[Path("data/campaign") / run / "metrics.jsonl" for run in CAMPAIGN])
    args = ap.parse_args()
    data, loss = {}, {}
    for path in args.runs:
        rows = read_jsonl(path)
        branch = path.parent / "branch.json"
        if branch.exists():
            start = json.loads(branch.read_text())["step"]
            rows = [r for r in rows if r["step"] > start]
        snaps = path.parent / "snapshot_metrics.jsonl"  # EMA snapshots scored after the fact (GPU segments)
        rows_s = read_jsonl(snaps) if snaps.exists() else []
        data[path.parent.name] = sorted([r for r in rows if "samples" in r] + rows_s, key=lambda r: r["epoch"])
        loss[path.parent.name] = [{k: r.get(k) for k in ("epoch", "step", "hours", "gpu_hours", "device", "val_loss")}
                                  for r in rows]
    fig, grid = plt.subplots(2, 2, figsize=(13, 9))
    axes = grid.ravel()
    for run, rows in data.items():
        epochs = [r["epoch"] for r in rows]
        for key, label in SERIES:
            if any(key in r for r in rows):
                style = "-" if "own" in key else "--"
                axes[0 if "stab" in label and "atom" not in label else 1].plot(
                    epochs, [100 * r.get(key, float("nan")) for r in rows], style, marker="o", label=f"{run}: {label}")
    for run, rows in loss.items():
        for device, marker in (("cpu", "o"), ("cuda", "^")):
            pts = [r for r in rows if str(r["device"]).startswith(device)]
            if pts:
                gpu = rows[-1].get("gpu_hours") or 0.0
                hours = gpu if device == "cuda" else rows[-1]["hours"] - gpu
                axes[2].plot([r["epoch"] for r in pts], [r["val_loss"] for r in pts], marker, ms=4,
                             label=f"{run}, epochs on {device}: {hours:.2f} h in all")
    for run, rows in data.items():  # the same figures against wall-clock training hours, GPU segments shaded
        hours = [r["hours"] for r in rows]
        for key, label in SERIES[:2]:
            axes[3].plot(hours, [100 * r.get(key, float("nan")) for r in rows], "-", marker="o", label=f"{run}: {label}")
        prev = None
        for r in loss[run]:
            if str(r["device"]).startswith("cuda") and prev is not None:
                axes[3].axvspan(prev["hours"], r["hours"], color="orange", alpha=0.3, lw=0)
            prev = r
    axes[3].set_xlabel("training hours, wall clock (2-core CPU; orange: on one H100)")
    for ax, title, ylabel in zip(axes[:3], ["molecule stability (500 EMA samples, 100 steps)",
                                        "validity / atom stability", "validation loss (EMA, 1,000 molecules)"],
                                 ["%", "%", "L_simple"]):
        ax.set_xlabel("epochs of QM9 train (100,000 molecules)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
    axes[3].set_ylabel("%")
    axes[3].set_title("molecule stability and validity (protocol) against hours", fontsize=10)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, args.out, dpi=110)
    write_json(args.out.with_suffix(".json"), {"samples": data, "loss": loss})
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
