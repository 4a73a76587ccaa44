#!/usr/bin/env bash
# The vLLM plugin tests against the real vllm package, in a throwaway virtual environment that
# sees this machine's torch and int8-moe (system site packages). vllm installs without its
# heavy dependencies (it cannot serve here); only what importing its quantization registry needs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VLLM_VERSION=${VLLM_VERSION:-0.33.0}
VENV=${VENV:-/tmp/int8_moe_vllm_venv}
bash scripts/setup.sh
[ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV"
torch_version=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
echo "torch==$torch_version" > "$VENV/constraints.txt"
"$VENV/bin/pip" install -q --no-deps "vllm==$VLLM_VERSION"
"$VENV/bin/pip" install -q -c "$VENV/constraints.txt" psutil pyzmq "transformers<5.21" cbor2 \
  aiohttp openai-harmony openai pillow pybase64 cachetools msgspec uvloop prometheus-client \
  fastapi partial-json-parser llguidance einops loguru xgrammar
"$VENV/bin/pip" install -q --no-deps compressed-tensors
"$VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__)"
exec "$VENV/bin/python" -m pytest tests/test_vllm_plugin.py tests/test_vllm_registry.py -q -rs "$@"
