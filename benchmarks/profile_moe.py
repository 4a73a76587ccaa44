"""Per-kernel GPU time of one fused_moe call (torch.profiler), for finding where time goes.

python benchmarks/profile_moe.py --preset qwen3-30b-a3b --tokens 1,64 [--dtype fp16]
(INT8_MOE_GEMM_PATH and the other knobs of fused_moe_cuda.cu force a path.)
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(__file__))
import int8_moe  # noqa: E402
from int8_moe.cli import random_layer, random_routing  # noqa: E402
from int8_moe.presets import PRESETS  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="qwen3-30b-a3b,mixtral-8x7b")
    parser.add_argument("--tokens", default="1,64")
    parser.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    parser.add_argument("--csv", default=None)  # accepted for gpu_check.sh; unused
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    for name in args.preset.split(","):
        shape = PRESETS[name]
        w13, w2, _, _ = random_layer(shape, dtype, "cuda")
        layer = int8_moe.Int8MoE.from_weights(w13, w2)
        for M in (int(t) for t in args.tokens.split(",")):
            x = torch.randn(M, shape.hidden, dtype=dtype, device="cuda")
            tw, ids = random_routing(M, shape, "cuda", seed=M)
            for _ in range(3):
                layer(x, tw, ids)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(20):
                    layer(x, tw, ids)
                torch.cuda.synchronize()
            print(f"\n== {name} M={M} {args.dtype}: per-kernel GPU time over 20 calls ==")
            print(
                prof.key_averages().table(
                    sort_by="cuda_time_total", row_limit=12, max_name_column_width=60
                )
            )
        del layer
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
