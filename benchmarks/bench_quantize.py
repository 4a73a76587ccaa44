"""Online quantization of whole MoE layers on the GPU: time, % of the copy-bandwidth floor,
speedup over the original per-expert PyTorch loop, extra peak memory.

Floor: 3 bytes per weight (2 read as bf16, 1 written as int8; scales are noise) over the
device-to-device copy rate measured in this run. Run: python benchmarks/bench_quantize.py
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import int8_moe  # noqa: E402

from common import bench_ms, copy_bandwidth_gbs, device_name  # noqa: E402

LAYERS = {
    "mixtral-8x7b": {"w13": (8, 28672, 4096), "w2": (8, 4096, 14336)},
    "qwen3-30b-a3b": {"w13": (128, 1536, 2048), "w2": (128, 2048, 768)},
}


def original_loop(w: torch.Tensor):
    """The original online quantization, one expert at a time."""
    qs, ss = [], []
    for e in range(w.shape[0]):
        s = w[e].abs().amax(dim=1, keepdim=True) / 127
        qs.append((w[e] / s).round().clamp(-127, 127).to(torch.int8))
        ss.append(s)
    return qs, ss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv", default=None)
    args = parser.parse_args()
    copy_gbs = copy_bandwidth_gbs()
    rows = []
    for name, shapes in LAYERS.items():
        ws = [torch.randn(s, dtype=torch.bfloat16, device="cuda") * 0.02 for s in shapes.values()]
        n = sum(w.numel() for w in ws)
        moved = 3 * n
        floor_ms = moved / copy_gbs / 1e6

        def ours(ws=ws):
            for w in ws:
                int8_moe.quantize_rows(w)

        def loop(ws=ws):
            return [original_loop(w) for w in ws]

        ms = bench_ms(ours, warmup=2, reps=10)
        loop_ms = bench_ms(loop, warmup=1, reps=3)
        # Extra peak memory of one quantization call beyond its inputs, vs int8 + scales.
        torch.cuda.synchronize()
        peak_extra = 0
        result_bytes = 0
        for w in ws:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            q, s = int8_moe.quantize_rows(w)
            torch.cuda.synchronize()
            peak_extra = max(peak_extra, torch.cuda.max_memory_allocated() - base)
            result_bytes = max(result_bytes, q.numel() + 4 * s.numel())
            del q, s
        rows.append(
            (
                name,
                moved / 1e9,
                ms,
                100 * floor_ms / ms,
                loop_ms / ms,
                peak_extra / 2**20,
                result_bytes / 2**20,
            )
        )
        ws.clear()
        torch.cuda.empty_cache()

    print(f"\n{device_name()}: copy bandwidth {copy_gbs:.0f} GB/s (read+write)")
    header = (
        "layer",
        "GB moved",
        "ms",
        "% of floor",
        "vs loop",
        "extra peak MiB",
        "int8+scales MiB",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(
            f"| {r[0]} | {r[1]:.2f} | {r[2]:.3f} | {r[3]:.1f}% | {r[4]:.1f}x | {r[5]:.1f} | "
            f"{r[6]:.1f} |"
        )
    if args.csv:
        with open(args.csv, "w") as f:
            f.write(",".join(header) + "\n")
            for r in rows:
                f.write(",".join(str(v) for v in r) + "\n")


if __name__ == "__main__":
    main()
