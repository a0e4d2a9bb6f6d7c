"""The drug-like model on the MOSES benchmark: MOSES' own metric code, PoseBusters, and MMFF94 strain.

    python benchmarks/moses.py -n 1000 --steps 125 --spacing quadratic --json benchmarks/results/moses.json

Samples ``-n`` molecules of ``--model`` (default: the built-in ``moses`` model) and scores their SMILES with
``moses.get_all_metrics`` from the ``molsets`` package (validity, uniqueness@1k/10k, FCD, SNN, Frag, Scaf
against MOSES' test and scaffold-test sets, IntDiv, Filters, novelty against its training set), as MOSES
users run it. Two names that ``molsets`` imports are missing from today's RDKit and pandas; they are supplied
at run time (``rdkit.six.iteritems``, ``pandas.DataFrame.append``), the metric code itself is untouched.

The 3D side: MMFF94 strain and heavy-atom RMSD on relaxation (:mod:`moldiff.chem.geometry`) and PoseBusters'
checks for generated molecules (``posebusters``, config ``mol``), each on a fixed subset, beside the same
figures for MOSES test molecules with ETKDGv3 conformers, raw and MMFF94-relaxed (what training saw).

Needs: ``pip install --no-deps molsets`` and ``pip install scipy fcd_torch posebusters``.
"""
from __future__ import annotations

import gzip
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem

from moldiff.api import load
from moldiff.chem.geometry import strain_summary
from moldiff.chem.posebusters import posebusters_summary
from moldiff.data.moses import moses_file
from moldiff.diffusion.grids import SOLVERS
from moldiff.pretrained import resolve_model
from moldiff.sampling import generate

from common import RESULTS, command_line, machine_info, parser, set_threads, write_json, write_text

PUBLISHED = {  # MOSES README (molecularsets/moses, commit 0447c9f): 30,000 samples, SMILES models (no 3D)
    "CharRNN": {"valid": 0.9598, "unique@10000": 0.9993, "FCD/Test": 0.3233, "SNN/Test": 0.4606,
                "Frag/Test": 0.9977, "Scaf/Test": 0.7964, "IntDiv": 0.8561, "Filters": 0.9920},
    "VAE": {"valid": 0.9528, "unique@10000": 0.9992, "FCD/Test": 0.2540, "SNN/Test": 0.4684,
            "Frag/Test": 0.9978, "Scaf/Test": 0.8277, "IntDiv": 0.8548, "Filters": 0.9925},
    "JTN-VAE": {"valid": 1.0, "unique@10000": 0.9972, "FCD/Test": 4.3769, "SNN/Test": 0.3909,
                "Frag/Test": 0.9679, "Scaf/Test": 0.3868, "IntDiv": 0.8495, "Filters": 0.9566},
}
COLUMNS = ["valid", "unique@1000", "unique@10000", "FCD/Test", "SNN/Test", "Frag/Test", "Scaf/Test",
           "FCD/TestSF", "Scaf/TestSF", "IntDiv", "Filters", "Novelty"]


def import_moses():
    """``moses`` with the two names it expects from old RDKit and pandas supplied (nothing else changed)."""
    import pandas as pd
    import rdkit

    if "rdkit.six" not in sys.modules:
        six = types.ModuleType("rdkit.six")
        six.iteritems = lambda d: iter(d.items())
        sys.modules["rdkit.six"] = six
        rdkit.six = six
    if not hasattr(pd.DataFrame, "append"):
        pd.DataFrame.append = lambda self, other, sort=False, ignore_index=False: pd.concat(
            [self, other], sort=sort, ignore_index=ignore_index)
    import importlib

    here = str(Path(__file__).resolve().parent)  # this script is named moses.py too: import the package
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != here]
    try:
        if getattr(sys.modules.get("moses"), "__file__", "") == str(Path(__file__).resolve()):
            del sys.modules["moses"]
        return importlib.import_module("moses")
    finally:
        sys.path[:] = saved


def smiles_of(mol: Chem.Mol | None) -> str:
    """The SMILES MOSES judges: the sanitised molecule's (hydrogens implicit), else RDKit's text of the raw
    graph (which MOSES then finds invalid or not by itself)."""
    if mol is None:
        return "INVALID"
    with rdBase.BlockLogs():
        try:
            m = Chem.Mol(mol)
            Chem.SanitizeMol(m)
            return Chem.MolToSmiles(Chem.RemoveHs(m))
        except (ValueError, RuntimeError):
            return Chem.MolToSmiles(mol, canonical=False) or "INVALID"


def reference_conformers(n: int, mmff: bool, seed: int = 0) -> list[Chem.Mol]:
    """The first ``n`` MOSES test molecules with ETKDGv3 conformers (seeded), optionally MMFF94-relaxed."""
    lines = gzip.open(moses_file("test"), "rt").read().splitlines()[1:n + 1]
    out = []
    for k, line in enumerate(lines):
        mol = Chem.AddHs(Chem.MolFromSmiles(line.split(",")[0]))
        params = AllChem.ETKDGv3()
        params.randomSeed = seed + k
        if AllChem.EmbedMolecule(mol, params) != 0:
            continue
        if mmff:
            AllChem.MMFFOptimizeMolecule(mol)
        out.append(mol)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, threads=True, seed=0, json=RESULTS / "moses.json")
    ap.add_argument("--model", default="moses", help="built-in name or checkpoint file")
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--spacing", default="uniform")
    ap.add_argument("--solver", default="ancestral", choices=list(SOLVERS))
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--geometry-n", type=int, default=200, help="molecules (generated and reference) for strain")
    ap.add_argument("--posebusters-n", type=int, default=100, help="molecules for PoseBusters (~1 s each)")
    ap.add_argument("--sdf", type=Path, help="also write the samples here")
    ap.add_argument("--samples", type=Path, help="score this file of samples (from --sdf) instead of sampling")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    try:  # before sampling: a missing dependency is a one-line error, not a traceback after the samples
        moses = import_moses()
    except ImportError as err:
        raise SystemExit(f"MOSES' metric code cannot be imported ({err}): pip install --no-deps molsets "
                         "&& pip install scipy fcd_torch posebusters") from None
    info = machine_info()
    gen = load(resolve_model(args.model))
    start = time.perf_counter()
    if args.samples:
        from moldiff.chem.io import read_molecules
        mols = read_molecules(args.samples)[0]
        args.n = len(mols)
    else:
        mols = generate(gen, args.n, steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                        spacing=args.spacing, progress=sys.stderr.isatty(),
                        solver=None if args.solver == "ancestral" else args.solver)
    sample_seconds = None if args.samples else round(time.perf_counter() - start, 1)
    if args.sdf:
        from moldiff.chem.io import write_molecules
        write_molecules(mols, args.sdf)
    smiles = [smiles_of(m) for m in mols]
    start = time.perf_counter()
    if any(Chem.MolFromSmiles(s) is not None for s in smiles):
        metrics = moses.get_all_metrics(smiles, n_jobs=1, device="cpu", batch_size=256)
    else:  # molsets divides by the number of valid molecules
        metrics = {"valid": 0.0}
    metric_seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in metrics.items()}
    valid = [m for m in mols if m is not None and m.HasProp("moldiff_valid") and m.GetIntProp("moldiff_valid")]
    connected = sum(1 for s in smiles if Chem.MolFromSmiles(s) is not None and "." not in s) / max(len(smiles), 1)
    geometry = {"generated": strain_summary(valid[:args.geometry_n])}
    ref_raw = reference_conformers(args.geometry_n, mmff=False, seed=args.seed)
    ref_mmff = reference_conformers(args.geometry_n, mmff=True, seed=args.seed)
    geometry["moses_test_etkdg"] = strain_summary(ref_raw)
    geometry["moses_test_etkdg_mmff"] = strain_summary(ref_mmff)
    busters = {} if args.posebusters_n <= 0 else {
        "generated": posebusters_summary(valid[:args.posebusters_n]),
        "moses_test_etkdg_mmff": posebusters_summary(ref_mmff[:args.posebusters_n])}
    result = {"model": gen.info, "config_preset": gen.config.preset, "n": args.n, "steps": args.steps or gen.chain.T,
              "spacing": args.spacing, "solver": args.solver, "seed": args.seed, "sample_seconds": sample_seconds,
              "samples_file": str(args.samples) if args.samples else None,
              "metric_seconds": round(metric_seconds, 1), "threads": torch.get_num_threads(),
              "moses_metrics": metrics, "connected_valid": connected, "geometry": geometry, "posebusters": busters,
              "published": PUBLISHED, "command": command_line(argv, "moses.py")}
    write_json(args.json, result, info=info)
    write_text(args.json.with_suffix(".md"), markdown(result))
    print(markdown(result))
    return 0


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def markdown(result: dict) -> str:
    info = result["model"]
    lines = [f"# MOSES benchmark of the {result['config_preset']} model", "",
             f"`{result['command']}` — model at step {info.get('step')}, epoch {info.get('epoch')}; "
             f"{result['n']} samples, {result['steps']} steps ({result['spacing']}, {result.get('solver', 'ancestral')}), {result['threads']} threads, "
             f"{result['sample_seconds']} s sampling. Metrics: `moses.get_all_metrics` (molsets). The published "
             "rows are SMILES models at 30,000 samples (MOSES README): not like-for-like with a 3D generator "
             "scored on fewer samples (FCD is biased upward at small n).", "",
             "| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    lines.append("| this model | " + " | ".join(_fmt(result["moses_metrics"].get(c)) for c in COLUMNS) + " |")
    for name, row in result["published"].items():
        lines.append(f"| {name} (published) | " + " | ".join(_fmt(row.get(c)) for c in COLUMNS) + " |")
    lines += ["", f"Connected valid (one fragment): {100 * result['connected_valid']:.1f} %.", "",
              "| geometry (MMFF94) | judged | strain median | strain p90 | RMSD median | RMSD p90 |",
              "|---|---|---|---|---|---|"]
    for name, g in result["geometry"].items():
        lines.append(f"| {name} | {g['judged']}/{g['molecules']} | {_fmt(g.get('strain_median'))} | "
                     f"{_fmt(g.get('strain_p90'))} | {_fmt(g.get('rmsd_median'))} | {_fmt(g.get('rmsd_p90'))} |")
    lines += ["", "| PoseBusters (mol) | molecules | all checks pass |", "|---|---|---|"]
    for name, b in result["posebusters"].items():
        lines.append(f"| {name} | {b['molecules']} | {100 * b['all_pass']:.1f} % |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
