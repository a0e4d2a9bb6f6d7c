"""Score the EMA snapshots of a run (e.g. those a GPU machine without RDKit wrote) the way training evaluates:
500 samples, 100 sampler steps, seed 0; one row per snapshot appended to the run's snapshot_metrics.jsonl,
which benchmarks/plot_campaign.py draws beside the training log.

    cat snapshots.tar.part-* | tar -xf - -C data/campaign/qm9-bonds     # what benchmarks/gpu/session.sh returned
    python benchmarks/score_snapshots.py data/campaign/qm9-bonds --threads 2
"""
from __future__ import annotations

import json
from pathlib import Path

from moldiff.model import Generator
from moldiff.quality import sample_quality
from moldiff.runtime import set_threads
from moldiff.train import append_metrics

from common import parser, read_jsonl


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, threads="threads (default: the cores idle now, as moldiff train picks them)")
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--keep", action="store_true", help="keep the snapshot files after scoring them")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    out = args.run_dir / "snapshot_metrics.jsonl"
    done = {row["step"] for row in read_jsonl(out)} if out.exists() else set()
    for path in sorted((args.run_dir / "snapshots").glob("*.pt")):
        gen = Generator.from_checkpoint(path)
        if gen.info["step"] not in done:
            row = {"step": gen.info["step"], "epoch": gen.info["epoch"], "hours": round(gen.info["hours"], 5),
                   "source": path.name, **sample_quality(gen, args.n, args.steps, seed=0)}
            append_metrics(out, row)
            print(json.dumps(row))
        if not args.keep:
            path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
