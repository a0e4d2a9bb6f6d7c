"""Where the strain of generated geometries sits: the MMFF94 energy drop on relaxation split over the force
field's terms (bond stretch, angle bend, stretch–bend, out-of-plane, torsion, van der Waals, electrostatics),
for samples of a QM9 model and for QM9's own DFT geometries; and, reported apart, what the ``--relax mmff``
polish gives under PoseBusters.

    python benchmarks/strain_terms.py -n 300 --steps 20 --threads 1 --posebusters 60 1:1 0:0.3 0:0.3+30 \\
        --json benchmarks/results/strain_terms.json

Each positional argument is SCALE:FROM[+R] (``--noise-scale SCALE --noise-scale-from FROM``, and ``--refine R``;
1:1 is the chain itself). The protocol is :mod:`moldiff.chem.geometry`'s: hydrogens (placed by RDKit for the implicit-H model)
are relaxed first with the heavy atoms fixed, then everything; the drop of each term is its energy before minus
after. Medians are taken term by term, so they do not add up to the median strain; the means do.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from moldiff.api import load, load_pretrained
from moldiff.chem.geometry import MMFF_TERMS, strain_terms
from moldiff.chem.relax import relax
from moldiff.diffusion.grids import default_sampler
from moldiff.sampling import generate

from common import RESULTS, command_line, machine_info, parser, set_threads, write_json, write_text
from noise_scale import parse_config, qm9_reference_mols

COLUMNS = (*MMFF_TERMS, "total")


def term_summary(mols: list) -> dict:
    """Median and mean drop per term over the molecules MMFF94 can judge."""
    rows = [r for r in (strain_terms(m) for m in mols) if r is not None]
    out: dict = {"molecules": len(mols), "judged": len(rows)}
    for key in COLUMNS:
        values = np.array([r[key] for r in rows])
        out[key] = {"median": float(np.median(values)), "mean": float(values.mean())} if rows else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, threads=True, seed=0, json=RESULTS / "strain_terms.json")
    ap.add_argument("configs", nargs="+", metavar="SCALE:FROM[+R]")
    ap.add_argument("--checkpoint", help="checkpoint file (default: the shipped 'qm9' model)")
    ap.add_argument("-n", type=int, default=300, help="samples per configuration (those that sanitise are judged)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reference", type=int, default=300, help="QM9 test molecules judged")
    ap.add_argument("--posebusters", type=int, default=0,
                    help="also PoseBusters on this many valid samples of the first configuration, as generated "
                         "and after --relax mmff (0: skip)")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    info = machine_info()
    gen = load(args.checkpoint) if args.checkpoint else load_pretrained("qm9")
    rows = []
    first_valid: list = []
    for config in args.configs:
        steps, scale, start, refine = parse_config(config, args.steps)
        solver, spacing = default_sampler(steps, gen.chain.T)
        mols = generate(gen, args.n, steps=steps, seed=args.seed, spacing=spacing,
                        solver=None if solver == "ancestral" else solver, noise_scale=scale, noise_scale_from=start,
                        refine=refine, progress=sys.stderr.isatty())
        valid = [m for m in mols if m.GetIntProp("moldiff_valid")]
        first_valid = first_valid or valid
        rows.append({"config": config, "n": args.n, **term_summary(valid)})
        print(config, {k: round(rows[-1][k]["median"], 2) for k in COLUMNS if rows[-1][k]}, flush=True)
    reference = {"config": "QM9 (DFT geometries)", **term_summary(qm9_reference_mols(args.reference))}
    solver, spacing = default_sampler(args.steps, gen.chain.T)
    result = {"model": gen.info, "steps": args.steps, "solver": solver, "spacing": spacing, "seed": args.seed,
              "threads": torch.get_num_threads(), "runs": rows, "qm9": reference,
              "command": command_line(argv, "strain_terms.py")}
    if args.posebusters:
        from moldiff.chem.posebusters import posebusters_summary

        chosen = first_valid[:args.posebusters]
        result["polish"] = {"config": args.configs[0], "molecules": len(chosen),
                            "posebusters_generated": posebusters_summary(chosen),
                            "posebusters_relaxed": posebusters_summary(relax(chosen, "mmff")),
                            "posebusters_qm9": posebusters_summary(qm9_reference_mols(args.posebusters))}
    write_json(args.json, result, info=info)
    write_text(args.json.with_suffix(".md"), markdown(result))
    return 0


def markdown(result: dict) -> str:
    rows = [*result["runs"], result["qm9"]]
    lines = [f"# Strain by MMFF94 term ({result['steps']} evaluations, {result['solver']}, {result['spacing']})", "",
             f"`{result['command']}` — seed {result['seed']}, {result['threads']} thread(s). Energy drop on "
             "relaxation per term, kcal/mol, median (mean) over the molecules judged; hydrogens placed by RDKit "
             "for the samples, relaxed first for all.", "",
             "| term | " + " | ".join(r["config"] for r in rows) + " |", "|---|" + "---|" * len(rows)]
    for key in COLUMNS:
        cells = [f"{r[key]['median']:.2f} ({r[key]['mean']:.2f})" if r[key] else "–" for r in rows]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines.append("| judged | " + " | ".join(f"{r['judged']}/{r['molecules']}" for r in rows) + " |")
    if "polish" in result:
        p = result["polish"]

        def rate(s):
            return f"{100 * s['all_pass']:.1f} %" if s.get("all_pass") is not None else "–"
        lines += ["", f"PoseBusters, all checks pass ({p['molecules']} valid samples of {p['config']}; reported apart, "
                  "the polish is off by default): as generated "
                  f"{rate(p['posebusters_generated'])}, after `--relax mmff` {rate(p['posebusters_relaxed'])}, "
                  f"QM9's DFT geometries {rate(p['posebusters_qm9'])}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
