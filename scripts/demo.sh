#!/usr/bin/env bash
# Quick start 1: set up, then run the demo (on the GPU if there is one, else the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m int8_moe demo "$@"
