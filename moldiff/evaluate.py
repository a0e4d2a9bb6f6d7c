"""``moldiff evaluate``: judge molecule files (or QM9 itself) with the benchmark metrics.

Usage::

    moldiff evaluate FILE [FILE...] [--reference qm9|none] [--json PATH] [--perceive]
    moldiff evaluate --dataset qm9 --split test -n 10000

Molecules of all files (``.sdf``/``.mol``, ``.xyz``, ``.smi``, each optionally ``.gz``) are pooled. Molecules
without 3D coordinates (SMILES) are scored on what applies; the report lists the skipped metrics and why.
Errors are one line each on stderr, file content in them escaped and shortened. Exit codes: 0 when some
molecules were scored (bad records are reported and skipped), 2 for bad input (nothing readable, an input
that is a folder, FIFO or device, a ``--json`` path that is an input), 1 when the report cannot be written.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from moldiff.io_utils import atomic_write

if TYPE_CHECKING:  # RDKit is imported when molecules are judged, not when the command line is built
    from moldiff.chem.reference import Reference

LABELS = {
    "atom_stability": "atom stability (protocol)",
    "molecule_stability": "molecule stability (protocol)",
    "validity": "validity (protocol, EDM)",
    "connected_validity": "connected and valid (protocol)",
    "uniqueness": "uniqueness",
    "novelty": "novelty",
    "sanitises_as_given": "sanitises as given (own bonds)",
    "charge_atom_stability": "atom stability (own bonds, charges)",
    "charge_molecule_stability": "molecule stability (own bonds, charges)",
    "perception": "bond perception succeeds (rdDetermineBonds)",
    "atom_type_tv": "atom types, total variation",
    "bond_length_w1": "bond lengths, W1",
    "bond_angle_w1": "bond angles, W1",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` options to ``parser``."""
    parser.add_argument("files", nargs="*", metavar="FILE", help="molecule files: .sdf/.mol, .xyz, .smi")
    parser.add_argument("--dataset", choices=["qm9"], help="evaluate real molecules of a dataset instead of files")
    parser.add_argument("--split", choices=["train", "valid", "test"], default="test", help="dataset split (test)")
    parser.add_argument("-n", "--limit", type=int, default=None,
                        help="with --dataset: a fixed random subset of this many molecules (see --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --dataset subset (0)")
    parser.add_argument("--reference", choices=["qm9", "none"], default="qm9",
                        help="training statistics for novelty and distribution distances; the first use "
                             "computes and caches them (about a minute)")
    parser.add_argument("--perceive", action="store_true",
                        help="also report how often rdDetermineBonds perceives bonds and charges")
    parser.add_argument("--geometry", type=int, default=200, metavar="N",
                        help="MMFF94 strain (energy drop on relaxing, hydrogens relaxed first; kcal/mol) and "
                             "heavy-atom RMSD to the relaxed geometry of the first N molecules that MMFF94 can "
                             "judge (200; 0: skip); with --dataset, of its own geometries (bonds perceived by RDKit)")
    parser.add_argument("--posebusters", type=int, default=0, metavar="N",
                        help="PoseBusters' checks for generated molecules (bond lengths and angles, planarity, "
                             "clashes, internal energy) on the first N molecules that sanitise (0, the default: "
                             "skip; seconds per molecule; needs pip install posebusters); with --dataset, of its own geometries")
    parser.add_argument("--xtb", type=int, default=0, metavar="N",
                        help="GFN2-xTB strain and heavy-atom RMSD (the MMFF94 protocol with xTB's energies: "
                             "hydrogens relaxed first, then all; kcal/mol) of the first N molecules that sanitise "
                             "(0, the default: skip; about a second per molecule; needs pip install tblite ase); "
                             "with --dataset, of its own geometries")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write all figures to this JSON file")


def qm9_sample(split: str = "test", n: int | None = None, seed: int = 0) -> list:
    """RawMolecules of a QM9 split in file order; with ``n``, a fixed random subset (``default_rng(seed)``)."""
    from moldiff.data.raw import iter_qm9, split_positions

    positions = split_positions()[split]
    if n is not None and n < len(positions):
        positions = np.sort(np.random.default_rng(seed).choice(positions, size=n, replace=False))
    wanted = np.zeros(max(int(positions.max()) + 1, 1), dtype=bool) if len(positions) else np.zeros(1, bool)
    wanted[positions] = True
    out = []
    for k, rec in enumerate(iter_qm9(limit=len(wanted))):
        if wanted[k]:
            out.append(rec)
    return out


def _err(message: str) -> None:
    """One line on stderr, control characters escaped (file contents never reach the terminal raw)."""
    from moldiff.chem.io import printable

    print(printable(message, limit=2000), file=sys.stderr)


def _perception(structures: Sequence[tuple[Sequence[str], np.ndarray]]) -> dict:
    from moldiff.chem.metrics import Proportion
    from moldiff.chem.perceive import perceive_mol

    ok = 0
    for elements, pos in structures:
        try:
            ok += perceive_mol(elements, pos)[1] is None
        except ValueError:
            pass
    return Proportion(ok, len(structures)).as_dict() | {
        "definition": "rdDetermineBonds finds bond orders and formal charges (total charge 0) that sanitise"}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    return obj


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or a.samefile(b)
    except (OSError, RuntimeError):
        return False


def _not_regular(path: Path) -> str | None:
    """What an existing path that is not a regular file is, without opening it; ``None`` otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return ("a directory" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")


def check_paths(files: Sequence[str | os.PathLike], out: str | os.PathLike | None) -> str | None:
    """Why the inputs and the ``--json`` path cannot be used (an input that is a folder, FIFO or device; a
    report that would overwrite an input or a non-regular file), or ``None``. Nothing is opened."""
    for name in files:
        kind = _not_regular(Path(name))
        if kind:
            return f"{name} is {kind}, not a regular file: refused"
    if out is None:
        return None
    out = Path(out)
    for name in files:
        if _same_file(Path(name), out):
            return f"--json {out} is one of the input files ({name}): refusing to overwrite it"
    kind = _not_regular(out)
    if kind:
        return f"--json {out} is {kind}: refusing to replace it"
    return None


def write_json(data: dict, path: Path) -> None:
    """Write ``data`` as JSON atomically (temp file in the same directory + ``os.replace``)."""
    atomic_write(path, (json.dumps(_jsonable(data), indent=2) + "\n").encode())


STRAIN_JUDGES = {"mmff_strain": "MMFF94", "xtb_strain": "GFN2-xTB"}  # metric → the force field in its report lines


def format_report(result: dict) -> str:
    """Readable table of an ``evaluate`` result."""
    lines = [f"{'metric':<42} {'value':>10}  {'95 % interval':<18} {'count':>15}"]
    skipped = []
    for name, m in result["metrics"].items():
        label = LABELS.get(name, name)
        if "skipped" in m:
            skipped.append(f"  {label}: {m['skipped']}")
        elif name in STRAIN_JUDGES:
            judge = STRAIN_JUDGES[name]
            if m.get("judged"):
                lines.append(f"{judge + ' strain, median / p90':<42} {m['strain_median']:>8.2f} / "
                             f"{m['strain_p90']:.2f} kcal/mol  ({m['judged']} molecules)")
                lines.append(f"{'  heavy-atom RMSD on relaxing, median / p90':<42} {m['rmsd_median']:>8.3f} / "
                             f"{m['rmsd_p90']:.3f} Å")
            else:
                skipped.append(f"  {judge} strain: no molecule {judge} can judge")
        elif name == "posebusters":
            if m.get("molecules"):
                missing = "".join(f"; {c} not computed for {k}" for c, k in m.get("not_computed", {}).items())
                lines.append(f"{'PoseBusters, all checks pass':<42} {100 * m['all_pass']:>8.2f} %  "
                             f"({m['molecules']} molecules{missing})")
                failing = sorted((v, c) for c, v in m["per_check"].items() if v < 1)[:3]
                if failing:
                    lines.append(f"{'  most failed':<42} " + ", ".join(f"{c} {100 * v:.0f} %" for v, c in failing))
            else:
                skipped.append("  PoseBusters: no molecule to judge")
        elif "ci95" in m:
            lo, hi = m["ci95"]
            lines.append(f"{label:<42} {100 * m['value']:>8.2f} %  [{100 * lo:6.2f}, {100 * hi:6.2f}]   "
                         f"{m['count']:>7}/{m['total']:<7}")
        else:
            unit = m.get("unit", "")
            lines.append(f"{label:<42} {m['value']:>10.4f}  {unit}")
    if skipped:
        lines += ["skipped:", *skipped]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``moldiff evaluate``; returns the exit code (2 for bad input: nothing readable, a --json path that
    is one of the inputs; 1 when the report cannot be written)."""
    start = time.perf_counter()
    files = list(getattr(args, "files", None) or [])
    dataset = getattr(args, "dataset", None)
    if not files and not dataset:
        _err("moldiff evaluate: give molecule files or --dataset qm9")
        return 2
    problem = check_paths(files, getattr(args, "json", None))
    if problem:
        _err(f"moldiff evaluate: {problem}")
        return 2

    from moldiff.chem.build import mol_elements, mol_positions
    from moldiff.chem.io import read_molecules
    from moldiff.chem.metrics import evaluate_judgements, judge, judge_protocol
    from moldiff.data.reference_qm9 import load_reference, reference_path
    structures: list[tuple[Sequence[str], np.ndarray]] = []
    judgements = []
    file_mols: list = []
    n_errors = 0
    source: dict = {}
    if dataset:
        try:
            records = qm9_sample(args.split, args.limit, args.seed)
        except (OSError, ValueError) as exc:
            _err(f"moldiff evaluate: cannot read QM9: {exc}")
            records = []
        structures = [(r.elements, r.pos) for r in records]
        judgements = [judge_protocol(e, p) for e, p in structures]
        source = {"dataset": dataset, "split": args.split, "n": len(records), "seed": args.seed}
    for name in files:
        mols, errors = read_molecules(name)
        for message in errors:
            _err(message)
        n_errors += len(errors)
        judgements += [judge(m) for m in mols]
        file_mols += mols
        structures += [(mol_elements(m), p) for m in mols if (p := mol_positions(m)) is not None]
        source.setdefault("files", []).append({"path": str(name), "molecules": len(mols), "errors": len(errors)})
    if not judgements:
        _err("moldiff evaluate: no molecule could be read")
        return 2
    if files and structures and not any("H" in elements for elements, _ in structures):
        _err("moldiff evaluate: warning: no molecule has explicit hydrogens; the distance protocol's atom and "
             "molecule stability need them (heavy-atom-only files score 0 % molecule stability)")

    reference: Reference | None = None
    if args.reference != "none":
        try:
            if not reference_path(args.reference).exists():
                _err(f"moldiff evaluate: computing the {args.reference} training reference once "
                     f"(about a minute), cached in {reference_path(args.reference).parent}")
            reference = load_reference(args.reference, progress=True, say=_err)
        except (OSError, ValueError) as exc:
            _err(f"moldiff evaluate: reference {args.reference!r} unavailable ({exc}); novelty and distances skipped")
    result = evaluate_judgements(judgements, reference)
    if getattr(args, "perceive", False):
        if structures:
            result["metrics"]["perception"] = _perception(structures)
        else:
            result["metrics"]["perception"] = {"skipped": "no molecule has 3D coordinates"}
    n_geometry = getattr(args, "geometry", 0) or 0
    n_busters = getattr(args, "posebusters", 0) or 0
    n_xtb = getattr(args, "xtb", 0) or 0
    if dataset and not files and (n_geometry or n_busters or n_xtb):  # its own geometries, bonds perceived
        file_mols = _perceived(structures, max(n_geometry, n_busters, n_xtb))
    if n_geometry > 0 and file_mols:
        from moldiff.chem.geometry import strain_summary
        result["metrics"]["mmff_strain"] = dict(strain_summary(_first_judgeable(file_mols, n_geometry)),
                                                definition="MMFF94: hydrogens relaxed with heavy atoms fixed, then "
                                                "all; strain = energy drop of the second relaxation (kcal/mol), "
                                                "RMSD = heavy-atom RMSD before/after it (Å)")
    if n_busters > 0 and file_mols:
        from moldiff.chem.posebusters import PoseBustersMissing, posebusters_summary
        try:
            result["metrics"]["posebusters"] = dict(posebusters_summary(_first_judgeable(file_mols, n_busters)),
                                                    definition="PoseBusters, config 'mol' (the posebusters package)")
        except PoseBustersMissing as exc:
            result["metrics"]["posebusters"] = {"skipped": str(exc)}
    if n_xtb > 0 and file_mols:
        from moldiff.chem.xtb import XTBMissing, xtb_summary
        try:
            result["metrics"]["xtb_strain"] = dict(xtb_summary(_first_judgeable(file_mols, n_xtb)),
                                                   definition="GFN2-xTB (tblite) with ASE's L-BFGS: hydrogens "
                                                   "relaxed with heavy atoms fixed, then all; strain = energy drop "
                                                   "of the second relaxation (kcal/mol), RMSD = heavy atoms (Å)")
        except XTBMissing as exc:
            result["metrics"]["xtb_strain"] = {"skipped": str(exc)}
    result["source"] = source
    result["unreadable_records"] = n_errors
    result["reference"] = None if reference is None else reference.name
    result["wall_time_s"] = round(time.perf_counter() - start, 3)

    head = f"{len(judgements)} molecules"
    if files:
        head += f" from {len(files)} file(s), {n_errors} unreadable record(s)"
    if dataset:
        head += f" of {dataset} {args.split}"
    print(f"moldiff evaluate: {head}; {result['n_3d']} with 3D coordinates; reference: {result['reference']}")
    print(format_report(result))
    if getattr(args, "json", None):
        try:
            write_json(result, Path(args.json))
        except OSError as exc:
            _err(f"moldiff evaluate: cannot write {args.json}: {exc.strerror or exc}")
            return 1
        print(f"figures written to {args.json}")
    return 0


def _perceived(structures: list, n: int) -> list:
    """RDKit molecules of the first ``n`` structures whose bonds and charges RDKit perceives from the coordinates."""
    from moldiff.chem.perceive import perceive_mol

    out = []
    for elements, pos in structures:
        if len(out) >= n:
            break
        mol, error = perceive_mol(elements, pos)
        if error is None:
            out.append(mol)
    return out


def _first_judgeable(mols: list, n: int) -> list:
    """The first ``n`` molecules with a 3D conformer that sanitise (the ones MMFF94 may judge)."""
    from rdkit import Chem, rdBase

    out = []
    with rdBase.BlockLogs():
        for m in mols:
            if len(out) >= n:
                break
            if m is None or m.GetNumConformers() == 0 or not m.GetConformer().Is3D():
                continue
            work = Chem.Mol(m)
            try:
                Chem.SanitizeMol(work)
            except (ValueError, RuntimeError):
                continue
            out.append(work)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m moldiff.evaluate``)."""
    parser = argparse.ArgumentParser(prog="moldiff evaluate", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
