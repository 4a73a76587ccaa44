"""Typed wrappers for the `torch.ops.int8_moe` operators, with their fake kernels.

Every op runs on the CPU; ops with a CUDA kernel in this build also run on CUDA tensors
(`int8_moe.cuda_available()`). The fake kernels let `torch.compile` trace the ops without running
them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _library  # noqa: F401  (loads the op library)

__all__ = ["quantize_rows", "row_amax", "fused_moe", "ACTIVATIONS", "ACT_QUANT_MODES"]

ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "swigluoai")
ACT_QUANT_MODES = ("none", "per_token")

_ops = torch.ops.int8_moe


def quantize_rows(
    w: Tensor,
    amax: Tensor | None = None,
    *,
    compat: bool = False,
    out: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Symmetric per-row int8 quantization over the last dimension.

    Args:
        w: [..., N, K] bfloat16, float16 or float32, contiguous. Every value must be finite
            (a non-finite value raises, naming the row).
        amax: optional float32 [..., N] replacing each row's max(|w|), e.g. the MAX-all-reduced
            amax of a tensor-parallel shard. Must be finite and >= 0.
        compat: reproduce the original vLLM arithmetic bit for bit (scale and quotient rounded to
            w's dtype). Default: fp32 math, scale = amax / 127, q = round_half_even(w / scale).
        out: optional preallocated (q int8 [..., N, K], scale float32 [..., N]), contiguous.

    Returns:
        (q, scale): q int8 [..., N, K] in [-127, 127]; scale float32 [..., N]. An all-zero row
        gets scale 0 and q 0.
    """
    if out is None:
        return _ops.quantize_rows(w, amax, compat=compat)
    q, scale = out
    _ops.quantize_rows.out(w, amax, compat=compat, q=q, scale=scale)
    return q, scale


def row_amax(w: Tensor) -> Tensor:
    """max(|w|) over the last dimension: w [..., N, K] (bf16/fp16/fp32) -> float32 [..., N].

    NaN propagates. No full-size temporary is made.
    """
    return _ops.row_amax(w)


def fused_moe(
    x: Tensor,
    w13: Tensor,
    w2: Tensor,
    w13_scale: Tensor,
    w2_scale: Tensor,
    topk_weights: Tensor,
    topk_ids: Tensor,
    *,
    w13_bias: Tensor | None = None,
    w2_bias: Tensor | None = None,
    expert_map: Tensor | None = None,
    activation: str = "silu",
    apply_router_weight_on_input: bool = False,
    act_quant: str = "none",
    swiglu_alpha: float = 1.702,
    swiglu_limit: float = 7.0,
    out: Tensor | None = None,
) -> Tensor:
    """int8 fused-MoE forward: out_t = sum_k w_tk * (W2_e . act(W13_e . x_t + b13_e) + b2_e).

    Args:
        x: [M, H] bfloat16, float16 or float32, contiguous.
        w13: [E, 2I, H] int8; rows 0..I-1 gate, I..2I-1 up (interleaved gate/up for swigluoai).
        w2: [E, H, I] int8.
        w13_scale: [E, 2I] float32, w2_scale: [E, H] float32 (one scale per output row).
        topk_weights: [M, k] float32 router weights.
        topk_ids: [M, k] int32 or int64 global expert ids. Ids outside [0, E_global) or mapped to
            -1 by expert_map contribute nothing.
        w13_bias: optional [E, 2I], w2_bias: optional [E, H], both of x's dtype.
        expert_map: optional [E_global] int32, global id -> local id or -1.
        activation: one of "silu", "gelu", "gelu_tanh", "swigluoai".
        apply_router_weight_on_input: multiply x by the router weight before GEMM1 (needs k = 1).
        act_quant: "none" (W8A16) or "per_token" (W8A8: activations quantized per token).
        swiglu_alpha, swiglu_limit: swigluoai parameters.
        out: optional preallocated [M, H] of x's dtype, contiguous, not aliasing x.

    Returns:
        [M, H] tensor of x's dtype: this rank's partial sum (an engine all-reduces it).
    """
    kwargs = dict(
        w13_bias=w13_bias,
        w2_bias=w2_bias,
        expert_map=expert_map,
        activation=activation,
        apply_router_weight_on_input=apply_router_weight_on_input,
        act_quant=act_quant,
        swiglu_alpha=swiglu_alpha,
        swiglu_limit=swiglu_limit,
    )
    args = (x, w13, w2, w13_scale, w2_scale, topk_weights, topk_ids)
    if out is None:
        return _ops.fused_moe(*args, **kwargs)
    _ops.fused_moe.out(*args, **kwargs, out=out)
    return out


# ---- fake kernels (shapes and dtypes only) -------------------------------------------------


@torch.library.register_fake("int8_moe::quantize_rows")
def _quantize_rows_fake(w, amax=None, *, compat=False):
    torch._check(w.dim() >= 2, lambda: "quantize_rows: w must be at least 2-D")
    return w.new_empty(w.shape, dtype=torch.int8), w.new_empty(w.shape[:-1], dtype=torch.float32)


@torch.library.register_fake("int8_moe::quantize_rows.out")
def _quantize_rows_out_fake(w, amax=None, *, compat=False, q, scale):
    return None


@torch.library.register_fake("int8_moe::row_amax")
def _row_amax_fake(w):
    torch._check(w.dim() >= 2, lambda: "row_amax: w must be at least 2-D")
    return w.new_empty(w.shape[:-1], dtype=torch.float32)


@torch.library.register_fake("int8_moe::fused_moe")
def _fused_moe_fake(x, w13, w2, w13_scale, w2_scale, topk_weights, topk_ids, **kwargs):
    torch._check(x.dim() == 2, lambda: "fused_moe: x must be 2-D")
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.register_fake("int8_moe::fused_moe.out")
def _fused_moe_out_fake(x, w13, w2, w13_scale, w2_scale, topk_weights, topk_ids, *, out, **kwargs):
    return None
