"""Loads the compiled op library, loudly: a missing or broken build is an error, never a warning.

The library (`_C*.so` beside this file) is a plain shared library with no Python symbols, so
LibTorch programs can link it too (see `int8_moe.cmake_prefix_path`); loading it runs the
TORCH_LIBRARY registrations of every `torch.ops.int8_moe` operator.
"""

from __future__ import annotations

import glob
import os

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))


def library_path() -> str:
    """Path of the compiled op library."""
    found = sorted(glob.glob(os.path.join(_HERE, "_C*.so")))
    if not found:
        raise ImportError(
            f"int8_moe's compiled library (_C*.so) is missing from {_HERE}. Build it with "
            f"`pip install --no-build-isolation -e .` against the installed torch "
            f"({torch.__version__})."
        )
    return found[0]


def _load() -> None:
    path = library_path()
    try:
        torch.ops.load_library(path)
    except OSError as e:  # pragma: no cover - exercised only on a broken install
        raise ImportError(
            f"int8_moe's compiled library {path} could not be loaded: {e}. Rebuild it with "
            f"`pip install --no-build-isolation -e .` against the installed torch "
            f"({torch.__version__})."
        ) from e


_load()


def has_kernel(op: str, device_type: str) -> bool:
    """True when `int8_moe::<op>` has a kernel for `device_type` ("cpu" or "cuda")."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"int8_moe::{op}", device_type.upper())


def cuda_available() -> bool:
    """True when this build carries CUDA kernels and a GPU is visible."""
    return torch.cuda.is_available() and has_kernel("fused_moe", "cuda")
