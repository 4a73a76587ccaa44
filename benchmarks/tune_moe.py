"""Kernel-tuning table over every SPEC model shape and its tensor-parallel splits.

For each model, each TP split of its intermediate size (I / tp for tp in --tp, when a multiple of
16), and each token count M, it times the int8 forward (W8A16, or W8A8 with --act-quant per_token;
CUDA-graph replays, routing included) with each kernel variant forced and with the default dispatch
("auto"): INT8_MOE_GEMM_PATH = decode (INT8_MOE_DECODE_BM = 8, 16, 32 routes per block; up to 32
routes also 8 with GEMM2 in 2 K slices, INT8_MOE_DECODE_SPLITK), tiled, grouped_mm (W8A16) and
wgmma (INT8_MOE_WGMMA_BN = 64, 128, 256) where they apply. One row per case: the routes per expert,
the best variant, and how far "auto" is from it. The last line counts the cases where auto is
within 5% of the best. --per-expert sets M per model from routes per expert instead of --tokens;
--variants times only the labels given (e.g. grouped_mm,wgmma/128x2 for the prefill boundary).
Weights are random int8 with random scales (timing only), so the largest shapes load in seconds.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_moe import knobs, timed  # noqa: E402

import int8_moe  # noqa: E402
from int8_moe.cli import random_routing  # noqa: E402
from int8_moe.presets import PRESETS  # noqa: E402

from common import device_name, random_int8_weights  # noqa: E402

MODELS = [n for n in PRESETS if n not in ("tiny", "small")]


def variants_for(
    per_expert: int, grouped_mm_ok: bool, wgmma_ok: bool, w8a16: bool, n_routes: int
) -> dict[str, dict]:
    """Label -> INT8_MOE_* knobs. Forcing decode far above its design point only wastes time
    (it re-streams the weights once per block of routes). Decode labels are routes per block,
    then "k2" where GEMM2 is split over K in 2 slices (timed up to 32 routes, where few CTAs
    hold routes). wgmma labels are routes per tile x warpgroups per CTA (4 exists for W8A8 at
    128 routes per tile); W8A16's at 128 routes also with p0 / p1, its main loop without / with
    the pipeline (INT8_MOE_WGMMA_PIPE)."""
    v = {}
    if per_expert <= 64:
        for bm in ("8", "16", "32"):
            v[f"decode/{bm}"] = dict(GEMM_PATH="decode", DECODE_BM=bm, DECODE_SPLITK="1")
        if n_routes <= 32:
            v["decode/8 k2"] = dict(GEMM_PATH="decode", DECODE_BM="8", DECODE_SPLITK="2")
    v["tiled"] = dict(GEMM_PATH="tiled")
    if grouped_mm_ok and per_expert >= 16:
        v["grouped_mm"] = dict(GEMM_PATH="grouped_mm")
    if wgmma_ok and per_expert > 8:  # W8A8's automatic choice takes wgmma from 9 per expert
        tiles = [("64", "2"), ("128", "2")] + ([] if w8a16 else [("128", "4")]) + [("256", "2")]
        for bn, wg in tiles:
            v[f"wgmma/{bn}x{wg}"] = dict(GEMM_PATH="wgmma", WGMMA_BN=bn, WGMMA_WG=wg)
            if w8a16 and bn == "128":  # without / with the pipelined loop (WGMMA_PIPE)
                for pipe in ("0", "1"):
                    v[f"wgmma/{bn}x{wg}p{pipe}"] = dict(
                        GEMM_PATH="wgmma", WGMMA_BN=bn, WGMMA_WG=wg, WGMMA_PIPE=pipe
                    )
    return v


def time_case(
    shape,
    weights,
    M: int,
    per_expert: int,
    grouped_mm_ok: bool,
    act_quant: str,
    only: set[str] | None = None,
) -> tuple[float, dict[str, float]]:
    """(auto ms, {variant: ms}) for M tokens on int8 weights (w13, w2, s13, s2); only: the
    variant labels to time (None: all that apply)."""
    x = torch.randn(M, shape.hidden, dtype=torch.bfloat16, device="cuda")
    tw, ids = random_routing(M, shape, "cuda", seed=M)

    def run():
        return int8_moe.fused_moe(
            x, *weights, tw, ids, activation=shape.activation, act_quant=act_quant
        )

    with knobs(GEMM_PATH="auto", DECODE_BM="auto", WGMMA_BN="auto", DECODE_SPLITK="auto"):
        auto_ms = timed(run, graph=True)
    forced = {}
    # grouped_mm widens the weights for bf16 activations (W8A16 only); wgmma needs compute
    # capability 9.0.
    w8a16 = act_quant == "none"
    wgmma_ok = torch.cuda.get_device_capability() == (9, 0)
    variants = variants_for(per_expert, grouped_mm_ok and w8a16, wgmma_ok, w8a16, M * shape.topk)
    if only is not None:
        variants = {k: v for k, v in variants.items() if k in only}
    for label, env in variants.items():
        with knobs(**env):
            forced[label] = timed(run, graph=True)
    return auto_ms, forced


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tp", default="1,2,4,8")
    parser.add_argument("--tokens", default="1,16,64,256,1024,4096")
    parser.add_argument(
        "--per-expert",
        default=None,
        help="routes per expert instead of --tokens: M = ceil(this * experts / top-k) per model",
    )
    parser.add_argument("--act-quant", default="none", choices=["none", "per_token"])
    parser.add_argument(
        "--variants", default=None, help="comma list of variant labels to time (default: all)"
    )
    args = parser.parse_args()
    only = set(args.variants.split(",")) if args.variants else None
    grouped_mm_ok = torch.cuda.get_device_capability()[0] >= 9
    print(
        f"{device_name()}, act_quant={args.act_quant}; auto vs each kernel variant forced "
        "(ms, CUDA-graph replays)"
    )
    print(
        "| model | I | M | routes/expert | auto ms | best | best ms | auto / best | every variant |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
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
            weights = random_int8_weights(E, H, inter)
            if args.per_expert:
                tokens = [-(-int(pe) * E // shape.topk) for pe in args.per_expert.split(",")]
            else:
                tokens = list(map(int, args.tokens.split(",")))
            for M in tokens:
                per_expert = -(-M * shape.topk // E)
                auto_ms, forced = time_case(
                    shape, weights, M, per_expert, grouped_mm_ok, args.act_quant, only
                )
                if not forced:
                    continue
                best = min(forced, key=forced.get)
                best_ms = forced[best]
                ratio = auto_ms / best_ms
                every = ", ".join(f"{k} {v:.4f}" for k, v in forced.items())
                n_cases += 1
                n_good += ratio <= 1.05
                print(
                    f"| {name} | {inter} | {M} | {per_expert} | {auto_ms:.4f} | "
                    f"{best} | {best_ms:.4f} | {ratio:.2f} | {every} |",
                    flush=True,
                )
            del weights
            torch.cuda.empty_cache()
    print(f"auto within 5% of the best variant in {n_good} of {n_cases} cases")


if __name__ == "__main__":
    main()
