"""int8-moe: online per-channel int8 Mixture-of-Experts for PyTorch (CPU and CUDA) and vLLM."""

import os as _os

from . import act_modes, ops, reference
from ._library import cuda_available
from .method import Int8MoEQuantConfig, Int8OnlineMoEMethod
from .module import Int8MoE
from .ops import fused_moe, quantize_rows, row_amax

__all__ = [
    "act_modes",
    "ops",
    "reference",
    "cuda_available",
    "Int8MoE",
    "Int8MoEQuantConfig",
    "Int8OnlineMoEMethod",
    "fused_moe",
    "quantize_rows",
    "row_amax",
    "cmake_prefix_path",
]
__version__ = "0.1.0"

#: CMake prefix of the C++ package (find_package(int8_moe)), like torch.utils.cmake_prefix_path.
cmake_prefix_path = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "share", "cmake")
