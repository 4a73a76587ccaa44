#!/usr/bin/env bash
# One device run: build for the local GPU, run the whole test suite (GPU tests included), run the
# benchmarks. Logs go to $OUT (default ./out). Usage: bash scripts/gpu_check.sh [bench ...]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0a} MAX_JOBS=${MAX_JOBS:-16}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
start=$(date +%s)
if ! python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  tail -50 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
fi
echo "build: $(( $(date +%s) - start )) s"
python3 scripts/gpu_smoke.py 2>&1 | tee "$OUT/smoke.log"
python3 -m pytest ${PYTEST_TARGETS:-tests} -q -rs 2>&1 | tee "$OUT/pytest.log" | tail -25
for b in "$@"; do
  python3 "benchmarks/bench_$b.py" --csv "$OUT/bench_$b.csv" 2>&1 | tee "$OUT/bench_$b.log" | tail -30
done
