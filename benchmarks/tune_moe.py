"""Kernel-family tuning table over every SPEC model shape and its tensor-parallel splits.

For each model, each TP split of its intermediate size (I / tp for tp in --tp, when a multiple of
16), and each token count M, it times the int8 W8A16 forward (CUDA-graph replays, routing
included) with each kernel family forced (INT8_MOE_GEMM_PATH = decode, tiled, grouped_mm where
it applies) and with the default dispatch ("auto"), and prints one row per case: the routes per
expert, the best family, and how far "auto" is from it. The last line counts the cases where
auto is within 5% of the best. Weights are random int8 with random scales (timing only), so the
largest shapes load in seconds.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_moe import gemm_path, timed  # noqa: E402

import int8_moe  # noqa: E402
from int8_moe.cli import random_routing  # noqa: E402
from int8_moe.presets import PRESETS  # noqa: E402

from common import device_name  # noqa: E402

MODELS = [n for n in PRESETS if n not in ("tiny", "small")]


def paths_for(per_expert: int, grouped_mm_ok: bool) -> list[str]:
    # Forcing decode far above its design point only wastes time: it re-streams the weights
    # once per 32 routes.
    return (
        (["decode"] if per_expert <= 64 else [])
        + ["tiled"]
        + (["grouped_mm"] if grouped_mm_ok and per_expert >= 16 else [])
    )


def time_case(
    shape, weights, M: int, per_expert: int, grouped_mm_ok: bool
) -> tuple[float, str, float]:
    """(auto ms, best forced family, its ms) for M tokens on int8 weights (w13, w2, s13, s2)."""
    x = torch.randn(M, shape.hidden, dtype=torch.bfloat16, device="cuda")
    tw, ids = random_routing(M, shape, "cuda", seed=M)

    def run():
        return int8_moe.fused_moe(x, *weights, tw, ids, activation=shape.activation)

    with gemm_path("auto"):
        auto_ms = timed(run, graph=True)
    forced = {}
    for path in paths_for(per_expert, grouped_mm_ok):
        with gemm_path(path):
            forced[path] = timed(run, graph=True)
    best = min(forced, key=forced.get)
    return auto_ms, best, forced[best]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tp", default="1,2,4,8")
    parser.add_argument("--tokens", default="1,16,64,256,1024,4096")
    args = parser.parse_args()
    grouped_mm_ok = torch.cuda.get_device_capability()[0] >= 9
    print(f"{device_name()}; auto vs each kernel family forced (ms, CUDA-graph replays)")
    print("| model | I | M | routes/expert | auto ms | best | best ms | auto / best |")
    print("|---|---|---|---|---|---|---|---|")
    n_cases = n_good = 0
    for name in args.models.split(","):
        shape = PRESETS[name]
        inters = sorted(
            {
                shape.inter // tp
                for tp in map(int, args.tp.split(","))
                if shape.inter % tp == 0 and (shape.inter // tp) % 16 == 0
            },
            reverse=True,
        )
        for inter in inters:
            E, H = shape.experts, shape.hidden
            w13 = torch.randint(-127, 128, (E, 2 * inter, H), dtype=torch.int8, device="cuda")
            w2 = torch.randint(-127, 128, (E, H, inter), dtype=torch.int8, device="cuda")
            s13 = torch.rand(E, 2 * inter, device="cuda") * 1e-3
            s2 = torch.rand(E, H, device="cuda") * 1e-3
            weights = (w13, w2, s13, s2)
            for M in map(int, args.tokens.split(",")):
                per_expert = -(-M * shape.topk // E)
                auto_ms, best, best_ms = time_case(shape, weights, M, per_expert, grouped_mm_ok)
                ratio = auto_ms / best_ms
                n_cases += 1
                n_good += ratio <= 1.05
                print(
                    f"| {name} | {inter} | {M} | {per_expert} | {auto_ms:.4f} | "
                    f"{best} | {best_ms:.4f} | {ratio:.2f} |",
                    flush=True,
                )
            del w13, w2, s13, s2, weights
            torch.cuda.empty_cache()
    print(f"auto within 5% of the best family in {n_good} of {n_cases} cases")


if __name__ == "__main__":
    main()
