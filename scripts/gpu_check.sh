#!/usr/bin/env bash
# One device run: build for the local GPU, a smoke check, the whole test suite (GPU tests
# included), then the named benchmarks. Logs go to $OUT (default ./out).
# Usage: bash scripts/gpu_check.sh [quantize] [moe]
# SKIP_BUILD=1 reuses the library a previous run built; SKIP_TESTS=1 goes straight to the
# benchmarks; PYTEST_TIMEOUT / BENCH_TIMEOUT (seconds) bound each step so one run fits the limit.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0a} MAX_JOBS=${MAX_JOBS:-16}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
build() {
  local start=$(date +%s)
  rm -rf build python/int8_moe/_C*.so
  if ! python3 setup.py build_ext --inplace > "$OUT/build$1.log" 2>&1; then
    tail -40 "$OUT/build$1.log"; echo "BUILD FAILED"; return 1
  fi
  echo "build$1: $(( $(date +%s) - start )) s (CC=${CC:-} CXX=${CXX:-})"
}
# The device image points CC/CXX at a g++ wrapper (/opt/gcc) whose builds crash while unwinding
# any C++ exception (TORCH_CHECK) thrown from this library; the plain system g++ works.
if [ -x /usr/bin/g++ ]; then export CC=/usr/bin/gcc CXX=/usr/bin/g++; fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then build "" || exit 1; fi
python3 scripts/gpu_smoke.py 2>&1 | tee "$OUT/smoke.log" | tail -4 || exit 1
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout "${PYTEST_TIMEOUT:-400}" python3 -m pytest ${PYTEST_TARGETS:-tests} -q -rs \
    -n ${PYTEST_WORKERS:-6} -p no:cacheprovider --durations=25 2>&1 | tee "$OUT/pytest.log" \
    | grep -vE "^\s+File|^  " | tail -40
fi
for b in "$@"; do
  script=benchmarks/bench_$b.py; [ -f "$script" ] || script=benchmarks/$b.py
  timeout "${BENCH_TIMEOUT:-300}" python3 "$script" --csv "$OUT/bench_$b.csv" 2>&1 \
    | tee "$OUT/bench_$b.log" | tail -40
done
