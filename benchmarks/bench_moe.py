"""int8 fused MoE vs bf16 on the GPU, decode and prefill, on real model shapes.

For each shape and token count M it times (all in this run, same inputs):
  int8 W8A16   torch.ops.int8_moe.fused_moe, routing alignment included
  int8 W8A8    the same with act_quant="per_token"
  bf16         the same layer in bf16 through torch._grouped_mm (tokens sorted by expert)
  loop         the naive per-expert PyTorch loop in bf16 (decode sizes only; it syncs)
The first three run as CUDA graphs of several calls back to back, cycling through COPIES copies
of the layer on distinct weights (common.steady_graph_ms): a call's time is the graph's over its
calls, with no host launch in it and no weights left in L2 by the call before, as a layer runs
inside a serving engine's captured decode step. The "W8A16 idle" column times one call per
replay from an idle GPU instead (common.graph_ms, how this benchmark timed until session 20),
which adds the graph launch's host latency: 1-5 us at M = 1-16 in session 21's runs, while
Mixtral-8x7B M = 64 read 0.5-2% lower that way (results/bench_moe_h100.log,
bench_moe_h100_run5.log; an empty one-kernel graph 9-20 us against
2.5-3.0; results/timing_probe_h100.log).
Floor: max(int8 bytes of the experts actually touched / copy bandwidth, FLOPs / bf16 matmul
rate), both rates measured in this run. FLOPs = 2 * M * k * 3 * H * I. W8A8's floor uses the
int8 matmul rate (torch._int_mm on a large product) instead of the bf16 one.
Each is timed in two rounds, round robin over them, and the lower of its two medians
is reported: in single-round runs the configuration timed first after new inputs sometimes read
up to 1.4x slow (Qwen3-30B-A3B M = 4 W8A16 0.102 ms where the forced decode row of the same
configuration, timed later in the same run, read 0.072; benchmarks/NOTES.md).
It also times the int8 layer with each kernel family forced (INT8_MOE_GEMM_PATH: decode at
decode sizes, tiled everywhere, grouped_mm at prefill sizes, wgmma from M = 64 on compute
capability 9.0), the table the dispatch is tuned by.
Writes a CSV and a PNG (time against M for int8, bf16 and the floor, one panel per model).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import int8_moe  # noqa: E402
from int8_moe.cli import random_layer, random_routing  # noqa: E402
from int8_moe.presets import PRESETS  # noqa: E402

from common import (  # noqa: E402
    bench_ms,
    bf16_matmul_tflops,
    copy_bandwidth_gbs,
    device_name,
    graph_ms,
    int8_matmul_tops,
    steady_graph_ms,
)

# Copies of each layer on distinct weights that the timed graphs cycle through: between two calls
# on the same weights run two others, each touching >= 38 MB (Qwen3-30B-A3B at M = 1), more than
# an H100's 50 MB L2 holds of one call's weights.
COPIES = 3
DECODE = [1, 4, 16, 64]
PREFILL = [1024, 4096, 16384]


def bf16_grouped_mm_layer(w13, w2):
    """The bf16 layer a user would run instead: sort routes by expert, two grouped GEMMs."""
    E = w13.shape[0]
    w13_t = w13.transpose(1, 2).contiguous()  # [E, H, 2I]
    w2_t = w2.transpose(1, 2).contiguous()  # [E, I, H]
    inter = w2.shape[2]

    def forward(x, topk_w, topk_ids):
        M, k = topk_ids.shape
        flat = topk_ids.reshape(-1).long()
        order = torch.argsort(flat, stable=True)
        counts = torch.zeros(E, dtype=torch.long, device=x.device).index_add_(
            0, flat, torch.ones_like(flat)
        )  # bincount(minlength) would sync: not capturable
        offs = torch.cumsum(counts, 0).to(torch.int32)
        xs = x[order // k]
        h = torch._grouped_mm(xs, w13_t, offs=offs)
        a = torch.nn.functional.silu(h[:, :inter]) * h[:, inter:]
        y = torch._grouped_mm(a, w2_t, offs=offs)
        y = y * topk_w.reshape(-1)[order].unsqueeze(-1).to(y.dtype)
        out = torch.zeros_like(x)
        out.index_add_(0, order // k, y)
        return out

    return forward


def loop_layer(w13, w2):
    inter = w2.shape[2]

    def forward(x, topk_w, topk_ids):
        out = torch.zeros_like(x)
        for e in range(w13.shape[0]):
            tok, slot = torch.nonzero(topk_ids == e, as_tuple=True)
            if tok.numel() == 0:
                continue
            h = x[tok] @ w13[e].T
            a = torch.nn.functional.silu(h[:, :inter]) * h[:, inter:]
            out.index_add_(0, tok, (a @ w2[e].T) * topk_w[tok, slot, None].to(x.dtype))
        return out

    return forward


@contextlib.contextmanager
def knobs(**env: str):
    """Set INT8_MOE_* tuning variables (e.g. GEMM_PATH="tiled") for the duration."""
    old = {k: os.environ.get(f"INT8_MOE_{k}") for k in env}
    os.environ.update({f"INT8_MOE_{k}": v for k, v in env.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                del os.environ[f"INT8_MOE_{k}"]
            else:
                os.environ[f"INT8_MOE_{k}"] = v


def gemm_path(path: str):
    return knobs(GEMM_PATH=path)


def forced_paths(M: int) -> list[str]:
    wgmma = ["wgmma"] if torch.cuda.get_device_capability() == (9, 0) and M >= 64 else []
    return (
        (["decode"] if M <= 64 else []) + ["tiled"] + (["grouped_mm"] if M >= 1024 else []) + wgmma
    )


def timed(fn, graph: bool) -> float:
    """One call per timed rep: a one-call graph replayed from an idle GPU, or eager."""
    first = bench_ms(fn, warmup=1, reps=1)
    reps = int(max(5, min(100, 600 / max(first, 1e-3))))
    return graph_ms(fn, reps=reps) if graph else bench_ms(fn, warmup=2, reps=reps)


def steady(fns) -> float:
    """One call's time inside a graph of calls back to back over the copies `fns` (~1 ms of
    calls per replay, at least one per copy)."""
    first = bench_ms(fns[0], warmup=1, reps=1)
    per_copy = max(1, min(10, round(1.0 / (len(fns) * max(first, 1e-3)))))
    calls = len(fns) * per_copy
    reps = int(max(5, min(50, 300 / (calls * max(first, 1e-3)))))
    return steady_graph_ms(fns, calls=calls, reps=reps)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv", default="bench_moe.csv")
    parser.add_argument("--png", default=None)
    parser.add_argument("--models", default="mixtral-8x7b,qwen3-30b-a3b")
    parser.add_argument("--tokens", default=",".join(map(str, DECODE + PREFILL)))
    args = parser.parse_args()
    copy_gbs = copy_bandwidth_gbs()
    bf16_tflops = bf16_matmul_tflops()
    int8_tops = int8_matmul_tops()
    token_counts = [int(t) for t in args.tokens.split(",")]
    rows = []
    path_rows = []
    for name in args.models.split(","):
        shape = PRESETS[name]
        w13, w2, _, _ = random_layer(shape, torch.bfloat16, "cuda")
        layers = [int8_moe.Int8MoE.from_weights(w13.clone(), w2.clone()) for _ in range(COPIES)]
        layers8 = [
            int8_moe.Int8MoE.from_weights(w13.clone(), w2.clone(), act_quant="per_token")
            for _ in range(COPIES)
        ]
        bf16s = [bf16_grouped_mm_layer(w13, w2) for _ in range(COPIES)]
        layer, layer8, bf16 = layers[0], layers8[0], bf16s[0]
        loop = loop_layer(w13, w2)
        per_expert_bytes = 3 * shape.hidden * shape.inter  # int8: 2I*H + H*I
        for M in token_counts:
            x = torch.randn(M, shape.hidden, dtype=torch.bfloat16, device="cuda")
            tw, ids = random_routing(M, shape, "cuda", seed=M)
            touched = int(torch.unique(ids).numel())
            flops = 2 * M * shape.topk * 3 * shape.hidden * shape.inter
            bytes_ms = touched * per_expert_bytes / copy_gbs / 1e6
            floor_ms = max(bytes_ms, flops / bf16_tflops / 1e9)
            floor8_ms = max(bytes_ms, flops / int8_tops / 1e9)
            inputs = (x, tw, ids)
            runs = {
                key: [functools.partial(f, *inputs) for f in fs]
                for key, fs in (("int8", layers), ("w8a8", layers8), ("bf16", bf16s))
            }
            best = collections.defaultdict(lambda: float("inf"))
            for _ in range(2):  # rounds
                for key, fns in runs.items():
                    best[key] = min(best[key], steady(fns))
                best["int8_idle"] = min(best["int8_idle"], timed(runs["int8"][0], graph=True))
                if M <= 64:
                    loop_ms = timed(functools.partial(loop, *inputs), graph=False)
                    best["loop"] = min(best["loop"], loop_ms)
            t8, t88, tb = best["int8"], best["w8a8"], best["bf16"]
            tl = best["loop"] if M <= 64 else float("nan")
            for path in forced_paths(M):
                with gemm_path(path):
                    path_rows.append((name, M, path, steady(runs["int8"])))
            ref_out = bf16(x, tw, ids).float()  # the bf16 layer, computed once for both errors
            err = ((layer(x, tw, ids).float() - ref_out).norm() / ref_out.norm()).item()
            err8 = ((layer8(x, tw, ids).float() - ref_out).norm() / ref_out.norm()).item()
            rows.append(
                dict(
                    model=name,
                    M=M,
                    int8_ms=t8,
                    int8_idle_ms=best["int8_idle"],
                    w8a8_ms=t88,
                    bf16_ms=tb,
                    loop_ms=tl,
                    floor_ms=floor_ms,
                    pct_floor=100 * floor_ms / t8,
                    w8a8_floor_ms=floor8_ms,
                    w8a8_pct_floor=100 * floor8_ms / t88,
                    vs_bf16=tb / t8,
                    w8a8_vs_bf16=tb / t88,
                    w8a8_vs_w8a16=t8 / t88,
                    tflops=flops / t8 / 1e9,
                    gbs=touched * per_expert_bytes / t8 / 1e6,
                    err_vs_bf16=err,
                    err_w8a8_vs_bf16=err8,
                )
            )
            print(
                f"{name} M={M}: int8 {t8:.4f} ms, w8a8 {t88:.4f}, bf16 {tb:.4f}, "
                f"floor {floor_ms:.4f}",
                flush=True,
            )
        del w13, w2, layers, layers8, bf16s, layer, layer8, bf16, loop
        torch.cuda.empty_cache()

    print(
        f"\n{device_name()}: copy {copy_gbs:.0f} GB/s (read+write), bf16 matmul "
        f"{bf16_tflops:.0f} TFLOP/s, int8 matmul {int8_tops:.0f} TOP/s"
    )
    cols = [
        "model",
        "M",
        "int8_ms",
        "int8_idle_ms",
        "w8a8_ms",
        "bf16_ms",
        "loop_ms",
        "floor_ms",
        "pct_floor",
        "w8a8_floor_ms",
        "w8a8_pct_floor",
        "vs_bf16",
        "w8a8_vs_bf16",
        "w8a8_vs_w8a16",
        "tflops",
        "gbs",
        "err_vs_bf16",
        "err_w8a8_vs_bf16",
    ]
    print(
        "| shape | M | W8A16 ms | W8A16 idle ms | W8A8 ms | bf16 ms | loop ms | floor ms | "
        "W8A16 % floor | W8A8 % floor | bf16/W8A16 | bf16/W8A8 | W8A16/W8A8 | TFLOP/s | GB/s | "
        "err W8A16 | err W8A8 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['M']} | {r['int8_ms']:.4f} | {r['int8_idle_ms']:.4f} | "
            f"{r['w8a8_ms']:.4f} | "
            f"{r['bf16_ms']:.4f} | {r['loop_ms']:.3f} | {r['floor_ms']:.4f} | "
            f"{r['pct_floor']:.1f}% | {r['w8a8_pct_floor']:.1f}% | {r['vs_bf16']:.2f}x | "
            f"{r['w8a8_vs_bf16']:.2f}x | {r['w8a8_vs_w8a16']:.2f}x | {r['tflops']:.1f} | "
            f"{r['gbs']:.0f} | {r['err_vs_bf16']:.1e} | {r['err_w8a8_vs_bf16']:.1e} |"
        )
    print("\nint8 W8A16 with each kernel family forced (ms; the dispatch is tuned by this):")
    print("| shape | M | path | ms | vs auto |")
    print("|---|---|---|---|---|")
    auto = {(r["model"], r["M"]): r["int8_ms"] for r in rows}
    for name, M, path, ms in path_rows:
        print(f"| {name} | {M} | {path} | {ms:.4f} | {auto[(name, M)] / ms:.2f}x |")
    with open(args.csv, "w") as f:
        f.write(",".join(cols) + "\n")
        for r in rows:
            f.write(",".join(str(r[c]) for c in cols) + "\n")
    png = args.png or os.path.splitext(args.csv)[0] + ".png"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no PNG")
        return
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        rs = [r for r in rows if r["model"] == model]
        ms = [r["M"] for r in rs]
        for key, label in (
            ("int8_ms", "int8 W8A16"),
            ("w8a8_ms", "int8 W8A8"),
            ("bf16_ms", "bf16 grouped_mm"),
            ("floor_ms", "floor"),
        ):
            ax.plot(
                ms,
                [r[key] for r in rs],
                marker="o",
                label=label,
                linestyle="--" if key == "floor_ms" else "-",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens M")
        ax.set_ylabel("ms")
        ax.set_title(f"{model} ({device_name()})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
