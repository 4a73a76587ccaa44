"""Timing and hardware ceilings shared by the benchmarks (CUDA events; medians)."""

from __future__ import annotations

import statistics

import torch


def bench_ms(fn, warmup: int = 5, reps: int = 30) -> float:
    """Median milliseconds of fn() timed with CUDA events (each rep timed on its own)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def capture_graph(fns, calls: int = 1, warmup: int = 3) -> torch.cuda.CUDAGraph:
    """A CUDA graph of `calls` calls cycling through fns, each fn first run `warmup` times on a
    side stream (as graph capture requires: allocations and lazy setup happen outside it)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for fn in fns:
            for _ in range(warmup):
                fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(calls):
            fns[i % len(fns)]()
    return g


def graph_ms(fn, reps: int = 200) -> float:
    """Median milliseconds of one replay of fn captured in a CUDA graph, each replay timed alone
    from an idle GPU: no launch gaps between its kernels, but the graph launch's own host latency
    included (steady_graph_ms leaves it out)."""
    return bench_ms(capture_graph([fn]).replay, warmup=10, reps=reps)


def steady_graph_ms(fns, calls: int, reps: int = 20) -> float:
    """Median milliseconds of one call when `calls` calls run back to back inside one CUDA graph.

    The calls cycle through `fns`: the same layer on distinct copies of its weights, so that L2
    does not carry one call's weights to the next (a model's layers each bring their own). This
    is how a layer runs inside a serving engine's captured decode step: after its neighbours, with
    no host launch between them. vLLM's benchmarks/kernels/benchmark_moe.py times 10 calls in one
    graph the same way (one copy). Timing each replay of a one-call graph from an idle GPU
    (graph_ms) adds the graph launch's host latency: 1-5 us of a layer at 1-16 tokens on an H100
    (benchmarks/NOTES.md, "Timing"; benchmarks/results/bench_moe_h100*.log).
    """
    g = capture_graph(fns, calls=calls, warmup=2)
    return bench_ms(g.replay, warmup=3, reps=reps) / calls


def copy_bandwidth_gbs(nbytes: int = 2 << 30) -> float:
    """Device-to-device copy rate, counting bytes read plus bytes written (GB/s)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    ms = bench_ms(lambda: dst.copy_(src), warmup=3, reps=20)
    return 2 * nbytes / ms / 1e6


def bf16_matmul_tflops(n: int = 8192) -> float:
    a = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    ms = bench_ms(lambda: a @ b, warmup=3, reps=20)
    return 2 * n**3 / ms / 1e9


def int8_matmul_tops(n: int = 8192) -> float:
    """int8 x int8 -> int32 matmul rate through torch._int_mm on a large product (TOP/s)."""
    a = torch.randint(-127, 128, (n, n), dtype=torch.int8, device="cuda")
    b = torch.randint(-127, 128, (n, n), dtype=torch.int8, device="cuda").t()  # column-major
    ms = bench_ms(lambda: torch._int_mm(a, b), warmup=3, reps=20)
    return 2 * n**3 / ms / 1e9


def random_int8_weights(E: int, H: int, inter: int):
    """(w13, w2, w13_scale, w2_scale) on the GPU: random int8 weights with random scales, for
    timing only (the largest SPEC layers load in seconds, no quantization)."""
    return (torch.randint(-127, 128, (E, 2 * inter, H), dtype=torch.int8, device="cuda"),
            torch.randint(-127, 128, (E, H, inter), dtype=torch.int8, device="cuda"),
            torch.rand(E, 2 * inter, device="cuda") * 1e-3,
            torch.rand(E, H, device="cuda") * 1e-3)


def device_name() -> str:
    return torch.cuda.get_device_name()
