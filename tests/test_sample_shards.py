"""torchrun with two gloo processes shares one sampling run: exactly N molecules, each seed once, the same
molecules as one process makes, merged into one file."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from rdkit import Chem

from moldiff.cli import main
from moldiff.sample_shards import shard_range


def test_shard_ranges_cover_the_run_once():
    for n, world in ((7, 2), (5, 3), (2, 4)):
        covered = [k for r in range(world) for k in range(*shard_range(n, r, world))]
        assert covered == list(range(n))


def test_two_processes_make_the_molecules_of_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "shared.sdf"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29537",
           "-m", "moldiff", "sample", "-n", "7", "--steps", "10", "-o", str(out), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote 7 molecules" in done.stdout and not list(tmp_path.glob("*.rank*"))
    shared = list(Chem.SDMolSupplier(str(out), sanitize=False, removeHs=False))
    assert [m.GetIntProp("moldiff_index") for m in shared] == list(range(7))  # N molecules, each seed once
    assert main(["sample", "-n", "7", "--steps", "10", "-o", str(tmp_path / "one.sdf"), "--threads", "1",
                 "--no-progress"]) == 0
    single = list(Chem.SDMolSupplier(str(tmp_path / "one.sdf"), sanitize=False, removeHs=False))
    for a, b in zip(shared, single):
        assert a.GetNumAtoms() == b.GetNumAtoms()
        assert np.allclose(a.GetConformer().GetPositions(), b.GetConformer().GetPositions(), atol=0.05)
