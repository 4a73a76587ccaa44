#!/usr/bin/env bash
# Quick start 2: set up, then run the test suite (GPU tests skip, with a reason, without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest tests -q -rs "$@"
