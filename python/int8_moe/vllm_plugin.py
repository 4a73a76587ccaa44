"""vLLM plugin entry point (group `vllm.general_plugins`, name `int8_moe`).

vLLM calls `register()` with no arguments in every process, possibly more than once. Without
vLLM installed it does nothing but say so in a debug log; with vLLM it registers the
quantization config `int8_moe` (`vllm serve <bf16 MoE model> --quantization int8_moe`), and
with INT8_MOE_TAKE_OVER_EXPERTS_INT8=1 also takes over the name `experts_int8`.
Supported vLLM: 0.33 (the version tested; see README).
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

TAKE_OVER_ENV = "INT8_MOE_TAKE_OVER_EXPERTS_INT8"
_registered = False


def register() -> None:
    """Registers int8-moe with vLLM; idempotent and cheap."""
    global _registered
    if _registered:
        return
    try:
        import vllm  # noqa: F401
    except ImportError:
        logger.debug("int8_moe: vLLM is not installed; the vLLM plugin does nothing")
        return
    from .vllm_integration import register_quantization_configs

    register_quantization_configs(take_over_experts_int8=os.environ.get(TAKE_OVER_ENV) == "1")
    _registered = True
