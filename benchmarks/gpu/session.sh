#!/usr/bin/env bash
# One GPU lease in one command: continue the training campaign on the GPU, run the CUDA tests, and
# (optionally) measure GPU speed. Run from the repository root on the GPU machine, with the training part of
# the QM9 cache carried in .device/cache (made here by `python benchmarks/gpu/prepare.py`). Needs torch,
# torch-geometric and networkx only (no RDKit, no qm9pack). At most 8 files come back, all in $OUT:
#   checkpoint.pt metrics.jsonl   the continued run (copy back to the run folder, RUN)
#   snapshots.tar.part-*          EMA weights every SNAPSHOT_EVERY epochs, at most 8 (score them here, with RDKit)
#   session.log                   GPU, training, test and speed logs
#   speed_cuda_*.json             benchmarks/speed.py results (only with SPEED_SECONDS > 0)
# Budget in seconds: TRAIN_SECONDS (training, then a clean stop), SPEED_SECONDS (0 skips the benchmark).
set -u
export PYTHONUNBUFFERED=1 MOLDIFF_DATA="$PWD/.device/cache" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-runs/gpu_out}
RUN=${RUN:-data/campaign/qm9-bonds-noh}
LOG="$OUT/session.log"
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'pyg', g.__version__)"; } >> "$LOG" 2>&1

work=/tmp/moldiff_run; rm -rf "$work"; cp -r "$RUN" "$work"
hours=$(python3 -c "print(${TRAIN_SECONDS:-330} / 3600)")
timeout -s TERM -k 60 "$(( ${TRAIN_SECONDS:-330} + 90 ))" python3 -m moldiff train --resume --run-dir "$work" \
    --device "${DEVICE:-cuda}" --workers "${WORKERS:-8}" --batch-size "${BATCH:-512}" --eval-samples 0 \
    --snapshot-every "${SNAPSHOT_EVERY:-2}" --no-progress --max-hours "$hours" >> "$LOG" 2>&1
echo "train exit $?" >> "$LOG"
cp "$work/checkpoint.pt" "$work/metrics.jsonl" "$OUT/"
if [ -d "$work/snapshots" ]; then  # at most 8 of them (27 MB), evenly spaced, the last one included
    keep=$(cd "$work" && ls snapshots/*.pt | sort | python3 -c "
import sys; s = sys.stdin.read().split(); k = -(-len(s) // 8); print(' '.join(s[::-1][::k][::-1]))")
    tar -C "$work" -cf - $keep | split -b 15M - "$OUT/snapshots.tar.part-"
fi

timeout 120 python3 -m pytest -q tests/test_cuda.py >> "$LOG" 2>&1; echo "tests exit $?" >> "$LOG"

if [ "${SPEED_SECONDS:-0}" -gt 0 ]; then
    timeout -k 10 "$SPEED_SECONDS" python3 benchmarks/speed.py --preset edm --device "${DEVICE:-cuda}" --repeats 10 \
        --variants fast:fp32,fast:bf16 --max-batch 1024 --only train,largest,sample19 \
        --json "$OUT/speed_cuda_edm.json" >> "$LOG" 2>&1
    timeout -k 10 60 python3 benchmarks/speed.py --preset qm9-bonds --device "${DEVICE:-cuda}" --repeats 10 \
        --batch "${BATCH:-512}" --variants fast:fp32 --max-batch 0 --only train,sample19 \
        --json "$OUT/speed_cuda_qm9-bonds.json" >> "$LOG" 2>&1
fi
tail -n 40 "$LOG"
