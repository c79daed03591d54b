#!/usr/bin/env bash
# The GPU path's prepared check, for a machine with one CUDA GPU; about 8 minutes.
#
#   bash benchmarks/gpu_check.sh
#
# 1. the `cuda` tests (tests/test_cuda.py: every model family, the precision choice, no sync per
#    batch, a trial that does not fit, the device tags), their output in gpu_tests.txt;
# 2. benchmarks/throughput.py on the GPU: ours vs the seeds' DataLoader way, TFLOP/s and % of
#    the bf16 peak per task, into throughput_gpu.md;
# 3. benchmarks/compile_gain.py: eager vs torch.compile per seed baseline, and whether compiling
#    pays inside a 10-minute trial, into compile_gpu.md (what trainables.compiled.PAYS_ON_CUDA is
#    to list);
# 4. a font search packing four trials on the GPU (--gpus 1 --gpus-per-trial 0.25) for 3 minutes,
#    its leaderboard copied into gpu_search/.
# Everything goes to reports/benchmarks/; commit what it writes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=reports/benchmarks
mkdir -p "$out/gpu_search"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu_tests.txt"

echo "== cuda tests"
# (Failures are in gpu_tests.txt; the benchmarks still run: a GPU session is rare and short.)
python -m pytest -q -m cuda tests/test_cuda.py 2>&1 | tee -a "$out/gpu_tests.txt" || true

echo "== throughput on the GPU"
timeout 240 python benchmarks/throughput.py --gpus 1 --out "$out/throughput_gpu.md"

echo "== torch.compile per model family"
# (Not fatal: a compiler that hangs must not cost the search below its turn.)
# One task per model family (emnist_digit_letter shares emnist's LSTM).
timeout 150 python benchmarks/compile_gain.py --tasks font,emnist,mnist,cifar10,cifar100 --images 8000 \
    --out "$out/compile_gpu.md" \
    || echo "compile_gain.py did not finish (exit $?)" | tee -a "$out/gpu_tests.txt"

echo "== a packed font search, 3 minutes"
results=$(mktemp -d)
timeout 300 python search/run.py --space spaces/font.py --quick --gpus 1 --gpus-per-trial 0.25 \
    --time-budget 180 --trial-budget 60 --name gpu-check --results-dir "$results"
cp -r "$results/gpu-check/report/." "$out/gpu_search/"
echo "wrote $out/gpu_tests.txt, $out/throughput_gpu.md, $out/compile_gpu.md and $out/gpu_search/"
