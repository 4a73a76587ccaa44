"""Tolerances and error metrics for every test, in one place."""

from __future__ import annotations

import torch

# ||out - ref|| / ||ref|| allowed for the fused MoE against the fp32 reference on the same int8
# weights, by activation dtype (issue: <= 1e-2 for bf16 and fp16).
MOE_REL_TOL = {torch.float32: 1e-4, torch.bfloat16: 1e-2, torch.float16: 1e-2}
# W8A8: activations are re-quantized per token inside the op; a rare rounding flip against the
# reference moves one int8 step, well inside this.
MOE_REL_TOL_PER_TOKEN = {torch.float32: 1e-2, torch.bfloat16: 1e-2, torch.float16: 1e-2}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; inf when out has NaN/Inf. 0 when both are empty."""
    out64, ref64 = out.detach().double().cpu(), ref.detach().double().cpu()
    if out64.numel() == 0 and ref64.numel() == 0:
        return 0.0
    if not torch.isfinite(out64).all():
        return float("inf")
    denom = ref64.norm().item()
    return (out64 - ref64).norm().item() / max(denom, 1e-30)


def moe_tol(dtype: torch.dtype, act_quant: str = "none") -> float:
    return (MOE_REL_TOL_PER_TOKEN if act_quant == "per_token" else MOE_REL_TOL)[dtype]


def assert_moe_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, act_quant="none"):
    err = rel_err(out, ref)
    tol = moe_tol(dtype, act_quant)
    assert err <= tol, f"relative error {err:.3e} > {tol:.0e} ({dtype}, act_quant={act_quant})"
