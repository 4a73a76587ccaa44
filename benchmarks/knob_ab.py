"""One tuning knob's settings against each other in one run, on the same build and machine.

For each model, token count and activation mode: the int8 forward's time (CUDA-graph replays,
routing included) under each setting of INT8_MOE_<knob>, over alternating rounds (the best of
each), and the GPU time per call of the kernels whose names hold --kernels (torch.profiler).
Random int8 weights with random scales (timing only).

python benchmarks/knob_ab.py --knob WGMMA_TMA --settings 0,1 [--models ...] [--tp 1,2]
    [--tokens ...] [--act-quant none,per_token] [--kernels wgmma] [--rounds 2]
(--tp: the models' tensor-parallel splits, I / tp where that is a multiple of 16.)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_moe import knobs, timed  # noqa: E402

import int8_moe  # noqa: E402
from int8_moe.cli import random_routing  # noqa: E402
from int8_moe.presets import PRESETS  # noqa: E402

from common import device_name, random_int8_weights  # noqa: E402


def kernel_us(run, name: str, calls: int = 5) -> float:
    """GPU time per call of the kernels whose names hold `name` (profiler, after a warm-up)."""
    run()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            run()
        torch.cuda.synchronize()
    return sum(e.device_time_total for e in prof.key_averages() if name in e.key) / calls


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--knob", required=True, help="INT8_MOE_<knob>, e.g. WGMMA_TMA")
    parser.add_argument("--settings", default="0,1")
    parser.add_argument("--models", default="mixtral-8x7b,qwen3-30b-a3b")
    parser.add_argument("--tp", default="1")
    parser.add_argument("--tokens", default="1024,4096,16384")
    parser.add_argument("--act-quant", default="none,per_token")
    parser.add_argument("--kernels", default="wgmma")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--csv", default=None)  # accepted for gpu_check.sh; unused
    args = parser.parse_args()
    settings = args.settings.split(",")
    print(f"{device_name()}: INT8_MOE_{args.knob} = {' / '.join(settings)}; forward ms "
          f"(CUDA-graph replays, best of {args.rounds} alternating rounds) and the "
          f"'{args.kernels}' kernels' us per call")
    head = " | ".join(f"ms {s}" for s in settings) + " | " + " | ".join(
        f"{s} / {settings[0]}" for s in settings[1:]) + " | " + " | ".join(
        f"us {s}" for s in settings)
    print(f"| model | I | mode | M | {head} |")
    print("|---|---|---|---|" + "---|" * (3 * len(settings) - 1))
    for name in args.models.split(","):
        for tp in map(int, args.tp.split(",")):
            shape = PRESETS[name]
            if shape.inter % tp or (shape.inter // tp) % 16:
                continue
            time_model(dataclasses.replace(shape, inter=shape.inter // tp), args, settings)
            torch.cuda.empty_cache()


def time_model(shape, args, settings: list[str]) -> None:
    """One table row per token count and activation mode."""
    weights = random_int8_weights(shape.experts, shape.hidden, shape.inter)
    for M in map(int, args.tokens.split(",")):
        x = torch.randn(M, shape.hidden, dtype=torch.bfloat16, device="cuda")
        tw, ids = random_routing(M, shape, "cuda", seed=M)
        for mode in args.act_quant.split(","):

            def run(x=x, tw=tw, ids=ids, mode=mode):
                return int8_moe.fused_moe(x, *weights, tw, ids, activation=shape.activation,
                                          act_quant=mode)

            ms = {s: [] for s in settings}
            for _ in range(args.rounds):
                for s in settings:
                    with knobs(**{args.knob: s}):
                        ms[s].append(timed(run, graph=True))
            us = {}
            for s in settings:
                with knobs(**{args.knob: s}):
                    us[s] = kernel_us(run, args.kernels)
            best = {s: min(v) for s, v in ms.items()}
            cells = [f"{best[s]:.4f}" for s in settings]
            cells += [f"{best[s] / best[settings[0]]:.3f}" for s in settings[1:]]
            cells += [f"{us[s]:.1f}" for s in settings]
            print(f"| {shape.name} | {shape.inter} | {mode} | {M} | {' | '.join(cells)} |",
                  flush=True)

if __name__ == "__main__":
    main()
