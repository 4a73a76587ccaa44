#!/usr/bin/env bash
# Same-machine A/B of two library versions: the working tree ("head") against an exported
# revision ("base"), both built on the machine, a timing command run with each on PYTHONPATH in
# turn (base, head, base, head, ...), so the machine's drift between rounds shows and can be
# taken out. Machines differ by more than small changes do, so compare versions this way.
#
#   bash scripts/ab_libs.sh export <rev>       # here: <rev>'s sources into ab_base/ (ignored;
#                                              # the device call carries it: carry=["ab_base"])
#   ROUNDS=2 bash scripts/ab_libs.sh run <command...>   # on the device, e.g.
#     bash scripts/ab_libs.sh run python3 benchmarks/decode_chain.py --settings auto
#
# run builds both libraries at once (MAX_JOBS split between them) unless SKIP_BUILD=1.
set -uo pipefail
cd "$(dirname "$0")/.."
BASE=ab_base
case "${1:-}" in
  export)
    rev=${2:?usage: ab_libs.sh export <rev>}
    rm -rf "$BASE" && mkdir -p "$BASE"
    git archive "$rev" csrc python setup.py pyproject.toml | tar -x -C "$BASE"
    echo "$rev" > "$BASE/REVISION"
    echo "[ab] $BASE/ holds $(git rev-parse --short "$rev")'s sources"
    ;;
  run)
    shift
    [ $# -gt 0 ] || { echo "usage: ab_libs.sh run <command...>"; exit 2; }
    [ -d "$BASE/csrc" ] || { echo "[ab] no $BASE/: run 'ab_libs.sh export <rev>' first"; exit 2; }
    # As scripts/gpu_check.sh: the plain system g++ (the device image's wrapper crashes on
    # exceptions), sm_90a machine code by default.
    if [ -x /usr/bin/g++ ]; then export CC=/usr/bin/gcc CXX=/usr/bin/g++; fi
    export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0a}
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
      jobs=$(( ${MAX_JOBS:-16} / 2 > 0 ? ${MAX_JOBS:-16} / 2 : 1 ))
      (cd "$BASE" && MAX_JOBS=$jobs python3 setup.py build_ext --inplace > build_ab.log 2>&1) &
      base_pid=$!
      MAX_JOBS=$jobs python3 setup.py build_ext --inplace > "$BASE/build_head.log" 2>&1
      head_rc=$?
      wait "$base_pid"
      base_rc=$?
      if [ "$head_rc" != 0 ] || [ "$base_rc" != 0 ]; then
        tail -20 "$BASE/build_head.log" "$BASE/build_ab.log"
        echo "[ab] build failed (head $head_rc, base $base_rc)"
        exit 1
      fi
    fi
    for i in $(seq "${ROUNDS:-2}"); do
      for lib in base head; do
        path=$PWD/python
        [ "$lib" = base ] && path=$PWD/$BASE/python
        echo "## $lib round $i"
        PYTHONPATH=$path "$@"
      done
    done
    ;;
  *)
    echo "usage: ab_libs.sh export <rev> | run <command...>"
    exit 2
    ;;
esac
