#!/usr/bin/env bash
# One GPU lease in one command: continue the training campaign on the GPU, run the CUDA tests, and
# measure GPU speed. Run from the repository root on the GPU machine, with the training part of the
# QM9 cache carried in .device/cache (made here by `python benchmarks/gpu/prepare.py`). Needs torch,
# torch-geometric and networkx only (no RDKit, no qm9pack). Everything it makes goes to $OUT:
#   checkpoint.pt metrics.jsonl config.json   the continued run (bring back to data/campaign/...)
#   train.log tests.log speed_*.json speed.log gpu.txt
# Budget in seconds: TRAIN_SECONDS (training, then a clean SIGTERM stop), SPEED_SECONDS.
set -u
export PYTHONUNBUFFERED=1 MOLDIFF_DATA="$PWD/.device/cache"
OUT=${OUT:-runs/gpu_out}
RUN=${RUN:-data/campaign/qm9-bonds}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'pyg', g.__version__)" | tee -a "$OUT/gpu.txt"

work=/tmp/moldiff_run; rm -rf "$work"; cp -r "$RUN" "$work"
timeout -s TERM -k 60 "$(( ${TRAIN_SECONDS:-330} + 90 ))" python3 -m moldiff train --resume --run-dir "$work" --device "${DEVICE:-cuda}" \
    --workers "${WORKERS:-8}" --batch-size "${BATCH:-256}" --eval-samples 0 --no-progress --max-hours "$(python3 -c "print(${TRAIN_SECONDS:-330} / 3600)")" > "$OUT/train.log" 2>&1
echo "train exit $?" >> "$OUT/train.log"
cp "$work/checkpoint.pt" "$work/metrics.jsonl" "$work/config.json" "$OUT/"

timeout 120 python3 -m pytest -q tests/test_cuda.py > "$OUT/tests.log" 2>&1; echo "tests exit $?" >> "$OUT/tests.log"

timeout -k 10 "${SPEED_SECONDS:-150}" python3 benchmarks/speed.py --preset edm --device "${DEVICE:-cuda}" --repeats 10 \
    --variants fast:fp32,fast:bf16 --max-batch 1024 --only train,largest,sample19 \
    --json "$OUT/speed_cuda_edm.json" > "$OUT/speed.log" 2>&1
timeout -k 10 60 python3 benchmarks/speed.py --preset qm9-bonds --device "${DEVICE:-cuda}" --repeats 10 --batch 256 \
    --variants fast:fp32 --max-batch 0 --only train,sample19 --json "$OUT/speed_cuda_qm9-bonds.json" >> "$OUT/speed.log" 2>&1
tail -n 5 "$OUT/train.log" "$OUT/tests.log"; tail -n 30 "$OUT/speed.log"
