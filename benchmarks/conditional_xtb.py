"""An independent check of conditional samples: GFN2-xTB (``tblite``) HOMO–LUMO gap and dipole moment of molecules
generated for a sweep of requested values, against the request (Spearman correlation, median shift).

For each property (gap, mu), requests at the 10/30/50/70/90 % quantiles of the generator's unseen training half,
``-n`` samples each; every sample that sanitises gets a GFN2-xTB single point on the geometry as written (heavy
atoms from the model, hydrogens placed by RDKit; nothing relaxed). xTB's gap is not DFT's (it runs lower), so
the figure is the rank correlation and the shift of the median between the lowest and highest request, not an MAE.

    pip install tblite   # bench-only
    python benchmarks/conditional_xtb.py --model qm9-cond -n 40 --threads 1
"""
from __future__ import annotations

import sys

import numpy as np

from moldiff.api import sample
from moldiff.pretrained import resolve_model

import property_judge as pj
from common import RESULTS, command_line, parser, set_threads, write_json, write_text

BOHR = 1.0 / 0.52917721
DEBYE_PER_AU = 2.541746
HARTREE_EV = 27.211386


def xtb(mol) -> tuple[float, float] | None:
    """GFN2-xTB HOMO–LUMO gap (Hartree) and dipole (Debye) of a molecule's conformer; None if it fails."""
    from tblite.interface import Calculator

    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    pos = mol.GetConformer().GetPositions() * BOHR
    try:
        calc = Calculator("GFN2-xTB", numbers, pos, charge=float(sum(a.GetFormalCharge() for a in mol.GetAtoms())))
        calc.set("verbosity", 0)
        res = calc.singlepoint()
    except Exception:  # noqa: BLE001 - an SCF that does not converge
        return None
    eps, occ = res["orbital-energies"], res["orbital-occupations"]
    homo = eps[occ > 1e-6].max()
    lumo = eps[occ <= 1e-6].min()
    return float(lumo - homo), float(np.linalg.norm(res["dipole"]) * DEBYE_PER_AU)


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv=None) -> int:
    ap = parser(__doc__, threads=True, seed=0)
    ap.add_argument("--model", default="qm9-cond")
    ap.add_argument("-n", type=int, default=40, help="samples per requested value")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--guidance", type=float, default=None)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    data = pj.qm9_heavy()
    half = data["splits"]["train_judge"]
    path = resolve_model(args.model)
    out, lines = {}, ["| property | requested | samples (xTB ok) | xTB median | Spearman (all requests) |", "|---|---|---|---|---|"]
    for name, which in (("gap", 0), ("mu", 1)):
        values = data["properties"][name][half].numpy()
        requests = [float(np.quantile(values, q)) for q in (0.1, 0.3, 0.5, 0.7, 0.9)]
        req_all, got_all, per = [], [], []
        for r in requests:
            mols = sample(args.n, path, steps=args.steps, spacing="quadratic", seed=args.seed, condition={name: r},
                          guidance=args.guidance, keep_invalid=False, progress=False, threads=args.threads)
            got = [v[which] for v in map(xtb, mols) if v is not None]
            req_all += [r] * len(got)
            got_all += got
            per.append({"requested": r, "samples_valid": len(mols), "xtb_ok": len(got),
                        "xtb_median": float(np.median(got)) if got else None})
            print(name, per[-1], flush=True)
        rho = spearman(req_all, got_all)
        out[name] = {"requests": per, "spearman": rho,
                     "median_shift_low_to_high": per[-1]["xtb_median"] - per[0]["xtb_median"],
                     "unit": "Hartree" if name == "gap" else "Debye"}
        for p in per:
            lines.append(f"| {name} | {p['requested']:.4g} | {p['samples_valid']} ({p['xtb_ok']}) | "
                         f"{p['xtb_median']:.4g} | {rho:.2f} |")
    write_json(RESULTS / "conditional_xtb.json", {"command": command_line(), "model": args.model,
                                                   "steps": args.steps, "per_request": args.n, **out})
    write_text(RESULTS / "conditional_xtb.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
