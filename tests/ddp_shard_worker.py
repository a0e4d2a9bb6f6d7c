"""Run under torchrun by tests/test_shards.py: a Trainer on a sharded file; each rank writes which shards it
reads and which molecules (shard, position) its first epoch's batches hold, then trains two steps."""
import bisect
import json
import sys
from pathlib import Path

from moldiff.config import load_config
from moldiff.train import Trainer

import os
import traceback

data, run_dir, cache = sys.argv[1:4]
try:
    trainer = Trainer(load_config("tiny"), run_dir, cache, data_file=data, shard_size=4, progress=False,
                      conformer_workers=1)
except Exception:  # the test shows this rank's traceback (torchrun's own report keeps only its summary)
    Path(run_dir).parent.joinpath(f"rank{os.environ.get('RANK')}.err").write_text(traceback.format_exc())
    raise
trainer.override(batch_size=2, eval_samples=0)
train = trainer.train_set
paths = [Path(d.blob["shard"]) for d in train.datasets]
folders = [(p.parent if p.name == "heavy" else p).name for p in paths]
molecules = []
for batch in trainer.epoch_batches(0):
    for i in batch.tolist():
        k = bisect.bisect_right(train.cumulative_sizes, i)
        molecules.append([folders[k], int(train[i].idx)])
Path(run_dir).parent.joinpath(f"rank{trainer.rank}.json").write_text(json.dumps(
    {"rank": trainer.rank, "folders": folders, "steps": len(trainer.epoch_batches(0)), "molecules": molecules}))
trainer.fit(max_steps=2)
