"""The training campaign's quality against training hours: PNG plot + the data behind it.

    python benchmarks/plot_campaign.py                 # every run under data/campaign/
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from moldiff.io_utils import atomic_path, atomic_write_text  # noqa: E402

SERIES = [("mol_stable", "molecule stability (protocol)"), ("valid", "validity (protocol)"),
          ("own_mol_stable", "molecule stability (own bonds)"), ("own_valid", "validity (own bonds)"),
          ("atom_stable", "atom stability (protocol)")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, nargs="*", default=sorted(Path("data/campaign").glob("*/metrics.jsonl")))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/campaign_curve.png"))
    args = ap.parse_args()
    data = {}
    for path in args.runs:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        data[path.parent.name] = [r for r in rows if "samples" in r]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for run, rows in data.items():
        hours = [r["hours"] for r in rows]
        for key, label in SERIES:
            if any(key in r for r in rows):
                style = "-" if "own" in key else "--"
                axes[0 if "stab" in label and "atom" not in label else 1].plot(
                    hours, [100 * r.get(key, float("nan")) for r in rows], style, marker="o", label=f"{run}: {label}")
    for ax, title in zip(axes, ["molecule stability", "validity / atom stability"]):
        ax.set_xlabel("training hours (wall clock, this machine)")
        ax.set_ylabel("%")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
