"""Wall-clock A/B of the same moldiff commands from two source trees (e.g. before and after a refactor).

    python benchmarks/ab_trees.py --a /tmp/before --b . --repeats 5 --json benchmarks/results/redesign_ab.json

Each case runs as a fresh ``python -m moldiff ...`` process with ``PYTHONPATH`` set to the tree, A and B
interleaved (A, B, A, B, ...) so that background load hits both alike; medians and the B/A ratio of the
median are reported. Both trees read the same processed-data cache (``$MOLDIFF_DATA``). The cases:
sampling with the shipped model (one thread, one batch) and training steps of the shipped model's preset.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import command_line, machine_info, parser, write_json

CASES = {
    "sample_250x200": ["sample", "-n", "250", "--steps", "200", "--threads", "1", "--seed", "0", "--no-progress"],
    "train_noh_40_steps": ["train", "--preset", "qm9-bonds-noh", "--max-steps", "40", "--threads", "1",
                           "--eval-samples", "0", "--eval-every", "1000", "--no-progress"],
}


def run_case(tree: Path, args: list[str], workdir: Path, data: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "MOLDIFF_DATA": data, "OMP_NUM_THREADS": "1"}
    extra = []
    if args[0] == "sample":
        extra = ["-o", str(workdir / "out.sdf")]
    else:
        run = Path(tempfile.mkdtemp(dir=workdir))
        extra = ["--run-dir", str(run / "run")]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "moldiff", *args, *extra], env=env, cwd=workdir,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{tree}: moldiff {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return seconds


def main() -> None:
    ap = parser(__doc__, json=None)
    ap.add_argument("--a", type=Path, required=True, help="tree A (the baseline)")
    ap.add_argument("--b", type=Path, required=True, help="tree B")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--data", default=os.environ.get("MOLDIFF_DATA", str(Path("data/cache").resolve())))
    args = ap.parse_args()
    info = machine_info()
    out = {"command": command_line(), "cpu": info["cpu_model"], "cores": info["cpu_count"], "python": info["python"],
           "load_average_start": os.getloadavg(), "time": info["time"],
           "a": str(args.a), "b": str(args.b), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            times = {"a": [], "b": []}
            for _ in range(args.repeats):
                for side, tree in (("a", args.a), ("b", args.b)):
                    times[side].append(round(run_case(tree, CASES[name], Path(tmp), args.data), 3))
            med = {k: statistics.median(v) for k, v in times.items()}
            out["cases"][name] = {"args": CASES[name], "seconds": times, "median": med,
                                  "ratio_b_over_a": round(med["b"] / med["a"], 3)}
            print(name, json.dumps(out["cases"][name]["median"]), out["cases"][name]["ratio_b_over_a"], flush=True)
    out["load_average_end"] = os.getloadavg()
    if args.json:
        write_json(args.json, out, info=info)


if __name__ == "__main__":
    main()
