"""Per-kernel GPU time of fused_moe calls (torch.profiler), for finding where time goes.

python benchmarks/profile_moe.py --preset qwen3-30b-a3b --tokens 1,64 [--dtype fp16]
    [--act-quant per_token] [--steady]
(INT8_MOE_GEMM_PATH and the other knobs of fused_moe_cuda.cu force a path.)

Default: eager calls on one weight copy, a table per kernel (under PDL a kernel's time includes
its wait on the one before). --steady profiles the layer as bench_moe.py times it, calls back
to back in one CUDA graph over COPIES weight copies, and prints one call's timeline instead: each
kernel's start and end from the call's first kernel start, averaged over the calls, and the
period between calls (bench_moe's number). Under PDL a kernel starts when its CTAs are resident,
which may be before the one ahead of it ends; its end is its last CTA's.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(__file__))
import int8_moe  # noqa: E402
from int8_moe.cli import random_layer, random_routing  # noqa: E402
from int8_moe.presets import PRESETS  # noqa: E402

from common import capture_graph  # noqa: E402

COPIES = 3  # as bench_moe.py
CALLS = 12  # calls per graph replay in --steady (4 per copy)
REPLAYS = 5


def short_name(name: str) -> str:
    """'void int8_moe::moe_gemm_decode_kernel<...>(...)' -> 'moe_gemm_decode_kernel'."""
    name = re.sub(r"^void ", "", name).split("<")[0].split("(")[0]
    return name.split("::")[-1]


def graph_kernels(fns, calls: int, replays: int) -> list[tuple[str, float, float]]:
    """(name, start us, end us) of every kernel of `replays` replays of a graph of `calls` calls
    cycling through fns (after 3 unprofiled replays), in start order."""
    g = capture_graph(fns, calls=calls, warmup=2)
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            g.replay()
        torch.cuda.synchronize()
    kernels = [(e.name, e.time_range.start, e.time_range.end) for e in prof.events()
               if e.device_type == DeviceType.CUDA and "Memcpy" not in e.name
               and "Memset" not in e.name]
    return sorted(kernels, key=lambda k: k[1])


def steady_timeline(layers, x, tw, ids) -> None:
    fns = [lambda layer=layer: layer(x, tw, ids) for layer in layers]
    print_timeline(graph_kernels(fns, CALLS, REPLAYS), calls=REPLAYS * CALLS)


def print_timeline(kernels, calls: int) -> None:
    """kernels: (name, start us, end us) in start order, `calls` calls' worth, CALLS per replay."""
    if not kernels or len(kernels) % calls:
        print(f"  {len(kernels)} kernels for {calls} calls: not a whole number per call")
        return
    per_call = len(kernels) // calls
    rows = [kernels[i * per_call:(i + 1) * per_call] for i in range(calls)]
    # Periods within a replay only (a replay's first call waits on the host's launch).
    periods = [rows[i + 1][0][1] - rows[i][0][1] for i in range(calls - 1) if (i + 1) % CALLS]
    print(f"  {per_call} kernels per call; period between calls: median "
          f"{statistics.median(periods):.1f} us (min {min(periods):.1f}, max {max(periods):.1f})")
    print("  | kernel | start us | end us | duration us |")
    print("  |---|---|---|---|")
    for k in range(per_call):
        start = statistics.median(r[k][1] - r[0][1] for r in rows)
        end = statistics.median(r[k][2] - r[0][1] for r in rows)
        dur = statistics.median(r[k][2] - r[k][1] for r in rows)
        print(f"  | {short_name(rows[0][k][0])} | {start:.1f} | {end:.1f} | {dur:.1f} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="qwen3-30b-a3b,mixtral-8x7b")
    parser.add_argument("--tokens", default="1,64")
    parser.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    parser.add_argument("--act-quant", choices=("none", "per_token"), default="none")
    parser.add_argument("--steady", action="store_true",
                        help="one call's kernel timeline in bench_moe.py's steady graph")
    parser.add_argument("--csv", default=None)  # accepted for gpu_check.sh; unused
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    for name in args.preset.split(","):
        shape = PRESETS[name]
        w13, w2, _, _ = random_layer(shape, dtype, "cuda")
        copies = COPIES if args.steady else 1
        layers = [int8_moe.Int8MoE.from_weights(w13.clone(), w2.clone(), act_quant=args.act_quant)
                  for _ in range(copies)]
        del w13, w2
        for M in (int(t) for t in args.tokens.split(",")):
            x = torch.randn(M, shape.hidden, dtype=dtype, device="cuda")
            tw, ids = random_routing(M, shape, "cuda", seed=M)
            if args.steady:
                print(f"\n== {name} M={M} {args.dtype} act_quant={args.act_quant}: one call in a "
                      f"steady graph ({CALLS} calls over {copies} copies, {REPLAYS} replays) ==")
                steady_timeline(layers, x, tw, ids)
                continue
            layer = layers[0]
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
        del layers
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
