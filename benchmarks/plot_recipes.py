"""Quality against training cost for the runs trained from scratch on the CPU (every run under data/campaign/):
qm9-bonds (bonds and charges in the chain), qm9-nodes (its node-only control), qm9-bonds-noh (bonds, implicit
hydrogens) and its variants. PNG + data (JSON, and every point as a markdown table).

    python benchmarks/plot_recipes.py --costs benchmarks/results/speed_train_qm9-*.json

Each run's rows come from ``data/campaign/<run>/metrics.jsonl`` (500 EMA samples, 100 sampler steps, at every
half or whole epoch), CPU rows only, up to the first segment that changed device or batch (a change of learning
rate on resume stays on the curve and is in each row). A run started from a copy of another run's checkpoint has
a ``branch.json`` (``{"parent": run, "step": step}``): its rows before that step are its parent's. The x axes:
epochs (what the model has seen), and CPU core-hours: training steps × the CPU seconds of one training step of
that preset on one thread (``--costs``: the JSON files of ``python benchmarks/speed.py --preset P [--config F]
--variants fast:fp32:1 --only train``; a run whose config changed the network needs its own), so that runs
trained under different loads compare on one scale (a run's own wall-clock hours depend on what else ran beside
it). Sampling for the evaluations is not counted.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from moldiff.config import PRESETS, load_config  # noqa: E402

from common import RESULTS, parser, read_jsonl, save_figure, write_json, write_text  # noqa: E402

PANELS = [("mol_stable", "molecule stability, distance protocol (%)"),
          ("valid", "validity, distance protocol (%)"),
          ("own_mol_stable", "molecule stability, own bonds + charges (%)"),
          ("connected_valid", "connected and valid, distance protocol (%)")]


def recipe_rows(rows: list[dict]) -> list[dict]:
    """The run's CPU rows on its first device and batch: its first segment and the segments after it that changed
    only the learning rate (``--lr`` on resume) or bf16 (same loss curve); sampled rows only."""
    out: list[dict] = []
    for r in rows:
        if out and any(r.get(k) != out[0].get(k) for k in ("device", "batch_size")):
            break
        out.append(r)
    return [r for r in out if "samples" in r]


def branch_point(run_dir: Path) -> tuple[str, int] | None:
    """(parent run, step) for a run started from a copy of another run's checkpoint (``branch.json``)."""
    path = run_dir / "branch.json"
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    return d["parent"], int(d["step"])


def step_costs(paths: list[Path], variant: str = "fast:fp32:1") -> dict[str, float]:
    """{preset: median CPU seconds per training step} from speed.py JSON files."""
    out = {}
    for path in paths:
        d = json.loads(path.read_text())
        out[d["preset"]] = float(d["train"]["cpu_seconds_per_step"][variant]["median"])
    return out


def markdown_table(series: dict[str, list[dict]]) -> str:
    """Every point of every run as one markdown table (percentages; '—' where a run has no such figure)."""
    head = ["run", "epoch", "core-hours (steps × step cost)", "core-hours (measured, with evaluations)"]
    head += [label.replace(" (%)", " %") for _, label in PANELS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(v, scale=1.0, digits=2):
        return "—" if v is None else f"{scale * v:.{digits}f}"

    for run, rows in series.items():
        for r in rows:
            cells = [run, f"{r['epoch']:g}", fmt(r["cpu_hours_at_step_cost"]), fmt(r.get("cpu_hours"))]
            cells += [fmt(r.get(k), 100.0, 1) for k, _ in PANELS]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, out=RESULTS / "recipe_curves.png")
    ap.add_argument("--campaign", type=Path, default=Path("data/campaign"))
    ap.add_argument("--costs", type=Path, nargs="*", default=[], help="speed.py JSON files (module docstring)")
    args = ap.parse_args(argv)
    costs = step_costs(args.costs)
    series = {}
    for path in sorted(args.campaign.glob("*/metrics.jsonl")):
        run = path.parent.name
        rows = recipe_rows(read_jsonl(path))
        branch = branch_point(path.parent)
        if branch is not None:  # the parent's rows up to the branch point are the parent's; keep the last of them
            before = [r for r in rows if r["step"] <= branch[1]]
            rows = before[-1:] + [r for r in rows if r["step"] > branch[1]]
        config = json.loads((args.campaign / run / "config.json").read_text())
        preset = config.get("preset", run)  # "qm9-bonds-noh+file.toml": that file's step cost, else the preset's
        own_bonds = config.get("features", {}).get("include_bonds", False)  # else "own" bonds are perceived ones
        cost = costs.get(preset)
        base = preset.split("+")[0]
        if cost is None and base in PRESETS and load_config(base).to_dict()["model"] == config.get("model"):
            cost = costs.get(base)  # same network as its preset: the preset's step cost
        series[run] = [{**{k: r.get(k) for k in ("epoch", "step", "hours", "cpu_hours", "threads", "val_loss")},
                        **{k: r.get(k) for k, _ in PANELS if own_bonds or not k.startswith("own")},
                        "cpu_hours_at_step_cost": None if cost is None else r["step"] * cost / 3600.0}
                       for r in rows]
    if not series:
        print(f"no runs under {args.campaign}")
        return 1
    fig, grid = plt.subplots(2, len(PANELS), figsize=(5 * len(PANELS), 8.5))
    for col, (key, label) in enumerate(PANELS):
        for run, rows in series.items():
            pts = [r for r in rows if r.get(key) is not None]
            if not pts:
                continue
            grid[0, col].plot([r["epoch"] for r in pts], [100 * r[key] for r in pts], "-o", ms=3, label=run)
            if all(r["cpu_hours_at_step_cost"] is not None for r in pts):
                grid[1, col].plot([r["cpu_hours_at_step_cost"] for r in pts], [100 * r[key] for r in pts], "-o",
                                  ms=3, label=run)
        grid[0, col].set_title(label, fontsize=10)
        grid[0, col].set_xlabel("epochs of QM9 train (100,000 molecules)")
        grid[1, col].set_xlabel("CPU core-hours (steps × CPU seconds per step, 1 thread), log scale")
        grid[1, col].set_xscale("log")
    for ax in grid.ravel():
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("Recipes from scratch on the 2-core CPU (500 EMA samples, 100 sampler steps per point)")
    fig.tight_layout()
    save_figure(fig, args.out, dpi=100)
    write_json(args.out.with_suffix(".json"), {"costs": costs, "runs": series})
    write_text(args.out.with_suffix(".md"), markdown_table(series))
    print(f"wrote {args.out} and its data as .json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
