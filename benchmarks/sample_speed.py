"""Seconds to sample 1,000 QM9 molecules with the shipped model, for the few-step settings a user picks: the
default at 20 evaluations and the best-geometry setting (cooled last stretch + ``--refine``). Median of
``--repeats`` runs (seed 0 each time, so the same molecules), molecules decoded to RDKit ``Mol``s, nothing written.

    python benchmarks/sample_speed.py --threads 2 --load idle --json benchmarks/results/sample_speed_idle.json
    python benchmarks/sample_speed.py --threads 1 --load "beside one training process" \\
        --json benchmarks/results/sample_speed_busy.json

The machine's load is not measured: ``--load`` records what the person running it states (idle, or what ran
beside it). Each configuration is [S/]SCALE:FROM[+R] as in ``noise_scale.py``.
"""
from __future__ import annotations

import statistics
import sys
import time

import torch

from moldiff.api import load, load_pretrained
from moldiff.diffusion.grids import default_sampler
from moldiff.sampling import generate

from common import RESULTS, command_line, machine_info, parser, set_threads, write_json, write_text
from noise_scale import parse_config

DEFAULT_CONFIGS = ["20/1:1", "20/0:0.3+30"]


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, threads=True, seed=0, json=RESULTS / "sample_speed.json")
    ap.add_argument("configs", nargs="*", default=DEFAULT_CONFIGS, metavar="[S/]SCALE:FROM[+R]")
    ap.add_argument("--checkpoint", help="checkpoint file (default: the shipped 'qm9' model)")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--load", required=True, help="what else ran on the machine (idle, or what ran beside it)")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    info = machine_info()
    gen = load(args.checkpoint) if args.checkpoint else load_pretrained("qm9")
    rows = []
    for config in args.configs:
        steps, scale, start, refine = parse_config(config, 20)
        solver, spacing = default_sampler(steps, gen.chain.T)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            mols = generate(gen, args.n, steps=steps, seed=args.seed, batch_size=args.batch_size, spacing=spacing,
                            solver=None if solver == "ancestral" else solver, noise_scale=scale,
                            noise_scale_from=start, refine=refine)
            times.append(time.perf_counter() - t0)
        rows.append({"config": config, "evaluations": steps + refine, "solver": solver, "spacing": spacing,
                     "n": len(mols), "seconds": [round(t, 2) for t in times],
                     "median_seconds": round(statistics.median(times), 2)})
        print(rows[-1], flush=True)
    result = {"model": gen.info, "threads": torch.get_num_threads(), "load": args.load, "runs": rows,
              "command": command_line(argv, "sample_speed.py")}
    write_json(args.json, result, info=info)
    lines = [f"# Sampling speed, {args.n} QM9 molecules ({result['threads']} thread(s); machine: {args.load})", "",
             f"`{result['command']}` — median of {args.repeats} runs.", "",
             "| setting | network evaluations | median seconds | runs (s) |", "|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['evaluations']} | {r['median_seconds']:.1f} | "
              + ", ".join(f"{t:.1f}" for t in r["seconds"]) + " |" for r in rows]
    write_text(args.json.with_suffix(".md"), "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
