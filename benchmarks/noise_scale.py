"""The coordinate noise scale of the sampler: geometry (MMFF94 strain, PoseBusters) against what it does to the
molecules (stability, validity, diversity, composition), on the shipped QM9 model and the same seeds.

    python benchmarks/noise_scale.py -n 1000 --steps 20 --geometry 300 --threads 1 \\
        1:1 0.3:0.3 0:0.3 0.5:1 --json benchmarks/results/noise_scale.json

Each positional argument is [S/]SCALE:FROM[+R] (S/: S solver steps instead of ``--steps``, with the default
sampler for S; +R: ``--refine R``, R more network evaluations that move the
coordinates to the model's own clean estimate after the chain), i.e. ``moldiff sample --noise-scale SCALE --noise-scale-from FROM``: the
fresh coordinate noise of the reverse steps from t ≤ FROM·T down is multiplied by SCALE (1:1 is the chain itself).
Composition is read from the molecules that sanitise: rings per molecule by size, the share of molecules with an
aromatic ring and of acyclic ones, and the heavy-atom element shares, beside QM9's own (the reference set).
"""
from __future__ import annotations

import collections
import sys
import time

import torch

from moldiff.api import load, load_pretrained
from moldiff.chem.geometry import strain_summary
from moldiff.chem.metrics import evaluate
from moldiff.data.reference_qm9 import load_reference
from moldiff.diffusion.grids import default_sampler
from moldiff.sampling import generate

from common import RESULTS, command_line, machine_info, parser, set_threads, write_json, write_text

KEYS = ("molecule_stability", "validity", "uniqueness", "novelty", "atom_type_tv", "bond_length_w1",
        "bond_angle_w1")


def composition(mols: list) -> dict:
    """Rings per molecule by size, aromatic and acyclic shares, heavy-atom element shares (sanitised ones)."""
    from moldiff.evaluate import _first_judgeable

    valid = [m for m in mols
             if m is not None and not (m.HasProp("moldiff_valid") and not m.GetIntProp("moldiff_valid"))]
    judged = _first_judgeable(valid, len(valid))  # sanitised copies of those with a 3D conformer
    rings, elements = collections.Counter(), collections.Counter()
    for work in judged:
        info = work.GetRingInfo()
        rings.update(min(len(r), 7) for r in info.AtomRings())
        elements.update(a.GetSymbol() for a in work.GetAtoms() if a.GetAtomicNum() > 1)
    n = len(judged)
    aromatic = sum(any(a.GetIsAromatic() for a in w.GetAtoms()) for w in judged)
    acyclic = sum(w.GetRingInfo().NumRings() == 0 for w in judged)
    heavy = max(1, sum(elements.values()))
    return {"molecules": n, "rings_per_molecule": {str(k): rings[k] / max(n, 1) for k in sorted(rings)},
            "aromatic": aromatic / max(n, 1), "acyclic": acyclic / max(n, 1),
            "elements": {k: v / heavy for k, v in sorted(elements.items())}}


def qm9_reference_mols(n: int) -> list:
    """The first ``n`` QM9 test molecules whose bonds RDKit perceives (the evaluate command's reference)."""
    from moldiff.evaluate import _perceived, qm9_sample

    return _perceived([(r.elements, r.pos) for r in qm9_sample("test", n, 0)], n)


def parse_config(config: str, steps: int) -> tuple[int, float, float, int]:
    """[S/]SCALE:FROM[+R] as (solver steps, noise scale, from, refine evaluations); S defaults to ``steps``."""
    head, _, rest = config.rpartition("/")
    noise, _, refine = rest.partition("+")
    scale, start = (float(v) for v in noise.split(":"))
    return int(head or steps), scale, start, int(refine or 0)


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, threads=True, seed=0, json=RESULTS / "noise_scale.json")
    ap.add_argument("configs", nargs="+", metavar="[S/]SCALE:FROM[+R]")
    ap.add_argument("--checkpoint", help="checkpoint file (default: the shipped 'qm9' model)")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--geometry", type=int, default=300, help="molecules judged by MMFF94 (the first that sanitise)")
    ap.add_argument("--posebusters", type=int, default=0, help="molecules judged by PoseBusters (0: skip; slow)")
    ap.add_argument("--xtb", type=int, default=0, help="molecules judged by GFN2-xTB strain (0: skip; slow)")
    ap.add_argument("--batch-size", type=int, default=250)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    info = machine_info()
    gen = load(args.checkpoint) if args.checkpoint else load_pretrained("qm9")
    reference = load_reference("qm9")
    runs = []
    qm9 = qm9_reference_mols(max(args.geometry, args.posebusters, args.xtb))
    ref_row = {"config": "QM9 (DFT geometries, bonds perceived)", "composition": composition(qm9[:args.geometry]),
               "strain": strain_summary(qm9[:args.geometry])}
    for config in args.configs:
        steps, scale, start, refine = parse_config(config, args.steps)
        solver, spacing = default_sampler(steps, gen.chain.T)
        t0 = time.perf_counter()
        mols = generate(gen, args.n, steps=steps, seed=args.seed, batch_size=args.batch_size, spacing=spacing,
                        solver=None if solver == "ancestral" else solver, noise_scale=scale, noise_scale_from=start,
                        refine=refine, progress=sys.stderr.isatty())
        seconds = time.perf_counter() - t0
        report = evaluate(mols, reference)["metrics"]
        judged = [m for m in mols if m.GetIntProp("moldiff_valid")]
        row = {"config": config, "steps": steps, "solver": solver, "spacing": spacing, "noise_scale": scale, "noise_scale_from": start, "refine": refine,
               "n": args.n,
               "sample_seconds": round(seconds, 1), **{k: report[k]["value"] for k in KEYS},
               "composition": composition(mols), "strain": strain_summary(judged[:args.geometry])}
        if args.posebusters:
            from moldiff.chem.posebusters import posebusters_summary
            row["posebusters"] = posebusters_summary(judged[:args.posebusters])
        if args.xtb:
            from moldiff.chem.xtb import xtb_summary
            row["xtb"] = xtb_summary(judged[:args.xtb])
        runs.append(row)
        print({k: row[k] for k in ("config", "sample_seconds", *KEYS)}, row["strain"].get("strain_median"), flush=True)
    if args.posebusters:
        from moldiff.chem.posebusters import posebusters_summary
        ref_row["posebusters"] = posebusters_summary(qm9[:args.posebusters])
    solver, spacing = default_sampler(args.steps, gen.chain.T)
    if args.xtb:
        from moldiff.chem.xtb import xtb_summary
        ref_row["xtb"] = xtb_summary(qm9[:args.xtb])
    result = {"model": gen.info, "implicit_h": gen.config.features.implicit_h, "steps": args.steps, "solver": solver,
              "spacing": spacing, "seed": args.seed,
              "threads": torch.get_num_threads(), "runs": runs, "qm9": ref_row,
              "command": command_line(argv, "noise_scale.py")}
    write_json(args.json, result, info=info)
    write_text(args.json.with_suffix(".md"), markdown(result))
    return 0


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def markdown(result: dict) -> str:
    runs, ref = result["runs"], result["qm9"]
    lines = [f"# Coordinate noise scale: geometry against chemistry ({result['steps']} evaluations, "
             f"{result['solver']}, {result['spacing']})", "",
             f"`{result['command']}` — model at step {result['model'].get('step')}; seed {result['seed']}; "
             f"{result['threads']} thread(s). SCALE:FROM = `--noise-scale SCALE --noise-scale-from FROM`; 1:1 is "
             "the chain itself; S/ = S solver steps instead; +R = `--refine R` (R network evaluations more). Strain: MMFF94 energy drop on relaxation (hydrogens relaxed first), kcal/mol; "
             "RMSD: heavy atoms, Å. "
             + ("Hydrogens are placed by RDKit (not generated). " if result.get("implicit_h", True)
                else "Every atom, hydrogens included, is generated. ")
             + "Composition from the molecules that sanitise.", ""]
    cols = [r["config"] for r in runs] + ["QM9"]
    lines += ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]

    def row(label, cells):
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    row("molecule stability (%)", [_pct(r["molecule_stability"]) for r in runs] + [""])
    row("validity (%)", [_pct(r["validity"]) for r in runs] + [""])
    row("uniqueness (%)", [_pct(r["uniqueness"]) for r in runs] + [""])
    row("novelty (%)", [_pct(r["novelty"]) for r in runs] + [""])
    row("atom types, TV", [f"{r['atom_type_tv']:.4f}" for r in runs] + [""])
    row("bond lengths, W1 (Å)", [f"{r['bond_length_w1']:.4f}" for r in runs] + [""])
    row("bond angles, W1 (°)", [f"{r['bond_angle_w1']:.2f}" for r in runs] + [""])
    all_rows = runs + [ref]
    row("strain median / p90", [f"{r['strain'].get('strain_median', float('nan')):.2f} / "
                                f"{r['strain'].get('strain_p90', float('nan')):.1f}" for r in all_rows])
    row("RMSD median", [f"{r['strain'].get('rmsd_median', float('nan')):.3f}" for r in all_rows])
    if "xtb" in ref:
        row("GFN2-xTB strain median / p90", [f"{r['xtb'].get('strain_median', float('nan')):.2f} / "
                                             f"{r['xtb'].get('strain_p90', float('nan')):.1f}" for r in all_rows])
        row("GFN2-xTB RMSD median", [f"{r['xtb'].get('rmsd_median', float('nan')):.3f}" for r in all_rows])
        row("judged by GFN2-xTB", [str(r["xtb"].get("judged")) for r in all_rows])
    row("judged by MMFF94", [str(r["strain"].get("judged")) for r in all_rows])
    if "posebusters" in ref:
        row("PoseBusters all pass (%)", [_pct(r["posebusters"].get("all_pass")) + f" (n={r['posebusters']['molecules']})"
                                         for r in all_rows])
    for size in ("3", "4", "5", "6"):
        row(f"{size}-rings per molecule", [f"{r['composition']['rings_per_molecule'].get(size, 0):.2f}"
                                            for r in all_rows])
    row("aromatic / acyclic (%)", [f"{_pct(r['composition']['aromatic'])} / {_pct(r['composition']['acyclic'])}"
                                   for r in all_rows])
    row("N share of heavy atoms (%)", [_pct(r["composition"]["elements"].get("N", 0)) for r in all_rows])
    row("network evaluations", [str(r.get("steps", result["steps"]) + r.get("refine", 0)) for r in runs] + [""])
    row("sampling time (s)", [f"{r['sample_seconds']:.0f}" for r in runs] + [""])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
