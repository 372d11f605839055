#!/usr/bin/env bash
# Single-GPU check of our training loop (bf16, batch 64, max_length 256) for each backbone:
# pairs/s, GPU utilisation, peak memory and MFU as the loop reports them. Under 8 minutes.
#   bash benchmarks/gpu_check.sh [gpu_check.py flags, e.g. --backbones minilm,gte]
# Exits 2 with one line when no GPU is visible; 124 if it runs past 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
export RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1 RAY_AUTH_MODE=disabled \
       RAY_TRAIN_V2_ENABLED=1 HF_HUB_OFFLINE=1
exec timeout --kill-after=20 480 "$PY" benchmarks/gpu_check.py "$@"
