"""Command line: `python -m int8_moe demo` builds a MoE layer, quantizes it online and reports."""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from . import reference
from ._library import cuda_available
from .act_modes import LAYER_ACT_QUANT_MODES
from .module import Int8MoE
from .presets import PRESETS, MoEShape


def random_layer(shape: MoEShape, dtype: torch.dtype, device: str, seed: int = 0):
    """bf16 expert weights with unit-variance outputs, and optional biases."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    E, H, I = shape.experts, shape.hidden, shape.inter

    def rand(*size, fan_in):
        return (torch.randn(*size, generator=g) / fan_in**0.5).to(dtype=dtype, device=device)

    w13, w2 = rand(E, 2 * I, H, fan_in=H), rand(E, H, I, fan_in=I)
    b13 = rand(E, 2 * I, fan_in=4) if shape.bias else None
    b2 = rand(E, H, fan_in=4) if shape.bias else None
    return w13, w2, b13, b2


def random_routing(tokens: int, shape: MoEShape, device: str, seed: int = 1):
    """Softmax-top-k routing of random logits, weights renormalised (as most routers do)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    logits = torch.randn(tokens, shape.experts, generator=g)
    w, ids = torch.topk(torch.softmax(logits, dim=-1), shape.topk, dim=-1)
    w = w / w.sum(dim=-1, keepdim=True)
    return w.float().to(device), ids.to(torch.int32).to(device)


def time_ms(fn, device: str, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def demo(args: argparse.Namespace) -> None:
    device = args.device or ("cuda" if cuda_available() else "cpu")
    preset = args.preset or ("qwen3-30b-a3b" if device.startswith("cuda") else "small")
    shape = PRESETS[preset]
    dtype = torch.bfloat16
    torch.manual_seed(args.seed)
    w13, w2, b13, b2 = random_layer(shape, dtype, device, args.seed)
    x = torch.randn(args.tokens, shape.hidden, dtype=dtype, device=device)
    topk_w, topk_ids = random_routing(args.tokens, shape, device, args.seed + 1)
    bias = dict(w13_bias=b13, w2_bias=b2)
    act = dict(activation=shape.activation)

    bf16_bytes = (w13.numel() + w2.numel()) * w13.element_size()
    ref_fp32 = reference.fused_moe_dense(x, w13, w2, topk_w, topk_ids, **bias, **act)
    bf16_ms = time_ms(
        lambda: reference.fused_moe_dense(
            x, w13, w2, topk_w, topk_ids, **bias, **act, compute_dtype=dtype
        ),
        device, args.reps,
    )

    w13_src, w2_src = w13.clone(), w2.clone()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    layer = Int8MoE.from_weights(w13_src, w2_src, **bias, **act, act_quant=args.act_quant)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    quant_ms = (time.perf_counter() - t0) * 1e3
    del w13_src, w2_src

    int8_bytes = sum(
        t.numel() * t.element_size()
        for t in (layer.w13_weight, layer.w2_weight, layer.w13_scale, layer.w2_scale)
    )
    out = layer(x, topk_w, topk_ids)
    int8_ms = time_ms(lambda: layer(x, topk_w, topk_ids), device, args.reps)
    err = ((out.float() - ref_fp32).norm() / ref_fp32.norm()).item()

    print(f"int8-moe demo: preset {preset} (H={shape.hidden}, I={shape.inter}, "
          f"E={shape.experts}, k={shape.topk}, {shape.activation}), {args.tokens} tokens, "
          f"{device}, act_quant={args.act_quant}")
    print(f"  expert weights   bf16 {bf16_bytes / 2**20:9.1f} MiB -> int8 "
          f"{int8_bytes / 2**20:9.1f} MiB ({bf16_bytes / int8_bytes:.2f}x smaller)")
    print(f"  quantization     {quant_ms:9.1f} ms (online, whole layer)")
    print(f"  forward          int8 {int8_ms:9.2f} ms | bf16 per-expert loop {bf16_ms:9.2f} ms "
          f"({bf16_ms / int8_ms:.2f}x)")
    print(f"  error vs bf16    ||int8 - bf16|| / ||bf16|| = {err:.2e}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m int8_moe", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="quantize a MoE layer online and compare it with bf16")
    d.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="layer shape (default: small on CPU, qwen3-30b-a3b on GPU)")
    d.add_argument("--tokens", type=int, default=64, help="tokens in the batch (M)")
    d.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    d.add_argument("--act-quant", choices=LAYER_ACT_QUANT_MODES, default="none")
    d.add_argument("--reps", type=int, default=5, help="timed repetitions (median reported)")
    d.add_argument("--seed", type=int, default=0)
    sub.add_parser("presets", help="list the layer shapes")
    sub.add_parser("cmake-prefix-path", help="print the CMake prefix of the C++ package")
    args = parser.parse_args(argv)
    if args.cmd == "demo":
        demo(args)
    elif args.cmd == "cmake-prefix-path":
        from . import cmake_prefix_path

        print(cmake_prefix_path)
    else:
        for s in PRESETS.values():
            print(f"{s.name:20s} H={s.hidden:5d} I={s.inter:5d} E={s.experts:4d} k={s.topk} "
                  f"{s.activation}{' +bias' if s.bias else ''}")


if __name__ == "__main__":
    main()
