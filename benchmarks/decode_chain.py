"""The decode chain's launch options, timed against each other in one run.

For Mixtral-8x7B and Qwen3-30B-A3B at decode token counts, the int8 forward (CUDA-graph replays,
routing included) with each setting of the decode chain's knobs: programmatic dependent launch
(INT8_MOE_PDL), the L2 prefetch before the PDL wait (INT8_MOE_DECODE_PREFETCH_MB), the weight
chunks in flight per warp (INT8_MOE_DECODE_AHEAD; "rule": 4 for GEMM2's long rows when few
CTAs are busy, else 2), the 16-row MMA tiles per CTA (INT8_MOE_DECODE_MT), the routes per block
(INT8_MOE_DECODE_BM), up to 32 routes
direct routing (INT8_MOE_DIRECT_ROUTING: the GEMMs derive their blocks from the router ids, no
align kernel), the one-warp align kernel up to 32 routes (INT8_MOE_ALIGN_WARP) and align
launched with PDL (INT8_MOE_ALIGN_PDL), and
GEMM2's K slices (INT8_MOE_DECODE_SPLITK; "rule": 2 for long rows when few CTAs are busy), and
with --act-quant per_token the looped activation quantization kernel
(INT8_MOE_ACT_QUANT_LOOPED=1) against the register-resident one.
"before" is the chain without them (no PDL, 2 chunks in flight, one tile per CTA, aligned
routing, one K slice, the block align kernel without PDL); "auto" is the default.
Floor: int8 bytes of the experts touched / copy rate. One timing round: the first column of a row
("before") is timed first after new inputs and may read slow (bench_moe.py times two rounds);
compare the other columns with each other.

By default one call per replay of a one-call graph from an idle GPU, on one copy of the weights
(so L2 may carry part of them from one replay to the next); --steady times as bench_moe.py does:
calls back to back in one graph, cycling through COPIES copies on distinct weights.

python benchmarks/decode_chain.py [--act-quant per_token] [--steady]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_moe import COPIES, knobs, steady, timed  # noqa: E402

import int8_moe  # noqa: E402
from int8_moe.cli import random_routing  # noqa: E402
from int8_moe.presets import PRESETS  # noqa: E402

from common import copy_bandwidth_gbs, device_name, random_int8_weights  # noqa: E402

AUTO = dict(PDL="auto", DECODE_AHEAD="auto", DECODE_PREFETCH_MB="auto", DECODE_MT="auto",
            DIRECT_ROUTING="auto", DECODE_SPLITK="auto", ALIGN_WARP="auto", ALIGN_PDL="auto")
SETTINGS = {
    "before": dict(PDL="0", DECODE_AHEAD="2", DECODE_PREFETCH_MB="0", DECODE_MT="1",
                   DIRECT_ROUTING="0", DECODE_SPLITK="1", ALIGN_WARP="0", ALIGN_PDL="0"),
    "pdl+pf16": dict(AUTO, PDL="1", DECODE_AHEAD="2", DECODE_PREFETCH_MB="16", DECODE_MT="1",
                     DIRECT_ROUTING="0", DECODE_SPLITK="1", ALIGN_WARP="0", ALIGN_PDL="0"),
    "auto mt1": dict(AUTO, DECODE_MT="1"),
    "auto mt2": dict(AUTO, DECODE_MT="2"),
    "auto bm16": dict(AUTO, DECODE_BM="16"),
    "auto ahead4": dict(AUTO, DECODE_AHEAD="4"),
    "auto pf32": dict(AUTO, DECODE_PREFETCH_MB="32"),
    "auto pf0": dict(AUTO, DECODE_PREFETCH_MB="0"),
    "auto nopdl": dict(AUTO, PDL="0"),
    "auto aligned": dict(AUTO, DIRECT_ROUTING="0"),
    "direct": dict(AUTO, DIRECT_ROUTING="1"),
    "looped quant": dict(AUTO, ACT_QUANT_LOOPED="1"),
    "old align": dict(AUTO, ALIGN_WARP="0", ALIGN_PDL="0"),
    "block align": dict(AUTO, ALIGN_WARP="0"),
    "align nopdl": dict(AUTO, ALIGN_PDL="0"),
    "auto ahead2": dict(AUTO, DECODE_AHEAD="2"),
    "auto split1": dict(AUTO, DECODE_SPLITK="1"),
    "auto split2": dict(AUTO, DECODE_SPLITK="2"),
    "auto split4": dict(AUTO, DECODE_SPLITK="4"),
    "auto": AUTO,
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="mixtral-8x7b,qwen3-30b-a3b")
    parser.add_argument("--tokens", default="1,4,16,64")
    parser.add_argument("--act-quant", default="none", choices=["none", "per_token"])
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="comma-separated columns to time (default: all; 'before' and "
                        "'auto' always)")
    parser.add_argument("--steady", action="store_true",
                        help="time calls back to back in one graph over distinct weight copies")
    parser.add_argument("--csv", default=None)  # accepted for gpu_check.sh; unused
    args = parser.parse_args()
    copy_gbs = copy_bandwidth_gbs()
    how = (f"one call back to back in a graph over {COPIES} weight copies" if args.steady
           else "one CUDA-graph replay")
    print(f"{device_name()}, copy {copy_gbs:.0f} GB/s, act_quant={args.act_quant}: ms of {how} "
          "per setting (% of floor)")
    chosen = {"before", "auto", *args.settings.split(",")}
    unknown = chosen - SETTINGS.keys()
    if unknown:
        parser.error(f"unknown settings {sorted(unknown)}; choose from {list(SETTINGS)}")
    settings = {k: v for k, v in SETTINGS.items() if k in chosen}
    print("| model | M | floor ms | " + " | ".join(settings) + " | before / auto |")
    print("|---|---|---|" + "---|" * (len(settings) + 1))
    for name in args.models.split(","):
        time_model(PRESETS[name], args.tokens, args.act_quant, copy_gbs, settings, args.steady)
        torch.cuda.empty_cache()


def time_model(shape, tokens: str, act_quant: str, copy_gbs: float, settings: dict,
               steady_calls: bool) -> None:
    """One table row per token count; random int8 weights with random scales (timing only)."""
    E, H, inter = shape.experts, shape.hidden, shape.inter
    copies = [random_int8_weights(E, H, inter) for _ in range(COPIES if steady_calls else 1)]
    for M in map(int, tokens.split(",")):
        x = torch.randn(M, H, dtype=torch.bfloat16, device="cuda")
        tw, ids = random_routing(M, shape, "cuda", seed=M)
        touched = int(torch.unique(ids).numel())
        floor_ms = touched * 3 * H * inter / copy_gbs / 1e6

        def call(weights, x=x, tw=tw, ids=ids):
            return int8_moe.fused_moe(x, *weights, tw, ids, activation=shape.activation,
                                      act_quant=act_quant)

        fns = [functools.partial(call, w) for w in copies]
        ms = {}
        for label, env in settings.items():
            with knobs(GEMM_PATH="auto", **env):
                ms[label] = steady(fns) if steady_calls else timed(fns[0], graph=True)
        cells = " | ".join(f"{v:.4f} ({100 * floor_ms / v:.0f}%)" for v in ms.values())
        print(f"| {shape.name} | {M} | {floor_ms:.4f} | {cells} | "
              f"{ms['before'] / ms['auto']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
