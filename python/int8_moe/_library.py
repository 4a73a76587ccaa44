"""Loads the compiled op library, loudly: a missing or broken build is an error, never a warning."""

from __future__ import annotations

import torch

try:
    from . import _C  # noqa: F401  (registers torch.ops.int8_moe.*)
except ImportError as e:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "int8_moe's compiled library (int8_moe._C) could not be loaded: "
        f"{e}. Build it with `pip install --no-build-isolation -e .` against the installed torch "
        f"({torch.__version__})."
    ) from e


def has_kernel(op: str, device_type: str) -> bool:
    """True when `int8_moe::<op>` has a kernel for `device_type` ("cpu" or "cuda")."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"int8_moe::{op}", device_type.upper())


def cuda_available() -> bool:
    """True when this build carries CUDA kernels and a GPU is visible."""
    return torch.cuda.is_available() and has_kernel("fused_moe", "cuda")
