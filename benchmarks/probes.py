"""Hostile and careless input, probe by probe, against one or two source trees: exit code, first line of
stderr, whether a traceback was printed, whether it hung.

    python benchmarks/probes.py --tree /path/to/old/checkout --tree . --json benchmarks/results/probes.json

Each probe runs ``python -m moldiff ...`` in a fresh process with ``PYTHONPATH`` set to the tree, in a scratch
folder holding the crafted files (made once, with the current tree's torch). A probe that runs longer than
``--timeout`` seconds counts as hung.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch


def craft(root: Path, shipped: Path) -> None:
    """The files the probes feed to moldiff."""
    blob = torch.load(shipped, weights_only=True)
    for key in ("config", "stats", "model"):
        torch.save({k: v for k, v in blob.items() if k != key}, root / f"no_{key}.pt")
    torch.save({**blob, "config": ["not", "a", "table"]}, root / "config_list.pt")
    weights = dict(blob["model"])
    weights[next(k for k in weights if k.endswith("weight"))] = torch.zeros(3, 3)
    torch.save({**blob, "model": weights}, root / "wrong_shapes.pt")
    torch.save({"format": blob["format"], "config": {}, "hook": print}, root / "pickled_code.pt")
    (root / "garbage.pt").write_bytes(os.urandom(2048))
    run = root / "exported_run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(shipped.read_bytes())
    (root / "a_file").write_text("x")
    (root / "wrong_type.toml").write_text('[train]\nlr = "fast"\n')
    (root / "float_layers.toml").write_text("[model]\nlayers = 2.5\n")
    (root / "unknown_table.toml").write_text("[modle]\nhidden = 3\n")
    (root / "zero.sdf").symlink_to("/dev/zero")
    os.mkfifo(root / "pipe.sdf")
    (root / "folder.sdf").mkdir()
    (root / "escapes.smi").write_text("CCO \x1b[2J\x1b]0;pwned\x07\nC1CC\x1b[31m x\n")
    (root / "long.smi").write_text("C" * (5 * 10**6) + "\n")
    (root / "empty.sdf").write_text("")
    (root / "mols.smi").write_text("CCO\nc1ccccc1\n")
    (root / "mols.smi.gz").write_bytes(gzip.compress(b"CCO\nc1ccccc1\n"))
    (root / "heavy.xyz").write_text("3\nethanol heavy atoms\nC 0 0 0\nC 1.52 0 0\nO 2.0 1.3 0\n")


PROBES = [  # (kind, arguments)
    ("bare command", []),
    ("version", ["--version"]),
    ("sample --device cuda (no GPU)", ["sample", "-n", "1", "--device", "cuda", "-o", "o.sdf"]),
    ("sample --device mps", ["sample", "-n", "1", "--device", "mps", "-o", "o.sdf"]),
    ("sample --device bogus", ["sample", "-n", "1", "--device", "bogus", "-o", "o.sdf"]),
    ("train --device cuda (no GPU)", ["train", "--device", "cuda", "--run-dir", "r1"]),
    ("train --device mps", ["train", "--device", "mps", "--run-dir", "r2"]),
    ("train --device bogus", ["train", "--device", "bogus", "--run-dir", "r3"]),
    ("train --run-dir is a file", ["train", "--run-dir", "a_file", "--limit", "20", "--max-steps", "1"]),
    ("checkpoint without config", ["sample", "-n", "1", "--checkpoint", "no_config.pt", "-o", "o.sdf"]),
    ("checkpoint without stats", ["sample", "-n", "1", "--checkpoint", "no_stats.pt", "-o", "o.sdf"]),
    ("checkpoint without model", ["sample", "-n", "1", "--checkpoint", "no_model.pt", "-o", "o.sdf"]),
    ("checkpoint config of wrong type", ["sample", "-n", "1", "--checkpoint", "config_list.pt", "-o", "o.sdf"]),
    ("checkpoint weights of wrong shape", ["sample", "-n", "1", "--checkpoint", "wrong_shapes.pt", "-o", "o.sdf"]),
    ("checkpoint with pickled code", ["sample", "-n", "1", "--checkpoint", "pickled_code.pt", "-o", "o.sdf"]),
    ("checkpoint of random bytes", ["sample", "-n", "1", "--checkpoint", "garbage.pt", "-o", "o.sdf"]),
    ("train --resume on an exported file", ["train", "--resume", "--run-dir", "exported_run", "--limit", "20"]),
    ("TOML value of wrong type", ["train", "--config", "wrong_type.toml", "--run-dir", "r4", "--limit", "20",
                                  "--max-steps", "1"]),
    ("TOML float for an int", ["train", "--config", "float_layers.toml", "--run-dir", "r5", "--limit", "20",
                               "--max-steps", "1"]),
    ("TOML unknown table", ["train", "--config", "unknown_table.toml", "--run-dir", "r6", "--limit", "20",
                            "--max-steps", "1"]),
    ("sample --atoms 14 (trained on ≤ 9)", ["sample", "-n", "2", "--steps", "20", "--atoms", "14", "-o", "o.sdf"]),
    ("sample -n 0", ["sample", "-n", "0"]),
    ("evaluate /dev/zero (as .sdf)", ["evaluate", "zero.sdf", "--reference", "none"]),
    ("evaluate a named pipe", ["evaluate", "pipe.sdf", "--reference", "none"]),
    ("evaluate a folder", ["evaluate", "folder.sdf", "--reference", "none"]),
    ("evaluate --json onto the input", ["evaluate", "mols.smi", "--reference", "none", "--json", "mols.smi"]),
    ("evaluate escape sequences", ["evaluate", "escapes.smi", "--reference", "none"]),
    ("evaluate a 5 MB SMILES line", ["evaluate", "long.smi", "--reference", "none"]),
    ("evaluate an empty file", ["evaluate", "empty.sdf", "--reference", "none"]),
    ("evaluate .smi.gz", ["evaluate", "mols.smi.gz", "--reference", "none"]),
    ("evaluate a file without hydrogens", ["evaluate", "heavy.xyz", "--reference", "none"]),
]


def run_probe(tree: Path, args: list[str], cwd: Path, timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run([sys.executable, "-m", "moldiff", *args], cwd=cwd, env=env, capture_output=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"exit": None, "hung": True, "traceback": False, "message": f"(no answer in {timeout:.0f} s)"}
    err = done.stderr.decode(errors="replace")
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    tb = "Traceback (most recent call last)" in err
    message = (lines[-1] if tb else (lines[0] if lines else done.stdout.decode(errors="replace").split("\n")[0]))
    return {"exit": done.returncode, "hung": False, "traceback": tb, "raw_escape": "\x1b" in err,
            "stderr_lines": len(lines), "message": message.encode("unicode_escape").decode()[:160]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, action="append", required=True, help="source tree (repeat: A, B)")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    shipped = Path(__file__).resolve().parents[1] / "moldiff" / "pretrained" / "qm9.pt"
    out = {"command": "python benchmarks/probes.py " + " ".join(sys.argv[1:]), "trees": [str(t) for t in args.tree],
           "probes": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        craft(root, shipped)
        for kind, probe in PROBES:
            row = {"kind": kind, "args": probe}
            for k, tree in enumerate(args.tree):
                row[f"tree{k}"] = run_probe(tree, probe, root, args.timeout)
            out["probes"].append(row)
            print(kind, "|", " | ".join(f"{row[f'tree{k}']['exit']} {row[f'tree{k}']['message'][:70]}"
                                        for k in range(len(args.tree))), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
