"""Quality of a trained model on the published QM9 protocol, beside the published figures.

    python benchmarks/quality.py                      # shipped model, 1,000 samples, 100 steps
    python benchmarks/quality.py --steps 50,100,250,1000 --json benchmarks/results/quality_steps.json

For each sampler setting it samples ``-n`` molecules (fixed seed), times it, and scores them two ways:
with the published EDM distance protocol on the coordinates alone (comparable with EDM and its successors),
and with the model's own bonds and formal charges under the charge-aware valency table.
"""
from __future__ import annotations

import json
import platform
import sys
import time

import torch

from moldiff.api import load, load_pretrained
from moldiff.chem.metrics import evaluate
from moldiff.data.reference_qm9 import load_reference
from moldiff.sampling import generate

from common import RESULTS, command_line, machine_info, parser, set_threads, write_json, write_text

PUBLISHED = {  # atom stab, mol stab, validity, validity × uniqueness (QM9, 10,000 samples, EDM protocol)
    "EDM (1000 steps)": (98.7, 82.0, 91.9, 90.7),
    "GeoLDM (1000 steps)": (98.9, 89.4, 93.8, 92.7),
}
ROWS = [("atom_stability", "atom stab. (protocol)"), ("molecule_stability", "mol. stab. (protocol)"),
        ("validity", "validity (protocol)"), ("connected_validity", "connected validity"),
        ("uniqueness", "uniqueness (of valid)"), ("novelty", "novelty (of unique valid)"),
        ("charge_molecule_stability", "mol. stab. (own bonds + charges)"),
        ("charge_atom_stability", "atom stab. (own bonds + charges)"),
        ("sanitises_as_given", "RDKit sanitises own bonds")]


@torch.no_grad()
def generate_batch_stream(gen, n: int, steps: int, seed: int, batch_size: int, spacing: str, ddim: bool) -> list:
    """The sampling of moldiff before per-molecule seeds, driven by today's chain loop: sizes from one
    generator seeded ``seed``, every noise draw of every batch from one generator seeded ``seed + 1``. Given
    the same seed it reproduces that code's molecules (tests/test_hooks.py); a diagnostic of the noise stream,
    not a sampler to use (a molecule then depends on the batch it is in)."""
    from moldiff.sampling import empty_graph, run_chain, to_molecules

    hist = torch.tensor(gen.stats.n_atoms_hist, dtype=torch.float64)
    sizes = torch.multinomial(hist / hist.sum(), n, replacement=True,
                              generator=torch.Generator().manual_seed(seed)).tolist()
    g = torch.Generator(device=gen.device).manual_seed(seed + 1)
    cfg, mols = gen.config.features, []
    gen.network.eval()
    for start in range(0, n, batch_size):
        template, graph = empty_graph(sizes[start:start + batch_size], cfg.h_dim, cfg.e_dim, gen.device)
        out = run_chain(gen.network, gen.chain, template, graph, steps=steps, spacing=spacing, deterministic=ddim,
                        generator=g)
        mols += to_molecules(gen, out, graph)
    return mols


def value(report: dict, key: str) -> float | None:
    entry = report["metrics"].get(key, {})
    return 100.0 * entry["value"] if "value" in entry else None


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, threads=True, seed=0, json=RESULTS / "quality.json")
    ap.add_argument("--checkpoint", help="checkpoint file (default: the shipped 'qm9' model)")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--steps", default="100", help="comma-separated sampler step counts")
    ap.add_argument("--ddim", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="sample under bf16 autocast (moldiff sample --bf16)")
    ap.add_argument("--spacing", default="uniform", help="how S steps spread over [0, T]: uniform, quadratic, cubic, logsnr, karras")
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--solver", choices=["dpm2m", "sde-dpm2m"],
                    help="DPM-Solver++(2M) on the probability-flow ODE, or SDE-DPM-Solver++(2M) on the reverse SDE")
    ap.add_argument("--batch-stream", action="store_true", help="diagnostic: draw the noise as moldiff did before "
                    "per-molecule seeds (one generator for all batches); see generate_batch_stream")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    info = machine_info()
    gen = load(args.checkpoint) if args.checkpoint else load_pretrained("qm9")
    reference = load_reference("qm9")
    runs = []
    for steps in (int(s) for s in args.steps.split(",")):
        start = time.perf_counter()
        if args.batch_stream:
            mols = generate_batch_stream(gen, args.n, steps, args.seed, args.batch_size, args.spacing, args.ddim)
        else:
            mols = generate(gen, args.n, steps=steps, seed=args.seed, batch_size=args.batch_size,
                            deterministic=args.ddim, spacing=args.spacing, bf16=args.bf16,
                            progress=sys.stderr.isatty(), solver=args.solver)
        seconds = time.perf_counter() - start
        report = evaluate(mols, reference)
        sampler = ((args.solver or ("ddim" if args.ddim else "ancestral")) + (", batch stream" if args.batch_stream else "") + ("" if args.spacing == "uniform" else f", {args.spacing}")
                   + (", bf16" if args.bf16 else ""))
        runs.append({"steps": steps, "sampler": sampler, "n": args.n,
                     "sample_seconds": round(seconds, 1),
                     "figures": {k: value(report, k) for k, _ in ROWS}, "report": report})
        print(json.dumps({"steps": steps, "seconds": round(seconds, 1), **{k: runs[-1]["figures"][k] for k, _ in ROWS}}))
    result = {"model": gen.info, "config_preset": gen.config.preset, "seed": args.seed,
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "runs": runs,
              "command": command_line(argv, "quality.py")}
    write_json(args.json, result, info=info)
    write_text(args.json.with_suffix(".md"), markdown(result))
    return 0


def markdown(result: dict) -> str:
    info = result["model"]
    lines = [f"# Quality of the {result['config_preset']} model",
             "", f"`{result['command']}` — model at step {info.get('step')}, epoch {info.get('epoch')}, "
             f"{(info.get('hours') or 0):.2f} training hours; {result['machine']}.", ""]
    head = "| metric | " + " | ".join(f"{r['steps']} steps ({r['sampler']}, n={r['n']})" for r in result["runs"])
    head += " | " + " | ".join(PUBLISHED) + " |"
    lines += [head, "|" + "---|" * (2 + len(result["runs"]) - 1 + len(PUBLISHED))]
    published_index = {"atom_stability": 0, "molecule_stability": 1, "validity": 2}
    for key, label in ROWS:
        cells = [("—" if r["figures"][key] is None else f"{r['figures'][key]:.1f} %") for r in result["runs"]]
        pub = [f"{v[published_index[key]]:.1f} %" if key in published_index else "" for v in PUBLISHED.values()]
        lines.append(f"| {label} | " + " | ".join(cells + pub) + " |")
    vu = []
    for r in result["runs"]:
        v, u = r["figures"]["validity"], r["figures"]["uniqueness"]
        vu.append("—" if v is None or u is None else f"{v * u / 100:.1f} %")
    lines.append("| validity × uniqueness | " + " | ".join(vu + [f"{v[3]:.1f} %" for v in PUBLISHED.values()]) + " |")
    lines.append("| sampling time | " + " | ".join(f"{r['sample_seconds']:.0f} s" for r in result["runs"])
                 + " |" * (len(PUBLISHED) + 1))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
