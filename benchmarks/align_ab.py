"""The block align kernel against the parallel align (INT8_MOE_ALIGN_PARALLEL = 0 / 1), in one run.

For each model and token count: the int8 forward's time (CUDA-graph replays, routing included;
W8A16, or W8A8 with --act-quant per_token) with each align, over two alternating rounds, and the
align kernels' own GPU time per call (torch.profiler: the kernels whose names hold "align").
Random int8 weights with random scales (timing only).

python benchmarks/align_ab.py [--models ...] [--tokens ...] [--act-quant per_token]
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

SETTINGS = ("0", "1")  # INT8_MOE_ALIGN_PARALLEL: block kernel, parallel kernels


def align_us(run, calls: int = 10) -> float:
    """GPU time per call of the kernels named *align* (profiler, after a warm-up call)."""
    run()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            run()
        torch.cuda.synchronize()
    total = sum(e.device_time_total for e in prof.key_averages() if "align" in e.key)
    return total / calls


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="mixtral-8x7b,qwen3-30b-a3b,deepseek-v3")
    parser.add_argument("--tokens", default="64,128,256,512,1024,4096,16384")
    parser.add_argument("--act-quant", default="none", choices=["none", "per_token"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--csv", default=None)  # accepted for gpu_check.sh; unused
    args = parser.parse_args()
    print(f"{device_name()}, act_quant={args.act_quant}: forward ms (CUDA-graph replays, "
          f"{args.rounds} rounds) and align kernels' us per call, block (0) / parallel (1)")
    print("| model | M | routes | ms 0 | ms 1 | 1 / 0 | align us 0 | align us 1 |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        time_model(PRESETS[name], args.tokens, args.act_quant, args.rounds)
        torch.cuda.empty_cache()


def time_model(shape, tokens: str, act_quant: str, rounds: int) -> None:
    """One table row per token count."""
    weights = random_int8_weights(shape.experts, shape.hidden, shape.inter)
    for M in map(int, tokens.split(",")):
        x = torch.randn(M, shape.hidden, dtype=torch.bfloat16, device="cuda")
        tw, ids = random_routing(M, shape, "cuda", seed=M)

        def run(x=x, tw=tw, ids=ids):
            return int8_moe.fused_moe(x, *weights, tw, ids, activation=shape.activation,
                                      act_quant=act_quant)

        ms = {s: [] for s in SETTINGS}
        us = {}
        for _ in range(rounds):
            for s in SETTINGS:
                with knobs(ALIGN_PARALLEL=s):
                    ms[s].append(timed(run, graph=True))
        for s in SETTINGS:
            with knobs(ALIGN_PARALLEL=s):
                us[s] = align_us(run)
        best = {s: min(v) for s, v in ms.items()}
        print(f"| {shape.name} | {M} | {M * shape.topk} | {best['0']:.4f} | {best['1']:.4f} | "
              f"{best['1'] / best['0']:.3f} | {us['0']:.1f} | {us['1']:.1f} |", flush=True)

if __name__ == "__main__":
    main()
