"""CPU: W8A16 against W8A8 for the fused MoE, the table "auto" is tuned by on the CPU.

Times torch.ops.int8_moe.fused_moe on the CPU with act_quant="none" and "per_token" on the same
int8 layer (Qwen3-30B-A3B dims, fewer experts so it fits a small machine) over token counts,
median of --reps runs each, and prints the smallest M from which W8A8 is faster at every larger
M measured (int8_moe.act_modes.AUTO_PER_TOKEN_MIN_TOKENS["cpu"]). FLOPs = 2 * M * k * 3 * H * I.
"""

from __future__ import annotations

import argparse

import torch

import int8_moe
from int8_moe.cli import random_layer, random_routing, time_ms
from int8_moe.presets import PRESETS, MoEShape


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--tokens", default="1,8,32,128,512,2048")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    q = PRESETS["qwen3-30b-a3b"]
    shape = MoEShape("qwen3-dims", q.hidden, q.inter, args.experts, q.topk)
    w13, w2, _, _ = random_layer(shape, torch.bfloat16, "cpu", 0)
    layer = {
        m: int8_moe.Int8MoE.from_weights(w13.clone(), w2.clone(), act_quant=m)
        for m in ("none", "per_token")
    }
    del w13, w2
    print(
        f"CPU, {torch.get_num_threads()} threads; H={shape.hidden} I={shape.inter} "
        f"E={shape.experts} k={shape.topk}"
    )
    print("| M | W8A16 ms | W8A8 ms | W8A16 / W8A8 | W8A16 GFLOP/s | W8A8 GFLOP/s |")
    print("|---|---|---|---|---|---|")
    rows = []
    for M in (int(t) for t in args.tokens.split(",")):
        x = torch.randn(M, shape.hidden, dtype=torch.bfloat16)
        tw, ids = random_routing(M, shape, "cpu", M)
        inputs = (x, tw, ids)
        t16 = time_ms(lambda a=inputs: layer["none"](*a), "cpu", args.reps)
        t8 = time_ms(lambda a=inputs: layer["per_token"](*a), "cpu", args.reps)
        flops = 2 * M * shape.topk * 3 * shape.hidden * shape.inter
        rows.append((M, t16, t8))
        print(
            f"| {M} | {t16:.2f} | {t8:.2f} | {t16 / t8:.2f}x | {flops / t16 / 1e6:.1f} | "
            f"{flops / t8 / 1e6:.1f} |",
            flush=True,
        )
    threshold = None
    for M, t16, t8 in reversed(rows):
        if t8 >= t16:
            break
        threshold = M
    print(f"smallest M from which W8A8 is faster at every larger M measured: {threshold}")


if __name__ == "__main__":
    main()
