"""Samplers side by side on one model: validity (the model's own bonds, RDKit sanitisation), the one-fragment share
and the sampling time, each on the same molecules' seeds.

    python benchmarks/sampler_sweep.py --model moses -n 200 --threads 1 \\
        ancestral:uniform:100 sde-dpm2m:quadratic:100 sde-dpm2m:quadratic:50 --json benchmarks/results/moses_sampler.json

Each positional argument is SOLVER:SPACING:STEPS, optionally followed by :SCALE:FROM, the coordinate noise
scale (``moldiff sample --noise-scale SCALE --noise-scale-from FROM``; default 1:1, the chain itself). A quick screen on a few hundred molecules (the standard error of
a rate near 75 % on 200 is about 3 points); the full benchmarks (``quality.py``, ``moses.py``) judge the winner.
"""
from __future__ import annotations

import time

import torch
from rdkit import Chem, rdBase

from moldiff.api import load
from moldiff.pretrained import resolve_model
from moldiff.sampling import generate

from common import RESULTS, command_line, machine_info, parser, set_threads, write_json, write_text


def score(mols: list[Chem.Mol]) -> dict:
    """Valid (sanitised with the model's bonds) and valid as one fragment, as fractions of all samples."""
    smiles = []
    with rdBase.BlockLogs():
        for m in mols:
            ok = m is not None and m.HasProp("moldiff_valid") and m.GetIntProp("moldiff_valid")
            smiles.append(Chem.MolToSmiles(m) if ok else None)
    n = max(len(mols), 1)
    return {"valid": sum(s is not None for s in smiles) / n,
            "connected_valid": sum(s is not None and "." not in s for s in smiles) / n}


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, threads=True, seed=0, json=RESULTS / "sampler_sweep.json")
    ap.add_argument("--model", default="qm9", help="built-in name or checkpoint file")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("specs", nargs="+", help="SOLVER:SPACING:STEPS[:SCALE:FROM]")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    info = machine_info()
    gen = load(resolve_model(args.model))
    rows = []
    for spec in args.specs:
        solver, spacing, steps, *cooling = spec.split(":")
        scale, start_at = (float(v) for v in cooling) if cooling else (1.0, 1.0)
        start = time.perf_counter()
        mols = generate(gen, args.n, steps=int(steps), seed=args.seed, batch_size=args.batch_size, spacing=spacing,
                        solver=None if solver == "ancestral" else solver, noise_scale=scale, noise_scale_from=start_at)
        rows.append({"solver": solver, "spacing": spacing, "steps": int(steps), "noise_scale": scale,
                     "noise_scale_from": start_at, "n": args.n,
                     "seconds": round(time.perf_counter() - start, 1), **score(mols)})
        print(rows[-1], flush=True)
    result = {"model": gen.info, "config_preset": gen.config.preset, "seed": args.seed,
              "threads": torch.get_num_threads(), "rows": rows, "command": command_line(argv, "sampler_sweep.py")}
    write_json(args.json, result, info=info)
    lines = [f"# Samplers on the {gen.config.preset} model (step {gen.info.get('step')})", "",
             f"`{result['command']}` — {args.n} molecules each, seed {args.seed}, {result['threads']} thread(s).", "",
             "| solver | spacing | steps | noise scale:from | valid | valid, one fragment | seconds |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['solver']} | {r['spacing']} | {r['steps']} | {r['noise_scale']:g}:{r['noise_scale_from']:g} | "
              f"{100 * r['valid']:.1f} % | "
              f"{100 * r['connected_valid']:.1f} % | {r['seconds']} |" for r in rows]
    write_text(args.json.with_suffix(".md"), "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
