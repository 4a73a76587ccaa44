"""Independent pure-PyTorch reference for every op (float32 math by default, float64 on request).

Written separately from the kernels and never calling them: tests compare the ops against it.
Also holds `original_quantize`, the per-expert loop of vLLM's original online int8 method, the
arithmetic that `compat=True` reproduces bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "row_amax",
    "quantize_rows",
    "original_quantize",
    "quantize_activation_per_token",
    "dequantize",
    "gated_activation",
    "fused_moe",
    "fused_moe_dense",
]

INT8_MAX = 127.0


def row_amax(w: Tensor) -> Tensor:
    return w.float().abs().amax(dim=-1) if w.shape[-1] > 0 else w.new_zeros(w.shape[:-1]).float()


def quantize_rows(
    w: Tensor, amax: Tensor | None = None, *, compat: bool = False
) -> tuple[Tensor, Tensor]:
    """Reference per-row quantization (see ops.quantize_rows)."""
    if not torch.isfinite(w).all():
        raise ValueError("reference.quantize_rows: w has non-finite values")
    if amax is None:
        amax = row_amax(w)
    if compat:
        scale = (amax.to(w.dtype) / INT8_MAX).to(w.dtype)
        quot = (w / scale.unsqueeze(-1)).to(w.dtype)
        scale = scale.float()
    else:
        scale = amax.float() / INT8_MAX
        quot = w.float() / scale.unsqueeze(-1)
    quot = torch.where(scale.unsqueeze(-1) == 0, torch.zeros_like(quot), quot)
    q = torch.round(quot.float()).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def original_quantize(w: Tensor) -> tuple[Tensor, Tensor]:
    """vLLM's original online int8 quantization of [E, N, K] weights, expert by expert.

    Arithmetic in the weight dtype: scale = amax / 127, w / scale, round (half to even), clamp.
    The original divides 0 by 0 for an all-zero row; such rows are left out of compat tests.
    """
    qs, scales = [], []
    for e in range(w.shape[0]):
        we = w[e].clone()
        s = torch.max(torch.abs(we), dim=1, keepdim=True)[0] / 127
        we.div_(s)
        we.round_()
        we.clamp_(-127, 127)
        qs.append(we.to(torch.int8))
        scales.append(s[:, 0].float())
    return torch.stack(qs), torch.stack(scales)


def _round_half_away(v: Tensor) -> Tensor:
    r = torch.round(v)  # half to even
    tie = (v - torch.trunc(v)).abs() == 0.5
    return torch.where(tie, torch.trunc(v) + torch.sign(v), r)


def quantize_activation_per_token(a: Tensor) -> tuple[Tensor, Tensor]:
    """W8A8 activations: scale = max(amax, 1e-10) / 127 per row, q = round_half_away(a / scale)."""
    a = a.float()
    amax = a.abs().amax(dim=-1, keepdim=True) if a.shape[-1] else a.new_zeros(a.shape[0], 1)
    scale = torch.clamp(amax, min=1e-10) / INT8_MAX
    q = _round_half_away(a / scale).clamp(-INT8_MAX, INT8_MAX)
    return q, scale


def dequantize(q: Tensor, scale: Tensor, dtype=torch.float32) -> Tensor:
    return q.to(dtype) * scale.to(dtype).unsqueeze(-1)


def gated_activation(
    h: Tensor, activation: str, alpha: float = 1.702, limit: float = 7.0
) -> Tensor:
    """act over [..., 2I] -> [..., I] (SPEC: silu, gelu, gelu_tanh, swigluoai interleaved)."""
    inter = h.shape[-1] // 2
    if activation == "swigluoai":
        g, u = h[..., 0::2], h[..., 1::2]
        g = g.clamp(max=limit)
        u = u.clamp(-limit, limit)
        return (u + 1) * g * torch.sigmoid(alpha * g)
    g, u = h[..., :inter], h[..., inter:]
    if activation == "silu":
        return torch.nn.functional.silu(g) * u
    if activation == "gelu":
        return torch.nn.functional.gelu(g) * u
    if activation == "gelu_tanh":
        return torch.nn.functional.gelu(g, approximate="tanh") * u
    raise ValueError(f"unknown activation {activation!r}")


def _local_experts(topk_ids: Tensor, num_local: int, expert_map: Tensor | None) -> Tensor:
    ids = topk_ids.long()
    n_global = expert_map.numel() if expert_map is not None else num_local
    valid = (ids >= 0) & (ids < n_global)
    safe = torch.where(valid, ids, torch.zeros_like(ids))
    local = expert_map.long()[safe] if expert_map is not None else safe
    valid &= (local >= 0) & (local < num_local)
    return torch.where(valid, local, torch.full_like(local, -1))


def fused_moe_dense(
    x: Tensor,
    w13: Tensor,
    w2: Tensor,
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
    compute_dtype: torch.dtype = torch.float32,
) -> Tensor:
    """MoE forward over dense (already dequantized, or original bf16) weights, expert by expert.

    w13 [E, 2I, H], w2 [E, H, I] floating. With act_quant="per_token" the activations entering
    each GEMM are quantized per token (values q*scale), the intermediate after its rounding to
    x's dtype (where the kernels hold it, as vLLM's); the weights are used as given. Returns
    float `compute_dtype` [M, H].
    """
    M, H = x.shape
    E = w13.shape[0]
    cd = compute_dtype
    local = _local_experts(topk_ids, E, expert_map)
    out = torch.zeros(M, H, dtype=cd, device=x.device)
    for e in range(E):
        tok, slot = torch.nonzero(local == e, as_tuple=True)
        if tok.numel() == 0:
            continue
        w = topk_weights[tok, slot].to(cd).unsqueeze(-1)
        xe = x[tok].to(cd)
        if apply_router_weight_on_input:
            xe = (x[tok].float() * topk_weights[tok, slot].unsqueeze(-1)).to(cd)
        if act_quant == "per_token":
            q, s = quantize_activation_per_token(xe)
            h = (q.to(cd) @ w13[e].to(cd).T) * s.to(cd)
        else:
            h = xe @ w13[e].to(cd).T
        if w13_bias is not None:
            h = h + w13_bias[e].to(cd)
        a = gated_activation(h, activation, swiglu_alpha, swiglu_limit)
        if act_quant == "per_token":
            # W8A8 holds the intermediate in the activation dtype before quantizing it.
            q, s = quantize_activation_per_token(a.to(x.dtype))
            y = (q.to(cd) @ w2[e].to(cd).T) * s.to(cd)
        else:
            y = a @ w2[e].to(cd).T
        if w2_bias is not None:
            y = y + w2_bias[e].to(cd)
        if not apply_router_weight_on_input:
            y = y * w
        out.index_add_(0, tok, y)
    return out


def fused_moe(
    x: Tensor,
    w13: Tensor,
    w2: Tensor,
    w13_scale: Tensor,
    w2_scale: Tensor,
    topk_weights: Tensor,
    topk_ids: Tensor,
    *,
    compute_dtype: torch.dtype = torch.float32,
    **kwargs,
) -> Tensor:
    """Reference for ops.fused_moe: dequantize the int8 weights and run `fused_moe_dense`.

    Per-row scales commute with the per-token scales, so dequantizing first is exact math for
    both W8A16 and W8A8. Returns float `compute_dtype` [M, H].
    """
    return fused_moe_dense(
        x,
        dequantize(w13, w13_scale, compute_dtype),
        dequantize(w2, w2_scale, compute_dtype),
        topk_weights,
        topk_ids,
        compute_dtype=compute_dtype,
        **kwargs,
    )
