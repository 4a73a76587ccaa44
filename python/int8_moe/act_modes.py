"""Activation modes of a layer: the op's two ("none", "per_token") plus "auto".

"auto" picks per call from the number of tokens: W8A8 ("per_token") from a token count on,
W8A16 ("none") below it. The count depends on the device type and comes from the benchmarks
(`benchmarks/bench_moe.py` on CUDA, `benchmarks/bench_moe_cpu.py` on the CPU); None means W8A8
never wins there yet. The choice is made on the host from the input's shape: no sync, and a
CUDA graph captured for one M replays the mode chosen for that M.
"""

from __future__ import annotations

import torch

from . import ops

LAYER_ACT_QUANT_MODES = (*ops.ACT_QUANT_MODES, "auto")

# Smallest M for which "auto" runs W8A8, per device type.
#   cuda: 64. On the H100 (benchmarks/results/bench_moe_h100.log, 2026-11-28) W8A8 takes
#         0.92x W8A16's time at M = 64 on Mixtral and 1.00x on Qwen3-30B-A3B, 0.58-0.84x from
#         1024 to 16384 tokens; at M <= 16 both stream the same weight bytes and W8A8 takes
#         1.00-1.10x W8A16's time, with its larger error.
#   cpu:  None. On the 2-core development CPU W8A8 is faster only at M = 1 (1.8x) and 0.48-0.93x
#         W8A16 from M = 8 to 2048 (benchmarks/results/bench_moe_cpu.log).
AUTO_PER_TOKEN_MIN_TOKENS: dict[str, int | None] = {"cuda": 64, "cpu": None}


def check_layer_act_quant(mode: str) -> str:
    if mode not in LAYER_ACT_QUANT_MODES:
        raise ValueError(f"act_quant must be one of {LAYER_ACT_QUANT_MODES}, got {mode!r}")
    return mode


def resolve_act_quant(mode: str, x: torch.Tensor) -> str:
    """The op's act_quant for a layer in `mode` running x [M, H]."""
    if mode != "auto":
        return mode
    threshold = AUTO_PER_TOKEN_MIN_TOKENS.get(x.device.type)
    return "per_token" if threshold is not None and x.shape[0] >= threshold else "none"
