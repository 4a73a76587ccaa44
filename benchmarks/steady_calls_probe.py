"""How bench_moe's steady timing depends on the calls per graph replay.

bench_moe.steady() puts ~1 ms of calls in each replay, at least one per weight copy: 3 calls a
replay from ~0.33 ms a call (Qwen3-30B-A3B M >= 4096, Mixtral-8x7B M >= 1024). This probe times
the same layers with 3, 6, 12 and 24 calls a replay (common.steady_graph_ms over the 3 copies,
best of 2), and reads the torch.profiler period between calls inside a 12-call replay, with the
first call of a replay and the second timed alone (first kernel start to last kernel end): whether
the replay's first call or its launch weighs on the 3-call reading.

python benchmarks/steady_calls_probe.py
"""

from __future__ import annotations

import functools
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_moe import COPIES, bf16_grouped_mm_layer  # noqa: E402
from profile_moe import graph_kernels  # noqa: E402

import int8_moe  # noqa: E402
from int8_moe.cli import random_layer, random_routing  # noqa: E402
from int8_moe.presets import PRESETS  # noqa: E402

from common import steady_graph_ms  # noqa: E402

CASES = (("qwen3-30b-a3b", (1024, 4096)), ("mixtral-8x7b", (4096,)))
REPLAYS = 3


def profiled_period(fns, calls: int) -> tuple[float, float, float]:
    """Median us between call starts inside a replay; the first call's and the second's span."""
    kernels = graph_kernels(fns, calls, REPLAYS)
    n = len(kernels) // (REPLAYS * calls)  # kernels per call
    starts = [kernels[i * n][1] for i in range(REPLAYS * calls)]
    ends = [kernels[i * n + n - 1][2] for i in range(REPLAYS * calls)]
    period = [starts[i + 1] - starts[i] for i in range(REPLAYS * calls - 1) if (i + 1) % calls]
    first = [ends[r * calls] - starts[r * calls] for r in range(REPLAYS)]
    second = [ends[r * calls + 1] - starts[r * calls + 1] for r in range(REPLAYS)]
    return statistics.median(period), statistics.median(first), statistics.median(second)


def main():
    for name, token_counts in CASES:
        shape = PRESETS[name]
        w13, w2, _, _ = random_layer(shape, torch.bfloat16, "cuda")
        layers = {
            "int8": [int8_moe.Int8MoE.from_weights(w13.clone(), w2.clone())
                     for _ in range(COPIES)],
            "bf16": [bf16_grouped_mm_layer(w13, w2) for _ in range(COPIES)],
        }
        for M in token_counts:
            x = torch.randn(M, shape.hidden, dtype=torch.bfloat16, device="cuda")
            tw, ids = random_routing(M, shape, "cuda", seed=M)
            for key, copies in layers.items():
                fns = [functools.partial(f, x, tw, ids) for f in copies]
                ms = [min(steady_graph_ms(fns, calls=c, reps=20) for _ in range(2))
                      for c in (3, 6, 12, 24)]
                period, first, second = profiled_period(fns, 12)
                print(f"{name} M={M} {key}: steady ms calls 3/6/12/24 = "
                      + " / ".join(f"{t:.4f}" for t in ms)
                      + f"; profiler (12 calls): period {period / 1e3:.4f} ms, first call "
                      f"{first / 1e3:.4f}, second {second / 1e3:.4f}", flush=True)
        del layers, w13, w2
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
