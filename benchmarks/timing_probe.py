"""Why did bench_moe read one configuration at two speeds in one run?

Run 6 (session 19) timed Qwen3-30B-A3B M = 1 W8A16 at 0.0295 ms in its auto row and 0.0263 in
the forced decode row: the same kernels, the same launch configuration. This probe times that
configuration (and its W8A8 twin) several ways in one process, so that the timing method that
makes identical work read the same can be told from the ones that do not:
  fresh    bench_moe's timed(): a new graph per measurement, 10 replays of warm-up, each rep
           timed on its own
  reuse    one graph captured once, timed again and again the same way
  warm20   like fresh, after 20 ms of back-to-back replays
  stream   N replays back to back between two events, divided by N (no idle gaps)
  steady1  common.steady_graph_ms: 12 calls in one graph, one copy of the weights (auto only)
  steady3  the same cycling through 3 copies of the weights (bench_moe's method since session
           20: no call finds its weights in L2 from the call before)
The configurations: auto, forced (INT8_MOE_GEMM_PATH=decode), W8A8, and "empty", a one-kernel
graph timed by the first four methods: what they read with next to no GPU work.
Each is interleaved with the host-bound per-expert loop (what bench_moe times before the
forced rows) and with the other configuration, in alternation, several times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_moe import gemm_path, loop_layer, timed  # noqa: E402

import int8_moe  # noqa: E402
from int8_moe.cli import random_layer, random_routing  # noqa: E402
from int8_moe.presets import PRESETS  # noqa: E402

from common import bench_ms, capture_graph, steady_graph_ms  # noqa: E402


def replay_for(g, ms: float):
    """Back-to-back replays for about `ms` milliseconds of GPU time."""
    one = bench_ms(g.replay, warmup=1, reps=3)
    for _ in range(max(1, int(ms / max(one, 1e-3)))):
        g.replay()
    torch.cuda.synchronize()


def stream_ms(g, n: int = 200) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    g.replay()
    start.record()
    for _ in range(n):
        g.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen3-30b-a3b")
    parser.add_argument("--M", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    shape = PRESETS[args.model]
    w13, w2, _, _ = random_layer(shape, torch.bfloat16, "cuda")
    layers = [int8_moe.Int8MoE.from_weights(w13.clone(), w2.clone()) for _ in range(3)]
    layer = layers[0]
    layer8 = int8_moe.Int8MoE.from_weights(w13.clone(), w2.clone(), act_quant="per_token")
    loop = loop_layer(w13, w2)
    x = torch.randn(args.M, shape.hidden, dtype=torch.bfloat16, device="cuda")
    tw, ids = random_routing(args.M, shape, "cuda", seed=args.M)

    def auto():
        return layer(x, tw, ids)

    def w8a8():
        return layer8(x, tw, ids)

    def forced():
        with gemm_path("decode"):
            return layer(x, tw, ids)

    tiny = torch.zeros(1, device="cuda")
    configs = {"auto": auto, "forced": forced, "w8a8": w8a8, "empty": lambda: tiny.add_(1)}
    copies = [lambda f=f: f(x, tw, ids) for f in layers]
    graphs = {k: capture_graph([f]) for k, f in configs.items()}
    res: dict[tuple[str, str], list[float]] = {}

    def note(method, key, ms):
        res.setdefault((method, key), []).append(ms)
        print(f"{method:8s} {key:7s} {ms * 1e3:7.2f} us", flush=True)

    for r in range(args.rounds):
        order = list(configs) if r % 2 == 0 else list(reversed(configs))
        for key in order:
            timed(lambda: loop(x, tw, ids), graph=False)  # host-bound, as bench_moe's loop row
            note("fresh", key, timed(configs[key], graph=True))
            timed(lambda: loop(x, tw, ids), graph=False)
            note("reuse", key, bench_ms(graphs[key].replay, warmup=10, reps=100))
            timed(lambda: loop(x, tw, ids), graph=False)
            g = capture_graph([configs[key]])
            replay_for(g, 20.0)
            note("warm20", key, bench_ms(g.replay, warmup=0, reps=100))
            note("stream", key, stream_ms(graphs[key]))
        note("steady1", "auto", steady_graph_ms(copies[:1], calls=12))
        note("steady3", "auto", steady_graph_ms(copies, calls=12))
    print(f"\n{torch.cuda.get_device_name()} {args.model} M={args.M}: median / min / max (us)")
    print("| method | config | median | min | max |")
    print("|---|---|---|---|---|")
    for (method, key), v in res.items():
        print(
            f"| {method} | {key} | {statistics.median(v) * 1e3:.2f} | {min(v) * 1e3:.2f} | "
            f"{max(v) * 1e3:.2f} |"
        )


if __name__ == "__main__":
    main()
