"""Whether the W8A16 forward's time at a prefill shape depends on where its buffers land.

Session 45's bench read Qwen3-30B-A3B M = 4096 at 0.792 ms in its steady column and 0.855 /
0.868 ms in its one-call columns (idle, forced wgmma: the same kernels), where earlier tables
read the three within 2%; session 44's leases differed by ~7% on this layer. This probe times
the same layer over fresh weight tensors (new allocations each trial) and, per set of weights,
over several graph captures (each capture's private pool places the intermediate and the
per-route rows anew): one-call replays (bench_moe.timed) and 3-call steady replays
(bench_moe.steady over one copy). A spread across trials and not within one points at the
placement of the weights; within a trial's captures, at the workspace's.

python benchmarks/bimodal_probe.py [--model qwen3-30b-a3b] [--tokens 4096] [--trials 6]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_moe import steady, timed  # noqa: E402

import int8_moe  # noqa: E402
from int8_moe.cli import random_routing  # noqa: E402
from int8_moe.presets import PRESETS  # noqa: E402

from common import device_name, random_int8_weights  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen3-30b-a3b")
    parser.add_argument("--tokens", default="1024,4096")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--captures", type=int, default=3)
    args = parser.parse_args()
    shape = PRESETS[args.model]
    print(f"{device_name()}: {shape.name}, W8A16 forward ms; per trial fresh weights, "
          f"{args.captures} graph captures each (one-call replays), then one 3-call steady reading")
    print("| M | trial | one-call ms per capture | steady ms |")
    print("|---|---|---|---|")
    for M in map(int, args.tokens.split(",")):
        x = torch.randn(M, shape.hidden, dtype=torch.bfloat16, device="cuda")
        tw, ids = random_routing(M, shape, "cuda", seed=M)
        for trial in range(args.trials):
            weights = random_int8_weights(shape.experts, shape.hidden, shape.inter)

            def run(weights=weights, x=x, tw=tw, ids=ids):
                return int8_moe.fused_moe(x, *weights, tw, ids, activation=shape.activation)

            one = [timed(run, graph=True) for _ in range(args.captures)]
            st = steady([run])
            print(f"| {M} | {trial} | {' / '.join(f'{t:.4f}' for t in one)} | {st:.4f} |",
                  flush=True)
            del weights
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
