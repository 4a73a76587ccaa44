"""Whether the W8A16 forward's time at a prefill shape depends on where its buffers land.

Session 45's bench read Qwen3-30B-A3B M = 4096 at 0.792 ms in its steady column and 0.855 /
0.868 ms in its one-call columns (idle, forced wgmma: the same kernels), where earlier tables
read the three within 2%; session 44's leases differed by ~7% on this layer. This probe times
the same layer over fresh weight tensors (new allocations each trial) and, per set of weights,
over several graph captures (each capture's private pool places the intermediate and the
per-route rows anew): one-call replays (bench_moe.timed) and 3-call steady replays
(bench_moe.steady over one copy). A spread across trials and not within one points at the
placement of the weights; within a trial's captures, at the workspace's.

--interleave: instead, per set of weights, keep the captures alive and time them in turn,
round after round (capture 0, 1, 2, 0, 1, 2, ...): a capture slow in every round points at what
it fixed at capture (placement); all of them drifting together, at the machine (clocks).
nvidia-smi's SM clock and power are printed with each round when it is there.

python benchmarks/bimodal_probe.py [--model qwen3-30b-a3b] [--tokens 4096] [--trials 6]
    [--interleave --rounds 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_moe import steady, timed  # noqa: E402

import int8_moe  # noqa: E402
from int8_moe.cli import random_routing  # noqa: E402
from int8_moe.presets import PRESETS  # noqa: E402

from common import bench_ms, capture_graph, device_name, random_int8_weights  # noqa: E402


def clocks() -> str:
    """The SM clock (MHz) and power draw (W) nvidia-smi reports now, or '' without it."""
    if shutil.which("nvidia-smi") is None:
        return ""
    q = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader"],
                       capture_output=True, text=True, check=False)
    return q.stdout.strip().splitlines()[0] if q.returncode == 0 and q.stdout.strip() else ""


def interleaved(run, captures: int, rounds: int) -> list[list[float]]:
    """ms of one replay of each of `captures` one-call graphs of run, timed in turn per round."""
    graphs = [capture_graph([run]) for _ in range(captures)]
    return [[bench_ms(g.replay, warmup=3, reps=30) for g in graphs] for _ in range(rounds)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen3-30b-a3b")
    parser.add_argument("--tokens", default="1024,4096")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--captures", type=int, default=3)
    parser.add_argument("--interleave", action="store_true")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    shape = PRESETS[args.model]
    if args.interleave:
        print(f"{device_name()}: {shape.name}, W8A16 forward ms; per trial fresh weights, "
              f"{args.captures} graph captures kept alive, timed in turn for {args.rounds} rounds "
              "(one-call replays; row trial.round)")
        print("| M | trial | one-call ms per capture | SM MHz, W after the round |")
    else:
        print(f"{device_name()}: {shape.name}, W8A16 forward ms; per trial fresh weights, "
              f"{args.captures} graph captures each (one-call replays), then one 3-call steady "
              "reading")
        print("| M | trial | one-call ms per capture | steady ms |")
    print("|---|---|---|---|")
    for M in map(int, args.tokens.split(",")):
        x = torch.randn(M, shape.hidden, dtype=torch.bfloat16, device="cuda")
        tw, ids = random_routing(M, shape, "cuda", seed=M)
        for trial in range(args.trials):
            weights = random_int8_weights(shape.experts, shape.hidden, shape.inter)

            def run(weights=weights, x=x, tw=tw, ids=ids):
                return int8_moe.fused_moe(x, *weights, tw, ids, activation=shape.activation)

            if args.interleave:
                for i, times in enumerate(interleaved(run, args.captures, args.rounds)):
                    print(f"| {M} | {trial}.{i} | {' / '.join(f'{t:.4f}' for t in times)} | "
                          f"{clocks()} |", flush=True)
            else:
                one = [timed(run, graph=True) for _ in range(args.captures)]
                st = steady([run])
                print(f"| {M} | {trial} | {' / '.join(f'{t:.4f}' for t in one)} | {st:.4f} |",
                      flush=True)
            del weights, run
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
