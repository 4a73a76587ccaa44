"""Where a layer's online quantization spends its time: per-kernel GPU time (torch.profiler)
against the wall time of the same calls, so the op's overhead beyond its kernels (allocation,
the error-slot memset and read-back, one host sync per tensor, Python) shows.

python benchmarks/profile_quantize.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(__file__))
from bench_quantize import LAYERS  # noqa: E402

import int8_moe  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--csv", default=None)  # accepted for gpu_check.sh; unused
    args = parser.parse_args()
    for name, shapes in LAYERS.items():
        ws = [torch.randn(s, dtype=torch.bfloat16, device="cuda") * 0.02 for s in shapes.values()]

        def layer(ws=ws):
            for w in ws:
                int8_moe.quantize_rows(w)

        for _ in range(3):
            layer()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.reps):
            layer()
        torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - start) * 1e3 / args.reps
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(args.reps):
                layer()
            torch.cuda.synchronize()
        gpu_ms = sum(e.self_device_time_total for e in prof.key_averages()) / 1e3 / args.reps
        print(f"\n== {name}: wall {wall_ms:.3f} ms per layer, GPU busy {gpu_ms:.3f} ms "
              f"({100 * gpu_ms / wall_ms:.1f}%) ==")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8))
        ws.clear()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
