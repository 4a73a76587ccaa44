"""int8-moe: online per-channel int8 Mixture-of-Experts for PyTorch (CPU and CUDA) and vLLM."""

from . import ops, reference
from ._library import cuda_available
from .method import Int8MoEQuantConfig, Int8OnlineMoEMethod
from .module import Int8MoE
from .ops import fused_moe, quantize_rows, row_amax

__all__ = [
    "ops",
    "reference",
    "cuda_available",
    "Int8MoE",
    "Int8MoEQuantConfig",
    "Int8OnlineMoEMethod",
    "fused_moe",
    "quantize_rows",
    "row_amax",
]
__version__ = "0.1.0"
