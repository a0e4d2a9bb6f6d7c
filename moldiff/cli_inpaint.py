"""``moldiff inpaint``: keep a fragment (its atoms, bonds and pose), generate N more heavy atoms around it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moldiff.cli import UserError, _positive as positive, check_outputs


def _atom_list(text: str) -> list[int]:
    """``1,2,5`` or ``1-4,7`` → 1-based atom numbers."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                out += list(range(lo, hi + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected atom numbers such as 1,2,5 or 1-4, got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"atom numbers start at 1, got {text!r}")
    return out


def _additions(text: str) -> int | tuple[int, int]:
    """``--add 4`` or a range ``--add 4:8``."""
    try:
        if ":" in text:
            lo, hi = (int(v) for v in text.split(":", 1))
            if not 1 <= lo <= hi:
                raise ValueError
            return lo, hi
        value = int(text)
        if value < 1:
            raise ValueError
        return value
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of atoms or a range LO:HI, got {text!r}") from None


def add_inpaint(sub) -> None:
    p = sub.add_parser("inpaint", help="keep a fragment (atoms, bonds, 3D pose) and generate the rest of the molecule")
    p.add_argument("--fragment", type=Path, required=True, help="SDF/MOL with 3D coordinates; two records (or one "
                   "disconnected record) ask for a linker between them")
    p.add_argument("--add", type=_additions, required=True, metavar="N|LO:HI", help="heavy atoms to add")
    p.add_argument("-n", "--num", type=positive, default=10, help="number of molecules (10)")
    p.add_argument("-o", "--output", type=Path, default=Path("inpainted.sdf"), help="output .sdf/.xyz/.smi")
    p.add_argument("--keep", type=_atom_list, metavar="ATOMS", help="keep only these atoms of FRAG (1-based, "
                   "e.g. 1,2,5 or 1-6; hydrogens are dropped for models with implicit hydrogens)")
    p.add_argument("--anchor", type=_atom_list, metavar="ATOMS", help="atoms where new atoms may bond (default: "
                   "all kept atoms); the others keep their hydrogens")
    p.add_argument("--model", default="qm9", help="built-in model (qm9, moses) or a checkpoint file")
    p.add_argument("--steps", type=positive, help="sampler steps S ≤ T (default: all T)")
    p.add_argument("--spacing", choices=["uniform", "quadratic"], default="uniform")
    p.add_argument("--jump", type=positive, help="RePaint: sampler steps per resampled block (default: "
                   "moldiff.inpainting.DEFAULT_JUMP, measured in benchmarks/results/inpaint_qm9.md)")
    p.add_argument("--resample", type=positive, metavar="R", help="RePaint: walks of each block, 1 = no "
                   "resampling (default: moldiff.inpainting.DEFAULT_RESAMPLINGS, measured there too)")
    p.add_argument("--guidance", type=float, metavar="W", help="reconstruction guidance toward the fragment, 0 = "
                   "none (default: moldiff.inpainting.DEFAULT_GUIDANCE, measured in benchmarks/results/inpaint_qm9.md)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0); molecule k has its own seed")
    p.add_argument("--batch-size", type=positive, default=100)
    p.add_argument("--valid-only", action="store_true", help="write only molecules that RDKit sanitises")
    p.add_argument("--png", type=Path, help="also draw a grid of the molecules to this PNG file")
    p.add_argument("--device", help="cpu, cuda … (default: CUDA where present)")
    p.add_argument("--threads", type=positive, help="CPU threads (default: the cores that are idle now)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_inpaint(args) -> int:
    check_outputs(args.output, args.png)
    from moldiff.chem.io import read_molecules, write_molecules

    mols, problems = read_molecules(args.fragment)
    if not mols:
        raise UserError(problems[0] if problems else f"{args.fragment}: no molecule")
    if problems:
        raise UserError(problems[0])
    from tqdm import tqdm

    from moldiff.api import load
    from moldiff.checkpoint import CheckpointError
    from moldiff.inpainting import (DEFAULT_GUIDANCE, DEFAULT_JUMP, DEFAULT_RESAMPLINGS, Fragment, check_request,
                                    combine, inpaint_molecules)
    from moldiff.pretrained import resolve_model
    from moldiff.runtime import set_threads

    set_threads(args.threads)
    try:
        gen = load(resolve_model(args.model), args.device)
        if args.steps is not None and not 1 <= args.steps <= gen.chain.T:
            raise ValueError(f"--steps must be between 1 and {gen.chain.T}, got {args.steps}")
        fragment = Fragment.from_mol(combine(mols), args.keep, args.anchor,
                                     hydrogens=not gen.config.features.implicit_h)
        check_request(gen, fragment, args.add, args.num, args.seed)
        bar = tqdm(total=args.num, disable=args.no_progress, desc="inpainting", unit="mol")
        out = inpaint_molecules(gen, fragment, args.add, args.num, steps=args.steps, spacing=args.spacing,
                                seed=args.seed, jump=args.jump or DEFAULT_JUMP,
                                resamplings=args.resample or DEFAULT_RESAMPLINGS,
                                guidance=DEFAULT_GUIDANCE if args.guidance is None else args.guidance,
                                batch_size=args.batch_size, on_batch=bar.update)
        bar.close()
    except (ValueError, CheckpointError, FileNotFoundError) as err:
        raise UserError(str(err)) from None
    if args.valid_only:
        out = [m for m in out if m.GetIntProp("moldiff_valid")]
    written, messages = write_molecules(out, args.output)
    for message in messages:
        print(message, file=sys.stderr)
    valid = sum(m.GetIntProp("moldiff_valid") for m in out)
    print(f"wrote {written} molecules to {args.output} ({valid} of them sanitise in RDKit), each holding the "
          f"{fragment.size} fragment atoms first, at their input coordinates")
    if args.png and out:
        from moldiff.draw import draw_grid

        draw_grid(out[:100], args.png, highlight=fragment.size)
        print(f"drew {min(len(out), 100)} molecules to {args.png}")
    return 0
