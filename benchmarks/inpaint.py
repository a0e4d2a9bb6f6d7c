"""Inpainting on QM9 test molecules: fragment retention, validity, connectivity, diversity and recovery, with
and without RePaint resampling.

    python benchmarks/inpaint.py --fragments 200 --completions 10 --steps 100 \
        --settings 1x1,10x3 --json benchmarks/results/inpaint_qm9.json

Fragments: QM9 test-split molecules with 6–9 heavy atoms, each with k ∈ {2, …, 5} heavy atoms removed (fixed
seed), chosen so that the fragment stays connected; each is completed ``--completions`` times with k new heavy
atoms. A completion retains the fragment when its first atoms are the fragment's elements, bonded as in the
fragment and nothing more among them and within 0.05 Å RMSD of the input coordinates, without any
alignment; its bonds are compared in Kekulé form, as the molecule holds them. ``--settings`` lists JUMPxRESAMPLINGS (1x1: no resampling, the baseline).
"""
from __future__ import annotations

import random
import sys
import time

import networkx as nx
import numpy as np
import torch
from rdkit import Chem, rdBase

from moldiff.api import load
from moldiff.chem.build import build_mol
from moldiff.data.qm9 import load_processed
from moldiff.data.reference_qm9 import load_reference
from moldiff.inpainting import DEFAULT_GUIDANCE, Fragment, inpaint_molecules
from moldiff.pretrained import resolve_model

from common import RESULTS, command_line, machine_info, parser, set_threads, write_json, write_text

DIFFLINKER_NOTE = ("DiffLinker (Igashov et al.) trains a dedicated model for linkers on ZINC/GEOM/Pockets "
                   "fragments; its task and data differ from QM9 completion: not like-for-like, no row copied.")


def qm9_fragments(count: int, seed: int) -> list[tuple[Chem.Mol, list[int], str]]:
    """(molecule with explicit H, kept heavy-atom numbers 1-based, original canonical SMILES) for ``count``
    QM9 test molecules with k = 2–5 heavy atoms removed, the fragment connected."""
    blob = load_processed(progress=False)
    rng = random.Random(seed)
    order = blob["splits"]["test"].tolist()
    rng.shuffle(order)
    out = []
    with rdBase.BlockLogs():
        for m in order:
            a0, a1 = int(blob["atom_ptr"][m]), int(blob["atom_ptr"][m + 1])
            b0, b1 = int(blob["bond_ptr"][m]), int(blob["bond_ptr"][m + 1])
            elements = [blob["elements"][int(k)] for k in blob["atom_type"][a0:a1]]
            mol = build_mol(elements, blob["pos"][a0:a1].double().numpy(),
                            [tuple(int(v) for v in b) for b in blob["bonds"][b0:b1]], blob["charge"][a0:a1].tolist())
            try:
                Chem.SanitizeMol(mol)
            except (ValueError, RuntimeError):
                continue
            heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
            if not 6 <= len(heavy) <= 9:
                continue
            k = rng.randint(2, min(5, len(heavy) - 1))
            g = nx.Graph()
            g.add_nodes_from(heavy)
            g.add_edges_from((b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()
                             if b.GetBeginAtom().GetAtomicNum() > 1 and b.GetEndAtom().GetAtomicNum() > 1)
            removed = []
            for _ in range(k):
                candidates = [v for v in g.nodes if nx.is_connected(g.subgraph(set(g.nodes) - {v}))]
                if not candidates:
                    break
                v = rng.choice(sorted(candidates))
                g.remove_node(v)
                removed.append(v)
            if len(removed) != k:
                continue
            keep = [i + 1 for i in heavy if i not in removed]
            out.append((mol, keep, Chem.MolToSmiles(Chem.RemoveHs(mol))))
            if len(out) == count:
                break
    return out


def moses_fragments(count: int, seed: int) -> list[tuple[Chem.Mol, list[int], str]]:
    """(molecule with explicit H, kept heavy-atom numbers 1-based, original canonical SMILES) for ``count``
    molecules of MOSES' scaffold test set (scaffolds absent from its training set), drawn with a fixed seed:
    the molecule gets an ETKDGv3 + MMFF94 conformer and its Bemis–Murcko scaffold (RDKit's, as MOSES computes
    it) is kept in that pose; the side chains are to be generated. Molecules that are their own scaffold are
    skipped."""
    import gzip

    from rdkit.Chem.Scaffolds import MurckoScaffold

    from moldiff.data.files import record_of
    from moldiff.data.moses import moses_file

    with gzip.open(moses_file("test_scaffolds"), "rt") as handle:
        smiles = [line.split(",")[0].strip() for line in handle][1:]
    rng = random.Random(seed)
    rng.shuffle(smiles)
    out = []
    with rdBase.BlockLogs():
        for number, smi in enumerate(smiles):
            parsed = Chem.MolFromSmiles(smi)
            if parsed is None:
                continue
            rec, _ = record_of(parsed, seed * 1_000_003 + number)
            if rec is None:
                continue
            mol = build_mol(list(rec.elements), rec.pos, [tuple(int(v) for v in b) for b in rec.bonds],
                            [int(c) for c in rec.charges])
            try:
                Chem.SanitizeMol(mol)
            except (ValueError, RuntimeError):
                continue
            for a in mol.GetAtoms():
                a.SetIntProp("moldiff_index", a.GetIdx())
            scaffold = MurckoScaffold.GetScaffoldForMol(mol)
            keep = sorted(a.GetIntProp("moldiff_index") + 1 for a in scaffold.GetAtoms()
                          if a.HasProp("moldiff_index") and a.GetAtomicNum() > 1)
            if not keep or len(keep) == mol.GetNumHeavyAtoms():
                continue
            out.append((mol, keep, Chem.MolToSmiles(Chem.RemoveHs(mol))))
            if len(out) == count:
                break
    return out


def moses_train_smiles() -> frozenset:
    """MOSES' training SMILES as the file holds them (canonical RDKit SMILES: MOSES' own novelty compares
    canonicalised samples with them as they are)."""
    import gzip

    from moldiff.data.moses import moses_file

    with gzip.open(moses_file("train"), "rt") as handle:
        return frozenset(line.split(",")[0].strip() for line in handle)


def own_bonds(mol: Chem.Mol, size: int) -> set[tuple[int, int, int]]:
    """The bonds (i, j, Kekulé order) among the first ``size`` atoms, as the molecule holds them."""
    work = Chem.Mol(mol)
    with rdBase.BlockLogs():
        try:
            Chem.Kekulize(work, clearAromaticFlags=True)
        except (ValueError, RuntimeError):
            pass
    out = set()
    for b in work.GetBonds():
        i, j = sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
        if j < size:
            out.add((i, j, int(b.GetBondTypeAsDouble())))
    return out


def same_graph(mol: Chem.Mol, frag: Fragment) -> bool:
    """The fragment's bonds among the first atoms, an aromatic bond of the molecule standing for a fragment
    bond of order 1 or 2 (another Kekulé structure of the same ring)."""
    seen = {}
    for b in mol.GetBonds():
        i, j = sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
        if j < frag.size:
            seen[(i, j)] = b
    if set(seen) != {(i, j) for i, j, _ in frag.bonds}:
        return False
    return all(seen[(i, j)].GetIsAromatic() and o in (1, 2) or int(seen[(i, j)].GetBondTypeAsDouble()) == o
               for i, j, o in frag.bonds)


def judge(mol: Chem.Mol, frag: Fragment) -> dict:
    """Retention (the fragment's elements and bonds on the first atoms, RMSD ≤ 0.05 Å without alignment),
    validity, connectivity and the canonical SMILES of one completion."""
    pos = mol.GetConformer().GetPositions()[:frag.size]
    rmsd = float(np.sqrt(((pos - frag.pos) ** 2).sum(1).mean()))
    elements_ok = tuple(a.GetSymbol() for a in mol.GetAtoms())[:frag.size] == frag.elements
    bonds_ok = own_bonds(mol, frag.size) == set(frag.bonds) or same_graph(mol, frag)
    valid = bool(mol.GetIntProp("moldiff_valid"))
    smiles, connected = None, False
    if valid:
        with rdBase.BlockLogs():
            heavy = Chem.RemoveHs(mol)
            smiles = Chem.MolToSmiles(heavy)
            connected = len(Chem.GetMolFrags(heavy)) == 1
    return {"retained": bool(elements_ok and bonds_ok and rmsd <= 0.05), "rmsd": rmsd, "valid": valid,
            "connected": bool(valid and connected), "smiles": smiles}


_WORKER: dict = {}


def _worker_init(model: str, threads: int) -> None:
    """A pool worker: one torch thread, its own copy of the model."""
    torch.set_num_threads(threads)
    _WORKER["gen"] = load(resolve_model(model))


def _one_fragment(job: tuple) -> dict:
    """Complete one fragment ``completions`` times and judge the completions (run in a worker or in-process)."""
    f, mol, keep, original, completions, steps, jump, resamplings, seed, guidance, connect = job
    frag = Fragment.from_mol(mol, keep=keep)
    n_add = mol.GetNumHeavyAtoms() - frag.size
    outs = inpaint_molecules(_WORKER["gen"], frag, n_add, completions, steps=steps, seed=seed * 100_003 + f,
                             jump=jump, resamplings=resamplings, batch_size=completions, guidance=guidance,
                             connect=connect)
    judged = [judge(m, frag) for m in outs]
    valid_smiles = [j["smiles"] for j in judged if j["smiles"]]
    return {"judged": judged, "valid_smiles": valid_smiles, "original": original}


def run_setting(pool, fragments, completions: int, steps: int, jump: int, resamplings: int, seed: int,
                train_smiles: frozenset, guidance: float = DEFAULT_GUIDANCE, connect: bool = True) -> dict:
    """One setting over all fragments; ``pool`` is a process pool (or None: in this process). Each fragment has
    its own seed, so the figures do not depend on the number of workers."""
    jobs = [(f, mol, keep, original, completions, steps, jump, resamplings, seed, guidance,
             connect) for f, (mol, keep, original) in enumerate(fragments)]
    start = time.perf_counter()
    done = pool.map(_one_fragment, jobs, chunksize=1) if pool is not None else [_one_fragment(j) for j in jobs]
    seconds = time.perf_counter() - start
    rows = []
    for out in done:
        judged, valid_smiles = out["judged"], out["valid_smiles"]
        unique = set(valid_smiles)
        rows.append({"retained": np.mean([j["retained"] for j in judged]),
                     "valid": np.mean([j["valid"] for j in judged]),
                     "connected": np.mean([j["connected"] for j in judged]),
                     "uniqueness": len(unique) / len(valid_smiles) if valid_smiles else None,
                     "novelty": (sum(s not in train_smiles for s in unique) / len(unique)) if unique else None,
                     "recovered": out["original"] in unique,
                     "max_rmsd": max(j["rmsd"] for j in judged)})

    def mean(key):
        values = [r[key] for r in rows if r[key] is not None]
        return float(100 * np.mean(values)) if values else None

    return {"jump": jump, "resamplings": resamplings, "guidance": guidance, "connect": connect, "fragments": len(rows),
            "completions": completions, "seconds": round(seconds, 1), "retained": mean("retained"), "validity": mean("valid"),
            "connectivity": mean("connected"), "uniqueness": mean("uniqueness"), "novelty": mean("novelty"),
            "recovery": mean("recovered"), "max_rmsd": max(r["max_rmsd"] for r in rows)}


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, threads=True, seed=0, json=RESULTS / "inpaint_qm9.json")
    ap.add_argument("--data", choices=("qm9", "moses"), default="qm9",
                    help="QM9 test molecules with 2–5 atoms removed, or MOSES scaffold-test molecules' scaffolds")
    ap.add_argument("--model", help="default: the shipped model of --data")
    ap.add_argument("--fragments", type=int, default=200)
    ap.add_argument("--completions", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--settings", default="1x1@0,1x1,10x3",
                    help="JUMPxRESAMPLINGS[@GUIDANCE][/plain], comma-separated (no @: the package's guidance "
                         "weight; /plain: guidance without its connection terms)")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes, each completing whole fragments with --threads threads (default 1: in this "
                         "process); the figures do not depend on it")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    info = machine_info()
    model = args.model or args.data
    _worker_init(model, torch.get_num_threads())
    gen = _WORKER["gen"]
    if args.data == "qm9":
        fragments, train_smiles = qm9_fragments(args.fragments, args.seed), load_reference("qm9").smiles
    else:
        fragments, train_smiles = moses_fragments(args.fragments, args.seed), moses_train_smiles()
    runs = []
    pool = None
    if args.workers > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(args.workers, _worker_init,
                                                          (model, torch.get_num_threads()))
    for setting in args.settings.split(","):
        setting, plain, _ = setting.lower().partition("/plain")
        steps_part, _, weight = setting.partition("@")
        jump, resamplings = (int(v) for v in steps_part.split("x"))
        guidance = DEFAULT_GUIDANCE if not weight else float(weight)
        runs.append(run_setting(pool, fragments, args.completions, args.steps, jump, resamplings, args.seed,
                                train_smiles, guidance, connect=not plain))
        print(runs[-1], flush=True)
    if pool is not None:
        pool.close()
        pool.join()
    result = {"model": gen.info, "config_preset": gen.config.preset, "steps": args.steps, "seed": args.seed,
              "threads": torch.get_num_threads(), "workers": args.workers, "runs": runs, "note": DIFFLINKER_NOTE,
              "command": command_line(argv, "inpaint.py")}
    write_json(args.json, result, info=info)
    write_text(args.json.with_suffix(".md"), markdown(result))
    return 0


def markdown(result: dict) -> str:
    cols = [("retained", "fragment retained"), ("validity", "validity"), ("connectivity", "valid and connected"),
            ("uniqueness", "uniqueness"), ("novelty", "novelty"), ("recovery", "original recovered")]
    lines = [f"# Inpainting with the {result['config_preset']} model", "",
             f"`{result['command']}` — {result['steps']} sampler steps, {result.get('workers', 1)} process(es) × "
             f"{result['threads']} thread(s); seconds are wall-clock. Per fragment "
             "means (%), then averaged over fragments; retention = elements, bonds and ≤ 0.05 Å RMSD with no "
             "alignment.", "",
             "Guidance \"w, plain\": without the connection terms (degree and distance hinges).", "",
             "| jump × resamplings | guidance | fragments × completions | " + " | ".join(c[1] for c in cols) +
             " | max RMSD (Å) | seconds |", "|---|---|---|" + "---|" * (len(cols) + 2)]
    for r in result["runs"]:
        plain = "" if r.get("connect", True) or not r.get("guidance") else ", plain"
        lines.append(f"| {r['jump']} × {r['resamplings']} | {r.get('guidance', 0):g}{plain} | "
                     f"{r['fragments']} × {r['completions']} | " +
                     " | ".join("–" if r[k] is None else f"{r[k]:.1f}" for k, _ in cols) +
                     f" | {r['max_rmsd']:.2g} | {r['seconds']} |")
    lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
