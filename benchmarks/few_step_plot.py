"""Quality against network evaluations for each sampler of the shipped QM9 model: a PNG and its data (JSON + a
markdown table), from the JSON files of ``benchmarks/quality.py`` (1,000 molecules, seed 0, one thread).

    for s in "ancestral:10,50,100" "sde-dpm2m:10,15,50,100" "dpm2m:10,20,50,100"; do
      solver=${s%%:*}; steps=${s#*:}; extra=""; [ $solver != ancestral ] && extra="--solver $solver"
      python benchmarks/quality.py -n 1000 --steps $steps --spacing quadratic $extra --threads 1 \\
          --json benchmarks/results/few_step_curve_$solver.json
    done
    python benchmarks/few_step_plot.py --geometry-json benchmarks/results/{refine,refine_le20_short,refine_le20,geometry_table}.json

Every run of every input file is one point, grouped by its sampler (solver and step spacing); the 1,000-step
chain on the same seeds is the dashed line, with the issue's ±1-point band. The optional geometry panel reads
``benchmarks/noise_scale.py`` files (``--geometry-json``): median MMFF94 strain against evaluations (solver steps +
``--refine``), beside QM9's DFT geometries and 1.5 × them.
"""
from __future__ import annotations

import collections
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import RESULTS, parser, save_figure, write_json, write_text  # noqa: E402

CHAIN = RESULTS / "quality_today_1000_seed0.json"  # 1,000 ancestral steps, same seeds
PANELS = [("molecule_stability", "molecule stability (%)"), ("validity", "validity (%)")]


def evaluations(run: dict) -> int:
    """Network evaluations of a quality.py run: the chain's own steps end on one more x̂ evaluation."""
    solver = run["sampler"].split(",")[0]
    return run["steps"] + (1 if solver in ("ancestral", "ddim") else 0)


def points(paths: list[Path]) -> dict[str, list[tuple[int, dict]]]:
    """Sampler name → [(evaluations, figures)], sorted, one point per (sampler, evaluations)."""
    out: dict[str, dict[int, dict]] = collections.defaultdict(dict)
    for path in paths:
        for run in json.loads(path.read_text())["runs"]:
            out[run["sampler"]][evaluations(run)] = run["figures"]
    return {k: sorted(v.items()) for k, v in sorted(out.items())}


def geometry_points(paths: list[Path]) -> tuple[list[tuple[int, float, str]], float | None]:
    """(evaluations, median strain, label: S/config and molecule stability) of noise_scale.py rows, and QM9's
    median strain."""
    rows, ref = {}, None
    for path in paths:  # a configuration in several files: the last file's row
        d = json.loads(path.read_text())
        ref = d["qm9"]["strain"].get("strain_median", ref)
        for r in d["runs"]:
            steps = r.get("steps", d["steps"])
            label = f"{r['config'] if '/' in r['config'] else f'{steps}/' + r['config']} " \
                    f"({100 * r['molecule_stability']:.1f} %)"
            rows[(steps, r["config"].split("/")[-1])] = (steps + r.get("refine", 0), r["strain"]["strain_median"],
                                                         label)
    return sorted(rows.values()), ref


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, json=RESULTS / "few_step_curve.json")
    ap.add_argument("inputs", nargs="*", type=Path, help="quality.py JSON files (default: few_step_*.json)")
    ap.add_argument("--geometry-json", nargs="*", type=Path, default=[], help="noise_scale.py JSON files")
    args = ap.parse_args(argv)
    inputs = args.inputs or [p for p in sorted(RESULTS.glob("few_step_*.json")) if p != args.json]
    curves = points(inputs)
    chain = json.loads(CHAIN.read_text())["runs"][0]["figures"]
    geometry, qm9_strain = geometry_points(args.geometry_json)

    n_panels = len(PANELS) + bool(geometry)
    fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 4.2))
    for ax, (key, label) in zip(axes, PANELS):
        for name, pts in curves.items():
            ax.plot([e for e, _ in pts], [f[key] for _, f in pts], "o-", label=name, ms=4)
        ax.axhline(chain[key], color="k", ls="--", lw=1, label="1,000-step chain")
        ax.axhspan(chain[key] - 1, chain[key] + 1, color="k", alpha=0.08)
        ax.axvline(20, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations")
        ax.set_ylabel(label)
        ax.set_ylim(max(60, min(f[key] for pts in curves.values() for _, f in pts) - 2), 100)
    axes[0].legend(fontsize=7, loc="lower right")
    if geometry:
        ax = axes[-1]
        ax.plot([g[0] for g in geometry], [g[1] for g in geometry], "o", color="C3")
        for e, s, cfg in geometry:
            ax.annotate(cfg, (e, s), fontsize=6, xytext=(3, 3), textcoords="offset points")
        if qm9_strain is not None:
            ax.axhline(qm9_strain, color="k", ls="--", lw=1, label="QM9 DFT geometries")
            ax.axhline(1.5 * qm9_strain, color="k", ls=":", lw=1, label="1.5 × QM9")
        ax.set_xlabel("network evaluations (solver steps + refinement)")
        ax.set_ylabel("MMFF94 strain median (kcal/mol)")
        ax.set_title("label: S/config (molecule stability)", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("Shipped QM9 model: 1,000 molecules per point, seed 0 (hydrogens placed by RDKit)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, args.json.with_suffix(".png"))

    data = {"chain": {k: chain[k] for k, _ in PANELS},
            "curves": {n: [{"evaluations": e, **{k: f[k] for k, _ in PANELS}} for e, f in pts]
                       for n, pts in curves.items()},
            "geometry": [{"evaluations": e, "strain_median": s, "config": c} for e, s, c in geometry],
            "qm9_strain_median": qm9_strain, "inputs": [p.name for p in inputs + args.geometry_json]}
    write_json(args.json, data)
    lines = ["# Quality against network evaluations (shipped QM9 model, 1,000 molecules, seed 0)", "",
             f"1,000-step chain: molecule stability {chain['molecule_stability']:.1f} %, validity "
             f"{chain['validity']:.1f} %. Plot: `{args.json.with_suffix('.png').name}`.", "",
             "| sampler | evaluations | mol. stab. | Δ | validity | Δ |", "|---|---|---|---|---|---|"]
    for name, pts in curves.items():
        for e, f in pts:
            lines.append(f"| {name} | {e} | {f['molecule_stability']:.1f} | "
                         f"{f['molecule_stability'] - chain['molecule_stability']:+.1f} | {f['validity']:.1f} | "
                         f"{f['validity'] - chain['validity']:+.1f} |")
    write_text(args.json.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
