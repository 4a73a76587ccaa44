#!/usr/bin/env bash
# Sets up int8-moe in the current Python environment; idempotent. Never downloads a CUDA torch:
# torch is installed only when missing, pinned to the CPU build (a GPU machine keeps its own).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_ROOT_USER_ACTION=ignore

if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "[setup] torch not found: installing torch==2.13.0 (CPU build)"
  "$PY" -m pip install -q torch==2.13.0
fi
"$PY" - <<'PYEOF'
import torch
major, minor = (int(v) for v in torch.__version__.split(".")[:2])
assert (major, minor) >= (2, 10), f"int8-moe needs torch >= 2.10, found {torch.__version__}"
print(f"[setup] torch {torch.__version__} (CUDA {torch.version.cuda})")
PYEOF
# Build tools and test dependencies (already-satisfied requirements need no network).
"$PY" -m pip install -q "setuptools>=64" wheel ninja pytest hypothesis safetensors
# Rebuild only when the sources, the build script or torch changed since the last build.
stamp=python/int8_moe/.build_stamp
want=$( (cat setup.py pyproject.toml; find csrc -type f | sort | xargs cat; "$PY" -c \
  "import torch; print(torch.__version__)") | sha256sum | cut -d' ' -f1)
# (An editable install elsewhere, e.g. another clone, counts as missing: it would shadow this one.)
here=$(pwd -P)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! (cd /tmp && "$PY" -c \
    "import int8_moe, os, sys; sys.exit(not os.path.realpath(int8_moe.__file__).startswith('$here/'))" \
    2>/dev/null); then
  # Some GPU images point CC/CXX at a g++ wrapper under /opt/gcc whose builds crash while
  # unwinding C++ exceptions (every TORCH_CHECK error became a segfault); use the system g++.
  case "${CXX:-}" in /opt/gcc/*)
    if [ -x /usr/bin/g++ ]; then
      echo "[setup] CXX=$CXX is the /opt/gcc wrapper: building with /usr/bin/g++ instead"
      export CC=/usr/bin/gcc CXX=/usr/bin/g++
    fi ;;
  esac
  echo "[setup] building int8_moe._C (MAX_JOBS=${MAX_JOBS:-$(nproc)})"
  # --no-build-isolation: build against the torch above; --no-deps: never resolve torch again.
  log=$(mktemp)
  if ! MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip install --no-build-isolation --no-deps -e . \
      >"$log" 2>&1; then
    cat "$log"
    echo "[setup] build failed (log above)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
"$PY" -c "import int8_moe; print('[setup] int8_moe ready, CUDA kernels:', int8_moe.cuda_available())"
