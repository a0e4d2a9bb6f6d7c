"""Does the coordinate update's bound shape the geometry? Each EGNN layer moves atom i by Σ_j unit(x_i − x_j) ·
15 Å · tanh(u_ij); where |u| is small, tanh(u) ≈ u and the bound does nothing. This records u for every edge of
every layer at every network evaluation while the shipped QM9 model samples (the default 20-step sampler, then
``--refine``), and reports per evaluation how often the bound bends an update by more than 5 % (tanh(u)/u < 0.95,
i.e. |u| > 0.39) and the largest per-edge move it allows.

    python benchmarks/coord_bound.py -n 200 --refine 30 --threads 1

The reference kernel is used (same arithmetic as the fast one, tested equal) so that a forward hook sees u.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from moldiff.api import load_pretrained
from moldiff.diffusion.grids import default_sampler
from moldiff.sampling import generate

from common import RESULTS, command_line, machine_info, parser, set_threads, write_json, write_text

BENT = 0.39  # |u| above which tanh(u)/u < 0.95


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, threads=True, seed=0, json=RESULTS / "coord_bound.json")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--refine", type=int, default=30)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    info = machine_info()
    gen = load_pretrained("qm9")
    net = gen.network
    net.set_kernel("reference")
    coords_range = gen.config.model.coords_range
    evals: list[dict] = []
    current: list[torch.Tensor] = []

    def record(_module, _inputs, output):
        current.append(output.detach().abs().flatten().double().numpy())

    hooks = [layer.coord_mlp.register_forward_hook(record) for layer in net.layers]
    forward = net.forward

    def traced(z, t, graph, *extra):
        current.clear()
        out = forward(z, t, graph, *extra)
        u = np.concatenate(current)
        evals.append({"bent_share_by_layer": [float((v > BENT).mean()) for v in current],"t": float(t.flatten()[0]) * gen.chain.T, "edges": int(u.size),
                      "u_median": float(np.median(u)), "u_p99": float(np.percentile(u, 99)),
                      "bent_share": float((u > BENT).mean()),
                      "max_move_A": float(np.tanh(u.max()) * coords_range)})
        return out

    net.forward = traced
    solver, spacing = default_sampler(args.steps, gen.chain.T)
    with torch.no_grad():
        generate(gen, args.n, steps=args.steps, seed=args.seed, batch_size=args.n, spacing=spacing,
                 solver=None if solver == "ancestral" else solver, noise_scale=0.0, noise_scale_from=0.3,
                 refine=args.refine)
    for h in hooks:
        h.remove()
    net.forward = forward
    for k, e in enumerate(evals):
        e["phase"] = "solver" if k < args.steps else "refine"
    result = {"model": gen.info, "n": args.n, "steps": args.steps, "refine": args.refine, "solver": solver,
              "spacing": spacing, "coords_range": coords_range, "bent_threshold_u": BENT, "evaluations": evals,
              "command": command_line(argv, "coord_bound.py")}
    write_json(args.json, result, info=info)
    lines = [f"# The coordinate update's bound while sampling ({args.n} QM9 molecules, {args.steps} solver steps "
             f"+ {args.refine} refinement)", "", f"`{result['command']}`. u: the pre-tanh coordinate weight of an "
             f"edge (all layers); the update is {coords_range:g} Å · tanh(u). Bent: |u| > {BENT} (tanh(u)/u < 0.95).",
             "", "| evaluation | phase | t | median \\|u\\| | p99 \\|u\\| | bent share | largest per-edge move (Å) |",
             "|---|---|---|---|---|---|---|"]
    for k, e in enumerate(evals):
        lines.append(f"| {k + 1} | {e['phase']} | {e['t']:.0f} | {e['u_median']:.2e} | {e['u_p99']:.2e} | "
                     f"{100 * e['bent_share']:.3f} % | {e['max_move_A']:.3f} |")
    write_text(args.json.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
