#!/usr/bin/env bash
# compute-sanitizer over the CUDA tests of the ops: memcheck, racecheck, initcheck, synccheck,
# the four in parallel on one GPU. Needs a built CUDA extension (scripts/gpu_check.sh builds one).
# Usage: bash scripts/sanitize.sh [tool ...]      Logs: $OUT/sanitize_<tool>.log
# SANITIZE_TIMEOUT=<seconds> bounds each tool's run (default: none); SANITIZE_WORKERS=<n> runs
# each tool's tests in n pytest-xdist workers (compute-sanitizer follows child processes), and
# SANITIZE_RACECHECK_WORKERS=<n> overrides it for racecheck, by far the slowest tool (in 3
# workers, beside the other tools and a pytest run on 16 cores, it had done under half of its
# selection after 300 s).
# Prints one line per tool (clean or FAIL, the sanitizer's summary, pytest's result line) and
# exits non-zero unless every tool ran to the end with zero reports.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
# Without the caching allocator every tensor is its own cudaMalloc, so memcheck catches an access
# one element past a tensor instead of landing inside a cached block.
export PYTORCH_NO_CUDA_MEMORY_CACHING=1
# The profiler cannot subscribe to CUPTI under the tools, so the tests' checks of which kernels
# ran would fail at their first setting and skip the rest: this tells them to stand down
# (tests/test_fused_moe_cuda.py, kernel_names).
export INT8_MOE_UNDER_SANITIZER=1
# The cases: every kernel family forced on shapes with K/N tails, uneven and empty experts,
# biases, both gated layouts; hostile and mapped ids; int64 ids with the input-side weight; the
# W8A8 and fp32 paths; many experts (routing scan); two streams at once; every quantization path,
# unaligned views and non-finite rows; the grouped CTA orders (tile_order); direct routing; the
# decode GEMM2 split over K; the parallel align; the activation passes' forms (variants 64, 67,
# 72: ties, NaN, inf and subnormal rows), the ldmatrix fragments (61), the staged GEMM2 output
# (63, 74), both modes' narrow last tiles (75, 78), the decode / wgmma rule (80) and the staged
# GEMM1 intermediate (81, 82: memcheck clean over its bf16 cases in session 43,
# sanitize_s43_h200.log; racecheck not yet through; the default pipelined W8A16 path with 83's
# and 87's loops, memcheck and racecheck clean in session 45, sanitize_s45_h200.log).
# Those of variants 61-80 ran clean by targeted selections in sessions 38-42 (memcheck over
# their bf16 cases, racecheck and initcheck over subsets; 74, 75 and 78: memcheck and
# racecheck, bf16; 80: memcheck, racecheck, initcheck: benchmarks/results/sanitize_s38_h200.log,
# sanitize_s39_h200.log, sanitize_s41_h200.log, sanitize_s42_h200.log); this default selection
# has not run as a whole (session 42's memcheck of it stopped at 440 s after ~123 tests: none
# failed, no report).
# Left out: graph capture (it needs the caching allocator), the full model shapes and > 2^31
# elements (minutes under instrumentation, same kernels), and the staged top-k sum's test (its
# W8A16 GEMMs reach torch's grouped_mm, below: run it with INT8_MOE_GEMM_PATH=wgmma).
SELECT="forced or w8a8 or hostile or weight_on_input or every_kernel_path or per_token_and_fp32 \
or (many_experts and not 1500) or two_streams or equals_cpu_on_every_path or unaligned \
or non_finite or decode_chain or no_valid_route or tile_order or direct_routing or decode_split \
or parallel_align or act_quant or wgmma_ldsm_fragments or wgmma_staged_output or wgmma_narrow_tail \
or decode_wgmma_rule or wgmma_staged_intermediate"
tools=("$@"); [ ${#tools[@]} -eq 0 ] && tools=(memcheck racecheck initcheck synccheck)
# initcheck must watch torch's kernels write our inputs, so it instruments every kernel and runs
# a smaller selection (still every kernel family, tails, empty experts and hostile ids).
# Forced grouped_mm is left out: initcheck reports uninitialized 4-byte reads inside torch's
# CUTLASS grouped GEMM (at::_grouped_mm), not this library's code.
INITCHECK_SELECT="((forced_gemm_path and (37 or 300)) or hostile or two_streams \
or (equals_cpu_on_every_path and bfloat16) or decode_chain or direct_routing or decode_split \
or parallel_align) and not grouped_mm"
# SANITIZE_SELECT=<pytest -k expression> narrows every tool to that selection (targeted runs).
if [ -n "${SANITIZE_SELECT:-}" ]; then SELECT=$SANITIZE_SELECT INITCHECK_SELECT=$SANITIZE_SELECT; fi
rm -f "$OUT"/sanitize_*.verdict
for tool in "${tools[@]}"; do
  # The other tools check only this library's kernels (namespace int8_moe).
  filter=(--kernel-name kns=int8_moe) select=$SELECT
  [ "$tool" = initcheck ] && filter=() select=$INITCHECK_SELECT
  # racecheck stops with "Internal Sanitizer Error: failed to handle a hardware exception" in
  # the tests that force the grouped_mm path (torch's CUTLASS grouped GEMM, not this library's
  # code; each of our kernel families alone: 0 hazards, H100 2026-11-27), so it skips them.
  # Tests that leave the path to the dispatch reach grouped_mm too (bf16 W8A16 prefill on sm_90:
  # test_topk_sum_staged_agrees' 9000 tokens, session 38): for targeted runs over such tests,
  # INT8_MOE_GEMM_PATH=wgmma in the environment keeps racecheck and initcheck on our kernels.
  [ "$tool" = racecheck ] && select="($SELECT) and not grouped_mm"
  n=${SANITIZE_WORKERS:-}
  [ "$tool" = racecheck ] && n=${SANITIZE_RACECHECK_WORKERS:-$n}
  workers=(); [ -n "$n" ] && workers=(-n "$n")
  (
    timeout "${SANITIZE_TIMEOUT:-0}" compute-sanitizer --tool "$tool" "${filter[@]}" \
      --print-limit 50 --error-exitcode 86 \
      python3 -m pytest tests/test_fused_moe_cuda.py tests/test_quantize_cuda.py -q \
      -p no:cacheprovider "${workers[@]}" -k "$select" > "$OUT/sanitize_$tool.log" 2>&1
    rc=$?
    # Clean only with exit 0 and every summary the tool printed (one or more) saying zero
    # (racecheck: "RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)", the others
    # "ERROR SUMMARY: 0 errors"); a crash, a timeout (124) or no summary is not clean.
    summaries=$(grep -E '(ERROR|RACECHECK) SUMMARY' "$OUT/sanitize_$tool.log" | sed 's/=* *//')
    summary="$(echo "$summaries" | grep -c SUMMARY) summaries, last: $(echo "$summaries" | tail -1)"
    verdict=FAIL
    [ $rc -eq 0 ] && [ -n "$summaries" ] \
      && ! echo "$summaries" | grep -vqE 'SUMMARY: 0 (errors|hazards)' && verdict=clean
    echo "$tool: $verdict (exit $rc) ${summary:-no summary} | $(grep -E '[0-9]+ (passed|failed)' \
      "$OUT/sanitize_$tool.log" | tail -1)" | tee "$OUT/sanitize_$tool.verdict"
  ) &
done
wait
! grep -l FAIL "$OUT"/sanitize_*.verdict > /dev/null 2>&1
