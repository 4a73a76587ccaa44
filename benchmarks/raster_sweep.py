"""The order of the row-tile GEMMs' CTAs (csrc/cuda/tile_order.cuh), timed per L2 budget.

For each model, token count and activation mode it times the forward (CUDA-graph replays,
routing included) with INT8_MOE_RASTER_KB = 0 (launch order) and 4, 8, 16, 32, 64 MB on the
automatic kernel choice, and for W8A16 above the wgmma kernel's range also with the wgmma
kernel forced (INT8_MOE_GEMM_PATH=wgmma), which the grouping may bring ahead of the widen +
grouped_mm path. Launch order is timed first and again last, to show the drift between the two.
One row per case: ms per budget, the best budget and its time against launch order.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_moe import knobs, timed  # noqa: E402

import int8_moe  # noqa: E402
from int8_moe.cli import random_routing  # noqa: E402
from int8_moe.presets import PRESETS  # noqa: E402

from common import device_name, random_int8_weights  # noqa: E402

BUDGETS = ["0", "4096", "8192", "16384", "32768", "65536"]


def sweep_row(run, path: str, budgets: list[str]) -> str:
    """One table row's cells for `run` with GEMM_PATH=path over the budgets."""
    ms = {}
    for b in budgets:
        with knobs(GEMM_PATH=path, RASTER_KB=b):
            ms[b] = timed(run, graph=True)
    with knobs(GEMM_PATH=path, RASTER_KB="0"):
        again = timed(run, graph=True)
    base = min(ms["0"], again) if "0" in ms else again
    best = min(ms, key=ms.get)
    cells = " | ".join(f"{ms[b]:.4f}" for b in budgets)
    return f"{path} | {cells} | {again:.4f} | {best} | {ms[best] / base:.3f}"


def sweep_model(name: str, tokens: list[int], budgets: list[str]) -> None:
    shape = PRESETS[name]
    E, H, inter = shape.experts, shape.hidden, shape.inter
    w13, w2, s13, s2 = random_int8_weights(E, H, inter)
    for M in tokens:
        x = torch.randn(M, H, dtype=torch.bfloat16, device="cuda")
        tw, ids = random_routing(M, shape, "cuda", seed=M)
        for mode in ("none", "per_token"):
            run = functools.partial(
                int8_moe.fused_moe,
                x,
                w13,
                w2,
                s13,
                s2,
                tw,
                ids,
                activation=shape.activation,
                act_quant=mode,
            )
            wide = mode == "none" and M * shape.topk // E > 512  # auto may widen + grouped_mm here
            for path in ["auto"] + (["wgmma"] if wide else []):
                print(f"| {name} | {M} | {mode} | {sweep_row(run, path, budgets)} |", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="mixtral-8x7b,qwen3-30b-a3b")
    parser.add_argument("--tokens", default="1024,4096,16384")
    parser.add_argument("--budgets", default=",".join(BUDGETS))
    args = parser.parse_args()
    budgets = args.budgets.split(",")
    print(f"{device_name()}; ms by INT8_MOE_RASTER_KB (CUDA-graph replays)")
    print(f"| model | M | mode | path | {' | '.join(budgets)} | 0 again | best | best / 0 |")
    print("|---|---|---|---|" + "---|" * (len(budgets) + 3))
    tokens = [int(t) for t in args.tokens.split(",")]
    for name in args.models.split(","):
        sweep_model(name, tokens, budgets)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
