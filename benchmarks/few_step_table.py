"""The few-step table: quality against network evaluations for each sampler at S = 20 (and 25), beside the 1,000-step
chain, from the JSON files of benchmarks/quality.py (same model, seed and number of molecules).

    for cfg in "ancestral quadratic" "ancestral cubic" "dpm2m logsnr" "sde-dpm2m quadratic" "sde-dpm2m cubic" \\
               "sde-dpm2m logsnr"; do  # the last one was run with --threads 2
      set -- $cfg; extra=""; [ $1 != ancestral ] && extra="--solver $1"
      python benchmarks/quality.py -n 1000 --steps 20 --spacing $2 $extra --threads 1 \\
          --json benchmarks/results/few_step_${1}_${2}.json
    done
    python benchmarks/quality.py -n 1000 --steps 25 --spacing quadratic --solver sde-dpm2m --threads 1 \\
        --json benchmarks/results/few_step_sde-dpm2m_quadratic_25.json
    python benchmarks/few_step_table.py
"""
from __future__ import annotations

import json
import sys

from common import RESULTS, write_text

REFERENCE = RESULTS / "quality_noh_cooldown31.json"  # the shipped model, 1,000 ancestral steps, same seed and n
IDLE_ONE_THREAD = {"few_step_sde-dpm2m_quadratic_25.json", "few_step_sde-dpm2m_quadratic_30.json"}
# the 1,000-step chain on today's code at seed 0: the same per-molecule seeds as the few-step rows (REFERENCE was
# measured on the earlier batch random stream, i.e. on other molecules; README "Seeds changed")
SAME_STREAM = RESULTS / "quality_today_1000_seed0.json"  # rows not measured beside training
COLUMNS = [("molecule_stability", "mol. stab."), ("validity", "validity"), ("connected_validity", "connected valid"),
           ("uniqueness", "uniqueness"), ("charge_molecule_stability", "mol. stab. (own bonds)")]


def row(path) -> tuple[str, int, dict, float | str | None]:
    d = json.loads(path.read_text())
    r = d["runs"][0]
    solver = r["sampler"].split(",")[0]
    nfe = r["steps"] + (1 if solver in ("ancestral", "ddim") else 0)  # the chain's own steps end on an x̂ evaluation
    sec = r.get("sample_seconds")
    if sec is not None and "--threads 1" not in d.get("command", "--threads 1"):
        sec = f"{sec} (2 threads, machine otherwise idle)"
    elif sec is not None and path.name in IDLE_ONE_THREAD:
        sec = f"{sec} (1 thread, machine otherwise idle)"
    return r["sampler"], nfe, r["figures"], sec


def main() -> int:
    files = sorted(RESULTS.glob("few_step_*.json"))
    old = row(REFERENCE)
    rows = [(old[0] + " (earlier random stream: other molecules)", *old[1:])] + [row(f) for f in files]
    ref = rows[0][2]
    if SAME_STREAM.exists():  # compare like with like: same code, same seeds
        today = row(SAME_STREAM)
        rows.insert(1, (today[0] + " (today's code, same seeds as the rows below)", *today[1:]))
        ref = today[2]
    lines = ["# Few-step samplers on the shipped QM9 model", "",
             "1,000 molecules each, seed 0, one thread, the EDM distance protocol (hydrogens placed by RDKit: not "
             "like-for-like with models that generate them). Rows from `benchmarks/quality.py` (commands in "
             "`benchmarks/few_step_table.py`); the sampling seconds were measured beside a training process on "
             "the other core unless the row says otherwise. Δ: points against the 1,000-step chain with the same seeds "
             "(today's code where that row exists; the first row drew other molecules).", "",
             "| sampler | network evaluations | " + " | ".join(c[1] for c in COLUMNS) +
             " | Δ mol. stab. | Δ validity | seconds |", "|---|---|" + "---|" * (len(COLUMNS) + 3)]
    for name, nfe, fig, sec in rows:
        lines.append(f"| {name} | {nfe} | " + " | ".join(f"{fig[k]:.1f}" for k, _ in COLUMNS) +
                     f" | {fig['molecule_stability'] - ref['molecule_stability']:+.1f} | "
                     f"{fig['validity'] - ref['validity']:+.1f} | {sec if sec is not None else '–'} |")
    write_text(RESULTS / "few_step.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
