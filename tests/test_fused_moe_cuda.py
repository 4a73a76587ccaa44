"""CUDA fused_moe: every SPEC shape and tensor-parallel split, the decode and prefill token
counts, both kernel paths, CUDA-graph capture, determinism."""

import os
import re

import pytest
import torch

import int8_moe.reference as ref
from int8_moe import ops
from int8_moe.presets import PRESETS, TP_SPLITS

from moe_cases import make_case
from numerics import assert_moe_close

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

MODEL_SHAPES = [p for p in PRESETS.values() if p.name not in ("tiny", "small")]


def check(case, dtype=torch.bfloat16, act_quant="none", **kw):
    out = ops.fused_moe(*case.args(), **case.bias_kwargs(), act_quant=act_quant, **kw)
    r = ref.fused_moe(*case.args(), **case.bias_kwargs(), act_quant=act_quant, **kw)
    assert_moe_close(out, r, dtype, act_quant)
    return out


def check_repeatable(case, dtype=torch.bfloat16, act_quant="none", **kw):
    """check() over poisoned workspace, then the same call again: bitwise the same output."""
    poison_cached_memory()
    out = check(case, dtype, act_quant, **kw)
    again = ops.fused_moe(*case.args(), **case.bias_kwargs(), act_quant=act_quant, **kw)
    assert torch.equal(out, again)
    return out


# Under compute-sanitizer (scripts/sanitize.sh sets INT8_MOE_UNDER_SANITIZER=1) the profiler
# cannot subscribe to CUPTI and records no kernels: the checks of which kernels ran stand down
# there (kernel_names returns None, assert_ran passes), so that each test's later settings still
# run under the tools instead of the test failing at its first check.
UNDER_SANITIZER = os.environ.get("INT8_MOE_UNDER_SANITIZER") == "1"


def kernel_names(case, **kw) -> set[str] | None:
    """Names of the kernels one forward launches (torch.profiler); None under the sanitizer."""
    if UNDER_SANITIZER:
        return None
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        ops.fused_moe(*case.args(), **kw)
        torch.cuda.synchronize()
    names = {e.key for e in prof.key_averages()}
    # Every forward launches this library's kernels (at least the top-k sum): none recorded means
    # the profiler saw nothing, and every "did not run" check would pass vacuously.
    assert any("int8_moe::" in n for n in names), f"the profiler saw no int8_moe kernel: {names}"
    return names


def assert_ran(names: set[str] | None, fragment: str, expected: bool, *context) -> None:
    """Whether a kernel whose name holds `fragment` ran is `expected` (no check when names is
    None: under the sanitizer)."""
    if names is not None:
        assert any(fragment in n for n in names) == expected, (*context, names)


@pytest.mark.parametrize("shape", MODEL_SHAPES, ids=lambda s: s.name)
@pytest.mark.parametrize("M", [1, 7, 64, 300])
def test_model_shapes(shape, M):
    # Fewer experts than the model (memory); H, I, k and the activation are the model's.
    E = min(shape.experts, 16)
    case = make_case(M, shape.hidden, shape.inter, E, min(shape.topk, E), device="cuda",
                     bias=shape.bias, seed=M)
    check(case, activation=shape.activation)


@pytest.mark.parametrize("inter", TP_SPLITS)
@pytest.mark.parametrize("M", [2, 16])
def test_tensor_parallel_splits(inter, M):
    case = make_case(M, 2048, inter, 8, 4, device="cuda", seed=inter)
    check(case)


@pytest.mark.parametrize("M", [1, 2, 7, 16, 64, 256, 1024, 4096])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_token_counts(M, dtype):
    case = make_case(M, 512, 352, 16, 4, dtype=dtype, device="cuda", seed=M)
    check(case, dtype)


@pytest.mark.parametrize("activation", ["silu", "gelu", "gelu_tanh", "swigluoai"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("M", [5, 200])
def test_activations_on_tensor_cores(activation, bias, M):
    case = make_case(M, 256, 176, 8, 2, device="cuda", bias=bias, seed=3)
    check(case, activation=activation)


# Tokens per expert (M * k / E with E = 8, k = 2): 1 and 13 -> decode kernel (8- and 16-route
# blocks); 25 and 100 -> the wgmma kernel (64- and 128-route tiles) on compute capability 9.0,
# else the tiled kernel (bf16 on other sm_90+: grouped GEMM at 100). Each family is also forced
# on every size below.
@pytest.mark.parametrize("M", [3, 50, 100, 400])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("activation", ["silu", "swigluoai"])
def test_every_kernel_path(M, dtype, activation):
    case = make_case(M, 512, 352, 8, 2, dtype=dtype, device="cuda", bias=True, seed=M)
    check(case, dtype, activation=activation)


def grouped_mm_available(dtype):
    return dtype == torch.bfloat16 and torch.cuda.get_device_capability()[0] >= 9


def wgmma_expected() -> bool:
    # setup.py and scripts/gpu_check.sh build sm_90a machine code, which has wgmma; the kernel
    # exists on compute capability 9.0 only.
    return torch.cuda.get_device_capability() == (9, 0)


# Each kernel family forced (INT8_MOE_GEMM_PATH) on the same inputs, whatever the token count:
# H and I multiples of 16 but not of 64/128 (K and N tails inside a tile), uneven and empty
# experts (n_used_experts), biases, both gated layouts.
@pytest.mark.parametrize("path", ["decode", "tiled", "grouped_mm", "wgmma"])
@pytest.mark.parametrize("M", [1, 37, 300, 1100])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("activation", ["silu", "swigluoai"])
def test_forced_gemm_path(monkeypatch, path, M, dtype, activation):
    if path == "grouped_mm" and not grouped_mm_available(dtype):
        pytest.skip("the grouped_mm path needs bf16 on sm_90+")
    if path == "wgmma" and not wgmma_expected():
        pytest.skip("wgmma needs a compute capability 9.0 GPU")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", path)
    case = make_case(M, 208, 176, 12, 3, dtype=dtype, device="cuda", bias=True, seed=M,
                     n_used_experts=9)
    out = check(case, dtype, activation=activation)
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "auto")
    auto = ops.fused_moe(*case.args(), **case.bias_kwargs(), activation=activation)
    assert_moe_close(out, auto.float(), dtype)


def test_grouped_mm_path_on_weights_larger_than_the_widen_grid(monkeypatch):
    """The widening kernel of the grouped_mm path runs at most 8192 x 256 threads, each taking one
    16-byte piece per step: w13 here is 75 MB (4.7M pieces) and w2 38 MB (2.4M), so threads take
    two or three pieces of w13 and some a second of w2."""
    if not grouped_mm_available(torch.bfloat16):
        pytest.skip("the grouped_mm path needs bf16 on sm_90+")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "grouped_mm")
    case = make_case(24, 4096, 2304, 4, 2, device="cuda", seed=11)
    check(case)


@pytest.mark.parametrize("path", ["decode", "tiled", "grouped_mm", "wgmma:0", "wgmma:1"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_w8a16_int8_widening_is_exact_on_every_family(monkeypatch, path, dtype):
    """Every int8 value, at every byte position of a 16-byte piece, widened by each kernel family,
    with inputs built so the whole forward is exact up to roundings the test repeats: small
    integer tokens, gates so large that silu(g) == g, power-of-two scales, and a GEMM2 whose rows
    each hold one weight (all 256 values over the rows). The output must match bit for bit (a
    weight one off moves the output by far more than a rounding)."""
    if path == "grouped_mm" and not grouped_mm_available(dtype):
        pytest.skip("the grouped_mm path needs bf16 on sm_90+")
    path, _, pipe = path.partition(":")  # wgmma:0 / wgmma:1: without / with the pipelined loop
    if path == "wgmma" and not wgmma_expected():
        pytest.skip("wgmma needs a compute capability 9.0 GPU")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", path)
    monkeypatch.setenv("INT8_MOE_WGMMA_PIPE", pipe or "auto")
    monkeypatch.setenv("INT8_MOE_WGMMA_BN", "128" if pipe else "auto")  # where the pipeline is
    M, H, I = 40, 256, 256
    gen = torch.Generator().manual_seed(2)
    x = torch.randint(1, 4, (M, H), generator=gen)
    gate = torch.randint(100, 128, (I, H), generator=gen)
    # Up row i, column k: (i + 7k) mod 256 - 128: each column holds all 256 values.
    up = (torch.arange(I)[:, None] + 7 * torch.arange(H)[None, :]) % 256 - 128
    w1 = torch.cat([gate, up]).to(torch.int8)[None]
    s1 = torch.full((1, 2 * I), 2.0**-10)
    # GEMM2 row h: value h - 128 at column h (I == H), zeros elsewhere.
    w2 = torch.diag(torch.arange(H) - 128).to(torch.int8)[None]
    s2 = torch.ones(1, H)
    ids = torch.zeros(M, 1, dtype=torch.int32)
    tw = torch.ones(M, 1)
    out = ops.fused_moe(x.cuda().to(dtype), *(t.cuda() for t in (w1, w2, s1, s2, tw, ids)))
    acc_g, acc_u = x @ gate.T, x @ up.T  # exact integer sums below 2^24
    if path == "grouped_mm":  # torch's grouped GEMM writes its sums in the activation dtype
        acc_g, acc_u = acc_g.to(dtype), acc_u.to(dtype)
    g = acc_g.double() * 2.0**-10  # a power-of-two scale: exact
    assert g.min() > 20  # silu(g) == g in fp32
    u = acc_u.double() * 2.0**-10
    a = (g * u).float().to(dtype)  # the fp32 product, rounded to the intermediate's dtype
    expected = (a.float() * (torch.arange(H) - 128).float()).to(dtype)  # exact, then rounded
    assert torch.equal(out.cpu(), expected)


# W8A8 with bf16/fp16 activations and aligned shapes runs on the int8 tensor cores, by the
# automatic choice: M = 1 (1 route per expert) takes the decode kernel; 37, 300 and 1100 (10, 75
# and 275) take wgmma on compute capability 9.0, else the decode and tiled kernels. Tails, empty
# experts, biases, both gated layouts.
@pytest.mark.parametrize("M", [1, 37, 300, 1100])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("activation", ["silu", "swigluoai"])
def test_w8a8_tensor_cores(M, dtype, activation):
    case = make_case(M, 208, 176, 12, 3, dtype=dtype, device="cuda", bias=True, seed=M,
                     n_used_experts=9)
    check(case, dtype, act_quant="per_token", activation=activation)


# W8A8 with each int8 kernel family forced: decode, mma.sync tiled, and wgmma (sm_90a) over
# its three route tiles (150 tokens: 38 routes per expert -> 64-route tiles; 300 -> 128;
# 1100 -> 256). Tails in N and K, empty experts, biases, both gated layouts.
@pytest.mark.parametrize("path", ["decode", "tiled", "wgmma"])
@pytest.mark.parametrize("M", [5, 150, 300, 1100])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("activation", ["silu", "swigluoai"])
def test_w8a8_forced_families(monkeypatch, path, M, dtype, activation):
    if path == "wgmma" and not wgmma_expected():
        pytest.skip("wgmma needs a compute capability 9.0 GPU")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", path)
    case = make_case(M, 208, 176, 12, 3, dtype=dtype, device="cuda", bias=True, seed=M + 1,
                     n_used_experts=9)
    check(case, dtype, act_quant="per_token", activation=activation)


# Every wgmma route tile x warpgroups per CTA forced on the same inputs (300 tokens: 75 routes
# per expert, so 64-route tiles take two blocks per expert and 256-route tiles one, mostly
# padding). 4 warpgroups (W8A8 at 128 routes; W8A16 keeps 2) cover 256 weight rows: GEMM1's 176
# intermediate columns are one full and one partial tile, GEMM2's 208 rows one partial tile.
@pytest.mark.parametrize("bn, wg", [("64", "auto"), ("128", "2"), ("128", "4"), ("256", "auto")])
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
@pytest.mark.parametrize("activation", ["silu", "swigluoai"])
def test_wgmma_forced_block_routes(monkeypatch, bn, wg, act_quant, activation):
    if not wgmma_expected():
        pytest.skip("wgmma needs a compute capability 9.0 GPU")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "wgmma")
    monkeypatch.setenv("INT8_MOE_WGMMA_BN", bn)
    monkeypatch.setenv("INT8_MOE_WGMMA_WG", wg)
    case = make_case(300, 208, 176, 12, 3, device="cuda", bias=True, seed=41, n_used_experts=9)
    check(case, act_quant=act_quant, activation=activation)


def forced_wgmma_case(monkeypatch, M, H, I, k, dtype, seed, bn, wg="auto"):
    """Skips off a wgmma device; else forces the wgmma path at `bn` routes per tile and `wg`
    warpgroups per CTA, and returns a case of M tokens over 9 of 12 experts (empty ones), with
    biases."""
    if not wgmma_expected():
        pytest.skip("wgmma needs a compute capability 9.0 GPU")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "wgmma")
    monkeypatch.setenv("INT8_MOE_WGMMA_BN", bn)
    monkeypatch.setenv("INT8_MOE_WGMMA_WG", wg)
    return make_case(M, H, I, 12, k, dtype=dtype, device="cuda", bias=True, seed=seed,
                     n_used_experts=9)


# The W8A16 wgmma kernel's two main loops (INT8_MOE_WGMMA_PIPE: 0 widens a chunk's weight
# fragments, then waits for the chunk's products; 1, the default at 128 routes per tile, widens
# step s + 1's while steps s - 2 .. s run, across chunks, with loads one chunk less ahead) issue
# the same products in the same order: the same output bit for bit, and the reference's. K of
# 1040 / 400 elements runs more chunks than the ring has slots (each slot refilled several times)
# with a partial last chunk; tails in N, empty experts, biases, 128-route tiles mostly padding
# (150 tokens: ~38 routes per expert) and full (1100: ~275), and 64-route tiles (where 1 runs the
# unpipelined loop), over poisoned workspace.
@pytest.mark.parametrize("H, I", [(208, 176), (1040, 400)])
@pytest.mark.parametrize("M, bn", [(150, "128"), (1100, "128"), (150, "64")])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("activation", ["silu", "swigluoai"])
def test_wgmma_w8a16_pipelines_agree(monkeypatch, H, I, M, bn, dtype, activation):
    case = forced_wgmma_case(monkeypatch, M, H, I, 3, dtype, seed=M + H, bn=bn)
    outs = []
    for pipe in ("0", "1"):
        monkeypatch.setenv("INT8_MOE_WGMMA_PIPE", pipe)
        outs.append(check_repeatable(case, dtype, activation=activation))
    assert torch.equal(outs[0], outs[1])


# The TMA-fed wgmma kernels (INT8_MOE_WGMMA_TMA = 1, the default: each chunk's weight tile, and
# GEMM2's activation tile, as TMA boxes completing on an mbarrier; built at 64 and 128 routes
# per tile) against the cp.async ones, and with GEMM1's activation rows gathered per sorted
# position (INT8_MOE_WGMMA_GATHER = 1: its activation tile one box too; W8A8's per-token scales
# gathered with them): the same products in the same order, so the same output bit for bit, and
# the reference's. GEMM1's weight box is w13 seen in 5 dimensions (8 gate rows, then
# the 8 matching up rows): both gated layouts (silu: gate / up halves; swigluoai: interleaved
# rows). K of 1040 / 400 refills every ring slot several times and ends in a partial chunk
# (zero-filled by the TMA unit); tails in N (176 / 400 intermediate columns, 208 / 1040 rows),
# empty experts, biases, over poisoned workspace. The profiler shows each setting ran the kernels
# it names (the TMA kernel falls back to cp.async where a tensor map does not encode).
@pytest.mark.parametrize("H, I", [(208, 176), (1040, 400)])
@pytest.mark.parametrize("M, bn, wg", [(150, "64", "2"), (1100, "128", "2"), (1100, "128", "4")])
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("activation", ["silu", "swigluoai"])
def test_wgmma_tma_loads_agree(monkeypatch, H, I, M, bn, wg, act_quant, dtype, activation):
    if wg == "4" and act_quant == "none":
        pytest.skip("4 warpgroups exist for W8A8 only")
    case = forced_wgmma_case(monkeypatch, M, H, I, 3, dtype, seed=M + I, bn=bn, wg=wg)
    outs = []
    kw = dict(act_quant=act_quant, activation=activation)
    for tma, gather in (("0", "0"), ("1", "0"), ("1", "1")):
        monkeypatch.setenv("INT8_MOE_WGMMA_TMA", tma)
        monkeypatch.setenv("INT8_MOE_WGMMA_GATHER", gather)
        outs.append(check_repeatable(case, dtype, **kw))
        names = kernel_names(case, **case.bias_kwargs(), **kw)
        assert_ran(names, "moe_gemm_wgmma_tma_kernel", tma == "1")
        assert_ran(names, "gather_row_bytes_kernel", gather == "1")
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(outs[0], outs[2])


# W8A16's wgmma fragments by ldmatrix (INT8_MOE_WGMMA_LDSM; built at 64 routes per tile, on by
# default on the cp.async feed from I = 192: I = 176 and 400 sit on both sides of the rule) over
# activation rows permuted per 16 elements (csrc/cuda/perm16.cuh): GEMM1 reads the token rows'
# permuted copy or rows gathered permuted, writes its intermediate permuted, GEMM2 reads it so.
# Every feed (cp.async, TMA, gathered), on, off and the default, both dtypes and gated layouts, K
# and N tails, biases, empty experts, each against the reference; the profiler shows the permuted
# copy or the permuting gather ran where ldmatrix did, and nowhere at 128 routes per tile (the
# pipelined loop, where it is not built). The terms of each dot product are summed in another
# order, so on and off agree to the reference's tolerance, not bit for bit.
@pytest.mark.parametrize("H, I", [(208, 176), (1040, 400)])
@pytest.mark.parametrize("M, bn", [(150, "64"), (1100, "128")])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("activation", ["silu", "swigluoai"])
def test_wgmma_ldsm_fragments(monkeypatch, H, I, M, bn, dtype, activation):
    case = forced_wgmma_case(monkeypatch, M, H, I, 3, dtype, seed=M + H, bn=bn)
    for tma, gather in (("0", "0"), ("1", "0"), ("1", "1")):
        monkeypatch.setenv("INT8_MOE_WGMMA_TMA", tma)
        monkeypatch.setenv("INT8_MOE_WGMMA_GATHER", gather)
        for ldsm in ("0", "1", "auto"):
            monkeypatch.setenv("INT8_MOE_WGMMA_LDSM", ldsm)
            on = bn == "64" and (ldsm == "1" or (ldsm == "auto" and tma == "0" and I >= 192))
            check_repeatable(case, dtype, activation=activation)
            names = kernel_names(case, **case.bias_kwargs(), activation=activation)
            assert_ran(names, "perm16_copy_kernel", on and gather == "0", ldsm)
            if names is None:
                continue
            gathers = [n for n in names if "gather_row_bytes_kernel" in n]
            assert bool(gathers) == (gather == "1"), names
            permuting = any("gather_row_bytes_kernel<true>" in n
                            or "gather_row_bytes_kernel<(bool)1>" in n for n in gathers)
            assert permuting == (on and gather == "1"), (ldsm, gathers)


# The wgmma GEMM2's output tile staged in shared memory and written as 16-byte pieces of whole
# route rows (INT8_MOE_WGMMA_STAGE_OUT, on by default) against each thread's 2-byte stores: the
# same values, so the same bits. Both modes, 64 and 128 routes per tile (W8A8 also with 4
# warpgroups: 256 staged rows), cp.async and TMA feeds, H = 208 / 1040 (the last weight tile of
# 128 or 256 rows partly beyond N), biases, empty experts, the input-side router weight (k = 1),
# each against the reference and repeated bitwise.
@pytest.mark.parametrize("act_quant, bn, wg", [("none", "64", "auto"), ("none", "128", "auto"),
                                               ("per_token", "64", "auto"),
                                               ("per_token", "128", "2"),
                                               ("per_token", "128", "4")])
@pytest.mark.parametrize("H, I, k", [(208, 176, 3), (1040, 400, 3), (208, 176, 1)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_wgmma_staged_output_agrees(monkeypatch, act_quant, bn, wg, H, I, k, dtype):
    case = forced_wgmma_case(monkeypatch, 300, H, I, k, dtype, seed=H + I + k, bn=bn, wg=wg)
    kw = dict(act_quant=act_quant, apply_router_weight_on_input=k == 1)
    outs = []
    for tma in ("0", "1"):
        monkeypatch.setenv("INT8_MOE_WGMMA_TMA", tma)
        for staged in ("0", "1"):
            monkeypatch.setenv("INT8_MOE_WGMMA_STAGE_OUT", staged)
            outs.append(check_repeatable(case, dtype, **kw))
    for other in outs[1:]:
        assert torch.equal(outs[0], other)


# GEMM1's intermediate tile staged in shared memory (stmatrix) and written as 32-byte pieces of
# each route's columns (INT8_MOE_WGMMA_STAGE_INTER, on by default) against each thread's 2-byte
# stores: the same values, so the same bits. Both modes; 64 routes per tile with LDSM's permuted
# intermediate off and on (W8A16), 128 (W8A16 pipelined; W8A8 with 2 and 4 warpgroups: 64 and 128
# staged columns) and 256; both feeds; I = 176 / 400 (the last column tile partly beyond I), both
# gated layouts, biases, empty experts, each against the reference and repeated bitwise.
@pytest.mark.parametrize("act_quant, bn, wg, ldsm", [("none", "64", "auto", "0"),
                                                     ("none", "64", "auto", "1"),
                                                     ("none", "128", "auto", "auto"),
                                                     ("per_token", "64", "auto", "auto"),
                                                     ("per_token", "128", "2", "auto"),
                                                     ("per_token", "128", "4", "auto"),
                                                     ("per_token", "256", "2", "auto")])
@pytest.mark.parametrize("H, I", [(208, 176), (1040, 400)])
@pytest.mark.parametrize("activation", ["silu", "swigluoai"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_wgmma_staged_intermediate_agrees(monkeypatch, act_quant, bn, wg, ldsm, H, I, activation,
                                          dtype):
    case = forced_wgmma_case(monkeypatch, 300, H, I, 3, dtype, seed=H + I, bn=bn, wg=wg)
    monkeypatch.setenv("INT8_MOE_WGMMA_LDSM", ldsm)
    outs = []
    for tma in ("0", "1"):
        monkeypatch.setenv("INT8_MOE_WGMMA_TMA", tma)
        for staged in ("0", "1"):
            monkeypatch.setenv("INT8_MOE_WGMMA_STAGE_INTER", staged)
            outs.append(check_repeatable(case, dtype, act_quant=act_quant, activation=activation))
    for other in outs[1:]:
        assert torch.equal(outs[0], other)


# The wgmma GEMMs multiply a route block whose last routes are padding over only the first
# quarter, half or three quarters of its routes (INT8_MOE_WGMMA_NARROW, on by default): W8A8's
# int32 sums and W8A16's fp32 products (the same instructions over fewer columns) are the same
# bits as the full width's, and the reference's. Route counts per expert chosen so that the last
# blocks over the four token counts hold every quarter (asserted); W8A8 at 64, 128 (2 and 4
# warpgroups) and 256 routes per tile, W8A16 at 64 (chunk-at-a-time loop) and 128 (pipelined);
# K of 1040 / 400 runs the ring round several times with a partial last chunk; biases, empty
# experts, poisoned workspace, repeated bitwise.
@pytest.mark.parametrize("act_quant, bn, wg", [("per_token", "64", "auto"),
                                               ("per_token", "128", "2"),
                                               ("per_token", "128", "4"),
                                               ("per_token", "256", "2"),
                                               ("none", "64", "auto"), ("none", "128", "auto")])
@pytest.mark.parametrize("H, I", [(208, 176), (1040, 400)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_wgmma_narrow_tail_agrees(monkeypatch, act_quant, bn, wg, H, I, dtype):
    quarter = int(bn) // 4
    held_quarters = set()
    for M in (60, 200, 400, 700):
        case = forced_wgmma_case(monkeypatch, M, H, I, 3, dtype, seed=M, bn=bn, wg=wg)
        counts = torch.bincount(case.topk_ids.flatten().long().cpu(), minlength=12)
        held_quarters |= {-(-(int(c) % int(bn)) // quarter) for c in counts if c % int(bn)}
        outs = []
        for narrow in ("0", "1"):
            monkeypatch.setenv("INT8_MOE_WGMMA_NARROW", narrow)
            outs.append(check_repeatable(case, dtype, act_quant=act_quant))
        assert torch.equal(outs[0], outs[1])
    assert held_quarters == {1, 2, 3, 4}


# Each wgmma knob's bad value, the accepted values its error names, and the mode whose wgmma
# kernels read it (the tile-width knobs on W8A8's path at 300 tokens, the rest on W8A16's).
BAD_WGMMA_KNOBS = [
    ("WGMMA_BN", "96", "auto, 64, 128 or 256", "per_token"),
    ("WGMMA_WG", "3", "auto, 2 or 4", "per_token"),
    ("WGMMA_PIPE", "2", "auto, 0 or 1", "none"),
    ("WGMMA_TMA", "2", "auto, 0 or 1", "none"),
    ("WGMMA_GATHER", "yes", "auto, 0 or 1", "none"),
    ("WGMMA_LDSM", "on", "auto, 0 or 1", "none"),
    ("WGMMA_STAGE_OUT", "2", "auto, 0 or 1", "none"),
    ("WGMMA_STAGE_INTER", "on", "auto, 0 or 1", "none"),
    ("WGMMA_NARROW", "2", "auto, 0 or 1", "none"),
]


def test_bad_wgmma_knobs_are_clear_errors(monkeypatch):
    case = make_case(300, 256, 176, 8, 2, device="cuda", seed=23)
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "wgmma")
    if wgmma_expected():
        for knob, bad, accepted, act_quant in BAD_WGMMA_KNOBS:
            monkeypatch.setenv(f"INT8_MOE_{knob}", bad)
            with pytest.raises(RuntimeError, match=f"INT8_MOE_{knob} must be {accepted}"):
                ops.fused_moe(*case.args(), act_quant=act_quant)
            monkeypatch.setenv(f"INT8_MOE_{knob}", "auto")
    else:
        with pytest.raises(RuntimeError, match="wgmma needs a compute capability 9.0 device"):
            ops.fused_moe(*case.args(), act_quant="per_token")


@pytest.mark.parametrize("path", ["decode", "tiled", "wgmma", "decode:split"])
def test_w8a8_int32_accumulation_is_exact_on_every_family(monkeypatch, path):
    """40 tokens on one expert, built so every step before GEMM2 is exact (see
    test_fused_moe.py::test_w8a8_int32_accumulation_is_exact): GEMM2 sums reach > 2^24 and the
    output must equal fp32(exact integer sum) * a_scale bit for bit, row by row. decode:split:
    GEMM2 in 2 K slices (k 0-1023 and 1024-2047), each slice's exact sum scaled and rounded to
    the activation dtype, the two added in fp32 by the top-k sum and rounded again."""
    path, _, variant = path.partition(":")
    if path == "wgmma" and not wgmma_expected():
        pytest.skip("wgmma needs a compute capability 9.0 GPU")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", path)
    monkeypatch.setenv("INT8_MOE_DECODE_SPLITK", "2" if variant == "split" else "1")
    M, H, I = 40, 256, 2048
    g = torch.Generator().manual_seed(1)
    x = torch.randint(100, 128, (M, H), generator=g).float()
    x[:, 0] = 127
    w1 = torch.randint(100, 128, (1, 2 * I, H), generator=g).to(torch.int8)
    s1 = torch.full((1, 2 * I), 1.0 / 4096)
    w2 = torch.randint(100, 128, (1, H, I), generator=g).to(torch.int8)
    s2 = torch.ones(1, H)
    ids = torch.zeros(M, 1, dtype=torch.int32)
    tw = torch.ones(M, 1)
    out = ops.fused_moe(x.cuda().bfloat16(), *(t.cuda() for t in (w1, w2, s1, s2, tw, ids)),
                        act_quant="per_token").cpu()
    h = (x.long() @ w1[0].long().T).float() * (1.0 / 4096)
    assert h.min() > 100  # silu(g) == g in fp32
    # (the intermediate is held in the activation dtype before its quantization)
    aq, a_scale = ref.quantize_activation_per_token((h[:, :I] * h[:, I:]).bfloat16())
    acc2 = aq.long() @ w2[0].long().T
    assert acc2.min() > 2**24
    if variant == "split":
        halves = [(aq[:, k0:k0 + I // 2].long() @ w2[0][:, k0:k0 + I // 2].long().T).float()
                  * a_scale for k0 in (0, I // 2)]
        partial = [h.bfloat16().float() for h in halves]
        assert not torch.equal(out, (acc2.float() * a_scale).bfloat16())  # it can tell
        assert torch.equal(out, (partial[0] + partial[1]).bfloat16())
    else:
        assert torch.equal(out, (acc2.float() * a_scale).bfloat16())


@pytest.mark.parametrize("path", ["decode", "tiled", "wgmma"])
def test_forced_path_weight_on_input_and_expert_map(monkeypatch, path):
    if path == "wgmma" and not wgmma_expected():
        pytest.skip("wgmma needs a compute capability 9.0 GPU")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", path)
    case = make_case(500, 256, 112, 8, 1, device="cuda", seed=21, id_dtype=torch.int64)
    check(case, apply_router_weight_on_input=True)
    emap = torch.tensor([3, -1, 0, 7, -1, 100, 1, 2, 5, 4, -3, 6], dtype=torch.int32, device="cuda")
    case = make_case(500, 256, 112, 8, 4, device="cuda", seed=22)
    case.topk_ids = torch.randint(-2, 14, (500, 4), dtype=torch.int32, device="cuda")
    check(case, expert_map=emap)


def poison_cached_memory():
    """Refill the caching allocator's free blocks (its large pool and small pool) with NaN, so
    the forward's internal buffers (at::empty) start as garbage rather than a previous call's
    results."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    big = torch.full(((64 << 20) // 4,), float("nan"), device="cuda")
    small = [torch.full(((256 << 10) // 4,), float("nan"), device="cuda") for _ in range(64)]
    del big, small


# The order in which a row-tile GEMM's CTAs take their (route block, weight tile) pairs
# (INT8_MOE_RASTER_KB, tile_order.cuh) changes when tiles run, never what a tile computes: launch
# order, groups of 1 to 23 route blocks (mostly with a partial last group) and one group of all
# give bitwise the same output, equal to the reference. 600 tokens x 3 of 12 experts (9 used):
# 1800 routes, a grid of 25 blocks of 128 routes (64 for wgmma W8A8: 39 blocks), tails in N and
# K.
@pytest.mark.parametrize("path", ["tiled", "wgmma"])
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
def test_tile_order_gives_the_same_bits(monkeypatch, path, act_quant):
    if path == "wgmma" and not wgmma_expected():
        pytest.skip("wgmma needs a compute capability 9.0 GPU")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", path)
    case = make_case(600, 208, 176, 12, 3, device="cuda", bias=True, seed=43, n_used_experts=9)
    outs = []
    for kb in ["0", "64", "256", "65536", "auto"]:
        monkeypatch.setenv("INT8_MOE_RASTER_KB", kb)
        poison_cached_memory()  # a tile the order skipped must not find the last run's values
        outs.append(check(case, act_quant=act_quant, activation="swigluoai"))
    for out in outs[1:]:
        assert torch.equal(out, outs[0])


def test_bad_tile_order_knob_is_a_clear_error(monkeypatch):
    case = make_case(300, 256, 176, 8, 2, device="cuda", seed=23)
    monkeypatch.setenv("INT8_MOE_RASTER_KB", "100")
    with pytest.raises(RuntimeError, match="INT8_MOE_RASTER_KB must be auto, 0, 64, 256"):
        ops.fused_moe(*case.args(), act_quant="per_token")


# Every decode tile (8, 16, 32 routes per block) forced on the same inputs, W8A16 and W8A8: 37
# tokens x 3 of 12 experts (9 used) is about 12 routes per expert, so 8- and 16-route tiles take
# several blocks per expert and 32-route tiles mostly one, with padding.
# Routes per block (INT8_MOE_DECODE_BM) x 16-row MMA tiles per CTA (INT8_MOE_DECODE_MT; 2
# exists for 8 and 16 routes per block): GEMM2's N = 208 is 13 tiles (odd: the last CTA's second
# tile is empty), tails in K, empty experts.
@pytest.mark.parametrize("bm, mt", [("8", "1"), ("8", "2"), ("16", "1"), ("16", "2"),
                                    ("32", "auto")])
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_forced_decode_block_routes(monkeypatch, bm, mt, act_quant, dtype):
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "decode")
    monkeypatch.setenv("INT8_MOE_DECODE_BM", bm)
    monkeypatch.setenv("INT8_MOE_DECODE_MT", mt)
    case = make_case(37, 208, 176, 12, 3, dtype=dtype, device="cuda", bias=True, seed=31,
                     n_used_experts=9)
    check(case, dtype, act_quant=act_quant, activation="swigluoai")


def test_bad_decode_block_knob_is_a_clear_error(monkeypatch):
    case = make_case(4, 256, 176, 8, 2, device="cuda", seed=23)
    monkeypatch.setenv("INT8_MOE_DECODE_BM", "64")
    with pytest.raises(RuntimeError, match="INT8_MOE_DECODE_BM must be auto, 8, 16 or 32"):
        ops.fused_moe(*case.args())


# The decode chain's launch options change when weights arrive, never what is summed in which
# order: programmatic dependent launch on or off (INT8_MOE_PDL), 2 or 4 weight chunks in flight
# per warp (INT8_MOE_DECODE_AHEAD, where 4 exists), the L2 prefetch before the PDL wait from
# none to whole rows (INT8_MOE_DECODE_PREFETCH_MB), and one or two 16-row MMA tiles per CTA
# (INT8_MOE_DECODE_MT). All give bitwise the same output, equal to the reference. 1 and 13
# routes per expert: 8- and 16-route blocks; tails in N and K, empty experts, biases, hostile
# ids.
@pytest.mark.parametrize("M", [3, 52])
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
def test_decode_chain_launch_options_agree(monkeypatch, M, act_quant):
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "decode")
    case = make_case(M, 208, 176, 12, 3, device="cuda", bias=True, seed=M + 5, n_used_experts=9)
    ids = case.topk_ids.clone()
    ids[::4, 1] = -1
    case.topk_ids = ids
    outs = []
    for pdl, ahead, prefetch, mt in [("0", "2", "0", "1"), ("1", "2", "0", "2"),
                                     ("1", "4", "8", "1"), ("1", "auto", "32", "2"),
                                     ("auto", "4", "auto", "auto"), ("0", "2", "0", "2")]:
        monkeypatch.setenv("INT8_MOE_PDL", pdl)
        monkeypatch.setenv("INT8_MOE_DECODE_AHEAD", ahead)
        monkeypatch.setenv("INT8_MOE_DECODE_PREFETCH_MB", prefetch)
        monkeypatch.setenv("INT8_MOE_DECODE_MT", mt)
        outs.append(check(case, act_quant=act_quant, activation="swigluoai"))
    for out in outs[1:]:
        assert torch.equal(out, outs[0])


# One token: direct routing (the GEMMs derive their route blocks from the router ids; no align
# kernel) against the aligned routing (INT8_MOE_DIRECT_ROUTING=0) and the
# reference: int32 and int64 ids, an expert map with dropped and out-of-range entries, ids that
# are -1 or beyond the experts, the same expert in two slots, 8- and 16-route blocks, biases,
# the input-side router weight (k = 1), more slots than local experts.
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bm", ["auto", "16"])
def test_direct_routing_agrees_with_aligned(monkeypatch, act_quant, dtype, bm):
    monkeypatch.setenv("INT8_MOE_DECODE_BM", bm)
    emap = torch.tensor([3, -1, 0, 7, -1, 100, 1, 2, 5, 4, -3, 6], dtype=torch.int32, device="cuda")
    variants = [
        (dict(), None, "distinct"),
        (dict(id_dtype=torch.int64), None, "distinct"),
        (dict(), [[5, -1, 9, 2]], "hostile"),
        (dict(), [[4, 4, 1, 2**31 - 1]], "repeated"),
        (dict(), [[0, 3, 8, 11]], "mapped"),
    ]
    for i, (kw, ids, kind) in enumerate(variants):
        case = make_case(1, 208, 176, 8, 4, dtype=dtype, device="cuda", bias=True, seed=40 + i,
                         **kw)
        extra = {}
        if ids is not None:
            case.topk_ids = torch.tensor(ids, dtype=case.topk_ids.dtype, device="cuda")
        if kind == "mapped":
            extra = dict(expert_map=emap)
        outs = []
        for direct in ["1", "0"]:
            monkeypatch.setenv("INT8_MOE_DIRECT_ROUTING", direct)
            outs.append(check(case, dtype, act_quant=act_quant, activation="swigluoai", **extra))
        if kind != "repeated":  # repeated experts share a block when aligned: other MMA columns
            assert torch.equal(outs[0], outs[1])
    one_slot = make_case(1, 208, 176, 8, 1, dtype=dtype, device="cuda", seed=46)
    monkeypatch.setenv("INT8_MOE_DIRECT_ROUTING", "auto")
    check(one_slot, dtype, act_quant=act_quant, apply_router_weight_on_input=True)
    two_local = make_case(1, 208, 176, 2, 4, dtype=dtype, device="cuda", seed=47)
    two_local.topk_ids = torch.tensor([[0, 5, 1, 3]], dtype=torch.int32, device="cuda")
    check(two_local, dtype, act_quant=act_quant,
          expert_map=torch.tensor([-1, 1, -1, 0, -1, -1], dtype=torch.int32, device="cuda"))


# Several tokens, up to 32 routes: direct routing groups each expert's routes, in route order,
# into blocks of BM (decode_block). Experts shared by many tokens, one expert with more routes
# than a block holds (several leader blocks: 24 routes on one expert at 8 and 16 per block), -1
# and out-of-range ids between them, an expert map with dropped entries, int64 ids, 33 routes
# (one over: aligned). Both modes, 8- and 16-route blocks, direct and aligned, each against the
# reference over poisoned workspace and repeated bitwise.
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
@pytest.mark.parametrize("bm", ["8", "16"])
def test_direct_routing_several_tokens(monkeypatch, act_quant, bm):
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "decode")
    monkeypatch.setenv("INT8_MOE_DECODE_BM", bm)
    emap = torch.tensor([3, -1, 0, 7, -1, 100, 1, 2, 5, 4, -3, 6], dtype=torch.int32, device="cuda")
    crowded = torch.ones(10, 3, dtype=torch.int32)
    crowded[::3, 2] = -1
    crowded[1, 0] = 99
    crowded[4, 1] = 2
    variants = [
        (10, 3, dict(), None, None),  # 30 routes over 4 experts: ~8 each
        (10, 3, dict(id_dtype=torch.int64), None, None),
        (10, 3, dict(), crowded, None),
        (8, 4, dict(), torch.randint(0, 12, (8, 4), generator=torch.Generator().manual_seed(5),
                                     dtype=torch.int32), emap),
        (11, 3, dict(), None, None),  # 33 routes: aligned whatever the knob says
    ]
    for i, (M, k, kw, ids, expert_map) in enumerate(variants):
        case = make_case(M, 208, 176, 4 if expert_map is None else 8, k, device="cuda",
                         bias=True, seed=80 + i, **kw)
        if ids is not None:
            case.topk_ids = ids.to(device="cuda", dtype=case.topk_ids.dtype)
        extra = {} if expert_map is None else dict(expert_map=expert_map)
        for direct in ["1", "0"]:
            monkeypatch.setenv("INT8_MOE_DIRECT_ROUTING", direct)
            check_repeatable(case, act_quant=act_quant, activation="swigluoai", **extra)


# The one-warp align kernel (decode, up to 32 routes; INT8_MOE_ALIGN_WARP) against the block
# kernel and the reference, each launched with and without PDL (INT8_MOE_ALIGN_PDL), on aligned
# routing in both modes: 32 routes on 32 distinct experts (the same sorted layout either way:
# bitwise the same output), one expert over several blocks (24 routes: 3 blocks of 8, 2 of 16),
# -1 and out-of-range ids, an expert map with dropped entries, int64 ids, 33 routes (the block
# kernel whatever the knob), 8- and 16-route blocks, over poisoned workspace, repeated bitwise.
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
@pytest.mark.parametrize("bm", ["auto", "16"])
def test_warp_align(monkeypatch, act_quant, bm):
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "decode")
    monkeypatch.setenv("INT8_MOE_DIRECT_ROUTING", "0")
    monkeypatch.setenv("INT8_MOE_DECODE_BM", bm)
    gen = torch.Generator().manual_seed(17)
    emap = torch.tensor([3, -1, 0, 7, -1, 100, 1, 2, 5, 4, -3, 6], dtype=torch.int32, device="cuda")
    crowded = torch.randint(0, 12, (8, 4), generator=gen, dtype=torch.int32)
    crowded[:, :3] = 3  # 24 routes on expert 3
    crowded[1, 3] = -1
    crowded[6, 3] = 12
    variants = [  # M, k, E, make_case kwargs, ids, expert_map, distinct experts
        (4, 8, 40, dict(), torch.randperm(40, generator=gen)[:32].view(4, 8), None, True),
        (8, 4, 12, dict(), crowded, None, False),
        (8, 4, 12, dict(id_dtype=torch.int64), crowded, None, False),
        (8, 4, 8, dict(), crowded, emap, False),  # 12 global ids onto 8 local experts
        (3, 5, 12, dict(), None, None, False),
        (11, 3, 12, dict(), None, None, False),  # 33 routes
    ]
    for i, (M, k, E, kw, ids, expert_map, distinct) in enumerate(variants):
        case = make_case(M, 208, 176, E, k, device="cuda", bias=True, seed=140 + i, **kw)
        if ids is not None:
            case.topk_ids = ids.to(device="cuda", dtype=case.topk_ids.dtype)
        extra = {} if expert_map is None else dict(expert_map=expert_map)
        outs = {}
        for warp, pdl in [("0", "0"), ("1", "0"), ("1", "1"), ("0", "1")]:
            monkeypatch.setenv("INT8_MOE_ALIGN_WARP", warp)
            monkeypatch.setenv("INT8_MOE_ALIGN_PDL", pdl)
            outs[warp, pdl] = check_repeatable(case, act_quant=act_quant, activation="swigluoai",
                                               **extra)
        assert torch.equal(outs["1", "0"], outs["1", "1"])
        if distinct or M * k > 32:
            for out in outs.values():
                assert torch.equal(out, outs["0", "0"])


# The parallel align (count / offsets / scatter kernels over slices of routes, one warp each;
# INT8_MOE_ALIGN_PARALLEL, on by default from 16384 routes) against the block kernel and the
# reference: slices of 32 and 64 routes with a partial last one (999 and 8800 routes), 128
# experts with empty ones, one expert crowded over many slices and blocks, -1 and out-of-range
# ids, an expert map with dropped entries, int64 ids, every kernel family (grouped_mm reads
# expert_end), both modes, the decode chain launched with PDL (align's first kernel with it), over
# poisoned workspace, repeated bitwise. Each route's row is computed on its own, so the two
# orders within an expert give the same bits.
@pytest.mark.parametrize("path,act_quant,pdl", [
    ("auto", "none", "auto"),
    ("auto", "per_token", "auto"),
    ("tiled", "none", "auto"),
    ("grouped_mm", "none", "auto"),
    ("decode", "per_token", "1"),
])
def test_parallel_align(monkeypatch, path, act_quant, pdl):
    if path == "grouped_mm" and not grouped_mm_available(torch.bfloat16):
        pytest.skip("the grouped_mm path needs bf16 on sm_90+")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", path)
    monkeypatch.setenv("INT8_MOE_PDL", pdl)
    gen = torch.Generator().manual_seed(29)
    hostile = torch.randint(0, 12, (333, 3), generator=gen, dtype=torch.int32)
    hostile[::7, 0] = -1
    hostile[::11, 2] = 12  # out of range
    hostile[5::13, 1] = 1000
    crowded = torch.randint(0, 8, (300, 2), generator=gen, dtype=torch.int32)
    crowded[:250, 0] = 3  # 250 routes on expert 3 over 16 slices of 32, several blocks
    emap = torch.tensor([3, -1, 0, 7, -1, 100, 1, 2, 5, 4, -3, 6], dtype=torch.int32, device="cuda")
    variants = [  # M, k, E, make_case kwargs, ids, expert_map
        (1100, 8, 128, dict(n_used_experts=100), None, None),  # 8800 routes, slices of 64
        (333, 3, 12, dict(), hostile, None),  # 999 routes, slices of 32
        (333, 3, 12, dict(id_dtype=torch.int64), hostile, None),
        (333, 3, 8, dict(), hostile, emap),  # 12 global ids onto 8 local experts
        (300, 2, 8, dict(), crowded, None),
    ]
    for i, (M, k, E, kw, ids, expert_map) in enumerate(variants):
        case = make_case(M, 208, 176, E, k, device="cuda", bias=True, seed=160 + i, **kw)
        if ids is not None:
            case.topk_ids = ids.to(device="cuda", dtype=case.topk_ids.dtype)
        extra = {} if expert_map is None else dict(expert_map=expert_map)
        outs = []
        for parallel in ["1", "0"]:
            monkeypatch.setenv("INT8_MOE_ALIGN_PARALLEL", parallel)
            outs.append(check_repeatable(case, act_quant=act_quant, activation="swigluoai",
                                         **extra))
        assert torch.equal(outs[0], outs[1])


# The default rule: the block align kernel below 16384 routes, the parallel kernels from 16384
# (M * k = 16380 and 16384), each output checked against the reference.
@pytest.mark.parametrize("M,parallel", [(4095, False), (4096, True)])
def test_parallel_align_rule(monkeypatch, M, parallel):
    monkeypatch.setenv("INT8_MOE_ALIGN_PARALLEL", "auto")
    case = make_case(M, 64, 32, 16, 4, device="cuda", seed=M)
    check(case)
    names = kernel_names(case)
    assert_ran(names, "moe_align_count_kernel", parallel)
    assert_ran(names, "moe_align_kernel<", not parallel)


# The default decode / wgmma rule (wgmma_min_per_expert) on both sides of each threshold, in
# routes per expert ceil(M k / E), each output checked against the reference: GEMM2 weight tiles
# E * ceil(H / 128) few (8 * 8 = 64: W8A16 from 12 where I >= 7168, W8A8 from 12 where
# 2048 <= I < 7168), neither (64 * 8 = 512: W8A16 from 7, W8A8 from 6) and many (256 * 16 = 4096:
# W8A8 from 2).
@pytest.mark.parametrize("M,H,I,E,k,act_quant,wgmma", [
    (44, 1024, 7168, 8, 2, "none", False), (45, 1024, 7168, 8, 2, "none", True),
    (64, 1024, 7152, 8, 2, "none", False),
    (44, 1024, 3584, 8, 2, "per_token", False), (45, 1024, 3584, 8, 2, "per_token", True),
    (96, 1024, 176, 64, 4, "none", False), (97, 1024, 176, 64, 4, "none", True),
    (80, 1024, 176, 64, 4, "per_token", False), (81, 1024, 176, 64, 4, "per_token", True),
    (32, 2048, 96, 256, 8, "per_token", False), (33, 2048, 96, 256, 8, "per_token", True),
    (33, 2048, 96, 256, 8, "none", False),
])
def test_decode_wgmma_rule(monkeypatch, M, H, I, E, k, act_quant, wgmma):
    if not wgmma_expected():
        pytest.skip("wgmma needs a compute capability 9.0 GPU")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "auto")
    case = make_case(M, H, I, E, k, device="cuda", seed=M + I)
    check(case, act_quant=act_quant)
    names = kernel_names(case, act_quant=act_quant)
    assert_ran(names, "moe_gemm_wgmma", wgmma)
    assert_ran(names, "moe_gemm_decode_kernel", not wgmma)


# The default gather rule: the wgmma GEMM1 takes rows gathered per sorted position from I = 3072
# for W8A16 and from 8192 for W8A8 (the sizes just below and at each), with the router weight on
# the input (k = 1: W8A8 quantizes the weighted rows, W8A16 weighs in GEMM1's epilogue), each
# output checked against the reference.
@pytest.mark.parametrize("I,act_quant,gathered", [
    (3056, "none", False), (3072, "none", True),
    (3072, "per_token", False), (8176, "per_token", False), (8192, "per_token", True)])
@pytest.mark.parametrize("k,weight_on_input", [(2, False), (1, True)])
def test_wgmma_gather_rule(monkeypatch, I, gathered, act_quant, k, weight_on_input):
    if not wgmma_expected():
        pytest.skip("wgmma needs a compute capability 9.0 GPU")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "wgmma")
    monkeypatch.setenv("INT8_MOE_WGMMA_GATHER", "auto")
    case = make_case(96, 64, I, 4, k, device="cuda", seed=I + k)
    kw = dict(act_quant=act_quant, apply_router_weight_on_input=weight_on_input)
    check(case, **kw)
    names = kernel_names(case, **kw)
    assert_ran(names, "gather_row_bytes_kernel", gathered)


# The default TMA rule: W8A16's 64-route tiles load by cp.async where GEMM1 reads token rows (I
# below the gather's 3072, or the gather forced off), by TMA where it gathers (from I = 3072, or
# the gather forced on: it needs TMA) and at 128-route tiles; W8A8 by TMA at every tile width.
# 96 tokens x 2 over 4 experts: 48 routes per expert, 64-route tiles (600: 300 per expert,
# 128-route tiles).
@pytest.mark.parametrize("M,I,act_quant,gather,tma", [
    (96, 3056, "none", "auto", False), (96, 3072, "none", "auto", True),
    (96, 176, "none", "1", True), (96, 3072, "none", "0", False),
    (600, 176, "none", "auto", True), (96, 176, "per_token", "auto", True)])
def test_wgmma_tma_rule(monkeypatch, M, I, act_quant, gather, tma):
    if not wgmma_expected():
        pytest.skip("wgmma needs a compute capability 9.0 GPU")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "wgmma")
    monkeypatch.setenv("INT8_MOE_WGMMA_TMA", "auto")
    monkeypatch.setenv("INT8_MOE_WGMMA_GATHER", gather)
    case = make_case(M, 64, I, 4, 2, device="cuda", seed=M + I)
    check(case, act_quant=act_quant)
    names = kernel_names(case, act_quant=act_quant)
    assert_ran(names, "moe_gemm_wgmma_tma_kernel", tma)
    assert_ran(names, "moe_gemm_wgmma_kernel", not tma)
    if gather != "auto":
        assert_ran(names, "gather_row_bytes_kernel", gather == "1")


# The default warpgroup rule of W8A8's 128-route tiles: 4 per CTA from 2048 routes per expert,
# and where routes per expert x I (GEMM2's K) reach 512 x 14336 = 1024 x 7168; else 2 (2
# experts, k = 2: M routes per expert). The warpgroup count is the kernels' fifth template
# argument.
@pytest.mark.parametrize("M,I,wide", [
    (1024, 7152, False), (1020, 7168, False), (1024, 7168, True), (512, 14336, True),
    (2048, 176, True)])
def test_wgmma_warpgroup_rule(monkeypatch, M, I, wide):
    if not wgmma_expected():
        pytest.skip("wgmma needs a compute capability 9.0 GPU")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "wgmma")
    monkeypatch.setenv("INT8_MOE_WGMMA_BN", "128")
    monkeypatch.setenv("INT8_MOE_WGMMA_WG", "auto")
    case = make_case(M, 64, I, 2, 2, device="cuda", seed=M + I)
    check(case, act_quant="per_token")
    names = kernel_names(case, act_quant="per_token")
    if names is not None:
        gemms = [n for n in names if "moe_gemm_wgmma" in n]
        wgs = {re.search(r"_kernel<[^<>]*?, 128, (?:true|false), (\d),", n).group(1)
               for n in gemms}
        assert wgs == {"4" if wide else "2"}, gemms


# W8A8's per-token quantization passes (x, and the intermediate between the GEMMs, both in the
# activation dtype: 8 values per 16-byte pack): the register-resident kernels (a row in one
# block's registers, or in one warp's: INT8_MOE_ACT_QUANT_WARP, by default from 1024 used rows,
# rows up to 256 packs) against the looped one (INT8_MOE_ACT_QUANT_LOOPED=1), bit for bit, and
# all against the reference. Rows that leave the last threads' or lanes' packs partly empty
# (H = 208, I = 176), 1, 2 and 4 packs per thread (I = 8000: 1000 threads of 1 pack, too long for
# a warp; 14336: 896 of 2; 16400: 513 of 4), 8 packs a lane (H = 2048), x's rows too long for a
# warp (H = 4096: its intermediate's rows take one), a row beyond 1024 threads of 4 packs
# (I = 32784: looped either way), the input-side router weight (k = 1, x's rows scaled first),
# decode and tensor-core prefill paths, the default rule on both sides of its threshold (600 and
# 1200 routes), both dtypes, over poisoned workspace. The profiler shows which form ran.
@pytest.mark.parametrize("M,H,I,E,k,weight_on_input", [
    (1, 208, 176, 8, 4, False),
    (3, 4096, 176, 8, 2, False),
    (3, 2048, 176, 8, 2, False),
    (2, 64, 8000, 4, 2, False),
    (2, 64, 14336, 4, 2, False),
    (2, 64, 16400, 2, 2, False),
    (2, 64, 32784, 2, 2, False),
    (5, 208, 176, 4, 1, True),
    (300, 208, 176, 4, 2, False),
    (600, 208, 176, 4, 2, False),
])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_act_quant_kernels_agree(monkeypatch, M, H, I, E, k, weight_on_input, dtype):
    case = make_case(M, H, I, E, k, dtype=dtype, device="cuda", bias=True, seed=M + I)
    kw = dict(act_quant="per_token", apply_router_weight_on_input=weight_on_input)
    outs = []
    for looped, warp in [("1", "auto"), ("0", "0"), ("0", "1"), ("0", "auto")]:
        monkeypatch.setenv("INT8_MOE_ACT_QUANT_LOOPED", looped)
        monkeypatch.setenv("INT8_MOE_ACT_QUANT_WARP", warp)
        poison_cached_memory()
        outs.append(check(case, dtype, **kw))
        names = kernel_names(case, **kw)
        # x's or the intermediate's rows fit a warp in every case; by default M * k >= 1024
        # routes take it (the intermediate, I = 176).
        expected = looped == "0" and (warp == "1" or (warp == "auto" and M * k >= 1024))
        assert_ran(names, "quantize_act_rows_warp_kernel", expected, looped, warp)
    for other in outs[1:]:
        assert torch.equal(outs[0], other)
    monkeypatch.setenv("INT8_MOE_ACT_QUANT_LOOPED", "2")
    with pytest.raises(RuntimeError, match="INT8_MOE_ACT_QUANT_LOOPED must be auto, 0 or 1"):
        ops.fused_moe(*case.args(), act_quant="per_token")
    monkeypatch.setenv("INT8_MOE_ACT_QUANT_LOOPED", "auto")
    monkeypatch.setenv("INT8_MOE_ACT_QUANT_WARP", "yes")
    with pytest.raises(RuntimeError, match="INT8_MOE_ACT_QUANT_WARP must be auto, 0 or 1"):
        ops.fused_moe(*case.args(), act_quant="per_token")


# The register-resident passes' magic-number rounding and integer row max (RowPacks in
# moe_epilogue_kernels.cuh; quantize_activation_magic, abs_bits.cuh) against the looped form
# (quantize_activation_fast per value), bit for bit, on x rows built to reach their exact and
# fallback paths: every other value an exact tie of its row's scale (amax 127 * 2^e, so
# s = 2^e, e = -8 .. -1), a NaN among finite values (the float max leaves it out, the bit max
# would not), +inf and -inf (scale inf; the GEMM1 output and so the intermediate's rows go
# NaN / inf too), an all-zero row, subnormal rows under the amax floor, a single nonzero value;
# then random rows. 1040 values a row (130 packs: the 8-pack warp kernel, its lanes holding 4 or
# 5) and I = 176 (22 packs: lanes 22-31 hold none); the block form (INT8_MOE_ACT_QUANT_WARP=0)
# and the warp form (=1), with and without the input-side router weight (k = 1: the multiplier
# path). Outputs compared as bits (NaN rows included); the finite rows also against the
# reference.
@pytest.mark.parametrize("weight_on_input", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_act_quant_special_rows_agree(monkeypatch, weight_on_input, dtype):
    M, H, I = 64, 1040, 176
    case = make_case(M, H, I, 8, 1 if weight_on_input else 2, dtype=dtype, device="cuda",
                     bias=True, seed=31)
    x = case.x.float()
    j = torch.arange(H, device="cuda")
    ties = ((j % 127) + 0.5) * torch.where(j % 2 == 0, 1.0, -1.0)  # |.| <= 126.5: exact in both
    for r, e in enumerate(range(-8, 0)):  # (small enough that fp16's GEMM outputs stay finite)
        x[r] = torch.where(j % 2 == 0, ties, x[r].clamp(-100, 100)) * 2.0**e
        x[r, 1] = 127 * 2.0**e
    x[8, 5] = float("nan")
    x[9] = ties / 4
    x[9, 1], x[9, 7] = 127 / 4, float("nan")
    x[10, 3] = float("inf")
    x[11, 4], x[11, 9] = float("-inf"), float("nan")
    x[12] = 0
    x[13] *= 1e-39 if dtype == torch.bfloat16 else 1e-6
    x[14] = 0
    x[14, 1039] = -3.0
    case.x = x.to(dtype)
    kw = dict(act_quant="per_token", apply_router_weight_on_input=weight_on_input)
    outs = []
    for looped, warp in [("1", "auto"), ("0", "0"), ("0", "1")]:
        monkeypatch.setenv("INT8_MOE_ACT_QUANT_LOOPED", looped)
        monkeypatch.setenv("INT8_MOE_ACT_QUANT_WARP", warp)
        poison_cached_memory()
        outs.append(ops.fused_moe(*case.args(), **case.bias_kwargs(), **kw))
    bits = [o.view(torch.int16) for o in outs]
    assert outs[0][:10].isfinite().all() and not outs[0][10:12].isfinite().all()
    for other in bits[1:]:
        assert torch.equal(bits[0], other)
    finite = torch.ones(M, dtype=torch.bool)
    finite[8:15] = False
    r = ref.fused_moe(*case.args(), **case.bias_kwargs(), **kw)
    assert_moe_close(outs[0][finite], r[finite], dtype, "per_token")


# The top-k sum with its route rows staged in shared memory by cp.async
# (moe_topk_sum_staged_kernel: by default from 16384 tokens for bf16 / fp16, k <= 8;
# INT8_MOE_TOPK_SUM_STAGED = 0 | 1 forces it) against the register form, bit for bit, and the
# reference: 9000 tokens (4571 blocks of 256 items), rows of 1040 values, padding rows (uneven,
# empty experts), hostile ids (-1, out of range) with and without an expert map, int64 ids, k = 1
# with the input-side weight, both dtypes, both activation modes, over poisoned workspace; the
# rule on both sides of its threshold (16383 and 16384 tokens). The profiler shows which kernel
# ran.
# (The grid-stride loop and offsets past 2^31: test_route_rows_beyond_2_pow_31_elements.)
@pytest.mark.parametrize("k, weight_on_input, mapped", [(3, False, False), (3, False, True),
                                                        (1, True, False)])
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_topk_sum_staged_agrees(monkeypatch, k, weight_on_input, mapped, act_quant, dtype):
    case = make_case(9000, 1040, 176, 12, k, dtype=dtype, device="cuda", bias=True, seed=k + 70,
                     n_used_experts=9, id_dtype=torch.int64 if weight_on_input else torch.int32)
    kw = dict(act_quant=act_quant, apply_router_weight_on_input=weight_on_input)
    if k == 3:
        case.topk_ids[::5, 1] = -1
        case.topk_ids[3::7, 2] = 40
    if mapped:
        kw["expert_map"] = torch.tensor([3, -1, 0, 7, -1, 100, 1, 2, 5, 4, -3, 6],
                                        dtype=torch.int32, device="cuda")

    def assert_staged(case, expected):
        names = kernel_names(case, **case.bias_kwargs(), **kw)
        assert_ran(names, "moe_topk_sum", True)
        assert_ran(names, "moe_topk_sum_staged_kernel", expected)

    outs = []
    for staged in ("0", "1", "auto"):
        monkeypatch.setenv("INT8_MOE_TOPK_SUM_STAGED", staged)
        poison_cached_memory()
        outs.append(check(case, dtype, **kw))
        assert_staged(case, staged == "1")  # 9000 tokens: the rule keeps the register form
    for other in outs[1:]:
        assert torch.equal(outs[0], other)
    for M in (16383, 16384):
        small = make_case(M, 64, 32, 4, k, dtype=dtype, device="cuda", seed=M)
        assert_staged(small, M >= 16384)
    monkeypatch.setenv("INT8_MOE_TOPK_SUM_STAGED", "2")
    with pytest.raises(RuntimeError, match="INT8_MOE_TOPK_SUM_STAGED must be auto, 0 or 1"):
        ops.fused_moe(*case.args(), **kw)


# GEMM2 split over K (INT8_MOE_DECODE_SPLITK): each K slice writes partial per-route rows that
# the top-k sum adds in a fixed order. K = I = 176 is 2.75 chunks of 64, so 4 slices leave the
# last one empty (partials of zero, no bias) and 2 slices a short one; the bias is added once;
# hostile ids, one token (direct routing) and several. Every split count agrees with the
# reference and repeats bitwise.
@pytest.mark.parametrize("M", [1, 3, 52])
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_decode_split_over_k(monkeypatch, M, act_quant, dtype):
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "decode")
    case = make_case(M, 208, 176, 12, 3, dtype=dtype, device="cuda", bias=True, seed=M + 60,
                     n_used_experts=9)
    case.topk_ids[::2, 1] = -1
    case.topk_ids[0, 2] = 40
    for splits in ["1", "2", "4"]:
        monkeypatch.setenv("INT8_MOE_DECODE_SPLITK", splits)
        poison_cached_memory()  # a partial row left unwritten would read the poison
        first = check(case, dtype, act_quant=act_quant, activation="swigluoai")
        assert torch.equal(ops.fused_moe(*case.args(), **case.bias_kwargs(), act_quant=act_quant,
                                         activation="swigluoai"), first)


# The automatic split: GEMM2 rows of 2048 bytes or more with few busy CTAs (one token, 2
# experts) take 2 K slices in both modes, bitwise what INT8_MOE_DECODE_SPLITK=2 gives (the
# slices' partial rows round apart, so the output tells the count); shorter rows take one.
@pytest.mark.parametrize("act_quant, inter, splits", [
    ("none", 2048, "2"), ("none", 1792, "1"), ("per_token", 2048, "2"), ("per_token", 1792, "1")])
def test_decode_split_rule_on_long_rows(monkeypatch, act_quant, inter, splits):
    case = make_case(1, 128, inter, 2, 2, device="cuda", bias=True, seed=71)
    outs = []
    for knob in ["auto", splits]:
        monkeypatch.setenv("INT8_MOE_DECODE_SPLITK", knob)
        outs.append(check(case, act_quant=act_quant))
    assert torch.equal(outs[0], outs[1])


# No route lands on a local expert (ids out of range or negative): no route block holds work, the
# GEMM grids are all empty CTAs, and the output is exactly zero (written over a poisoned out).
@pytest.mark.parametrize("M", [1, 6])
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
def test_no_valid_route_gives_zeros(M, act_quant):
    case = make_case(M, 208, 176, 12, 3, device="cuda", seed=M)
    case.topk_ids = torch.randint(12, 40, (M, 3), dtype=torch.int32, device="cuda")
    case.topk_ids[0, 0] = -1
    out = torch.full_like(case.x, float("nan"))
    ops.fused_moe(*case.args(), act_quant=act_quant, out=out)
    assert (out == 0).all()


@pytest.mark.parametrize("var, value, accepted", [
    ("INT8_MOE_PDL", "2", "auto, 0 or 1"),
    ("INT8_MOE_DECODE_AHEAD", "3", "auto, 2 or 4"),
    ("INT8_MOE_DECODE_PREFETCH_MB", "64", "auto, 0, 8, 16 or 32"),
    ("INT8_MOE_DECODE_MT", "4", "auto, 1 or 2"),
    ("INT8_MOE_DIRECT_ROUTING", "yes", "auto, 0 or 1"),
    ("INT8_MOE_DECODE_SPLITK", "3", "auto, 1, 2 or 4"),
    ("INT8_MOE_ALIGN_WARP", "2", "auto, 0 or 1"),
    ("INT8_MOE_ALIGN_PDL", "-1", "auto, 0 or 1"),
    ("INT8_MOE_ALIGN_PARALLEL", "on", "auto, 0 or 1"),
])
def test_bad_decode_chain_knobs_are_clear_errors(monkeypatch, var, value, accepted):
    case = make_case(4, 256, 176, 8, 2, device="cuda", seed=23)
    monkeypatch.setenv(var, value)
    with pytest.raises(RuntimeError, match=f"{var} must be {accepted}, got '{value}'"):
        ops.fused_moe(*case.args())


def test_bad_gemm_path_knob_is_a_clear_error(monkeypatch):
    case = make_case(4, 256, 176, 8, 2, device="cuda", seed=23)
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "fastest")
    with pytest.raises(RuntimeError, match="INT8_MOE_GEMM_PATH must be auto, decode, tiled"):
        ops.fused_moe(*case.args())
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", "grouped_mm")  # never applies to fp16
    half = make_case(4, 256, 176, 8, 2, dtype=torch.float16, device="cuda", seed=23)
    with pytest.raises(RuntimeError, match="grouped_mm needs bf16"):
        ops.fused_moe(*half.args())


@pytest.mark.parametrize("M", [1, 100])
def test_per_token_and_fp32_paths(M):
    case = make_case(M, 256, 176, 8, 2, device="cuda", seed=4)
    check(case, act_quant="per_token")
    case32 = make_case(M, 256, 176, 8, 2, dtype=torch.float32, device="cuda", seed=4)
    check(case32, torch.float32)


def test_unaligned_view_falls_back():
    case = make_case(33, 256, 176, 8, 2, device="cuda", seed=5)
    x = torch.empty(33 * 256 + 1, dtype=torch.bfloat16, device="cuda")[1:].view(33, 256)
    x.copy_(case.x)
    case.x = x
    check(case)


@pytest.mark.parametrize("M", [1, 37, 300])
def test_misaligned_out_gives_the_same_bits(M):
    """An `out` that is not 16-byte aligned takes the top-k sum one output per thread (the 8-wide
    form needs aligned rows); both add the same rows in the same order, so the bits match."""
    case = make_case(M, 256, 176, 8, 4, device="cuda", bias=True, seed=12)
    aligned = ops.fused_moe(*case.args(), **case.bias_kwargs())
    buf = torch.full((M * 256 + 1,), float("nan"), dtype=torch.bfloat16, device="cuda")
    out = buf[1:].view(M, 256)
    ops.fused_moe(*case.args(), **case.bias_kwargs(), out=out)
    assert torch.equal(out, aligned)


def test_hidden_size_not_a_multiple_of_8():
    # H = 100: the general GEMM path and the one-output-per-thread top-k sum.
    check(make_case(29, 100, 48, 6, 3, device="cuda", bias=True, seed=13))


@pytest.mark.parametrize("M", [1, 3, 300])  # decode (1: direct routing) and tiled kernels
def test_hostile_ids_and_expert_map(M):
    case = make_case(M, 256, 176, 8, 4, device="cuda", seed=6)
    ids = case.topk_ids.clone()
    ids[::5, 0] = -7
    ids[1::5, 1] = 8
    ids[2::5, 2] = 2**31 - 1
    case.topk_ids = ids
    check(case)
    emap = torch.tensor([3, -1, 0, 7, -1, 100, 1, 2, 5, 4, -3, 6], dtype=torch.int32, device="cuda")
    case.topk_ids = torch.randint(-2, 14, (M, 4), dtype=torch.int32, device="cuda")
    check(case, expert_map=emap)


@pytest.mark.parametrize("M", [64, 1000])  # decode and tiled kernels
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_int64_ids_and_weight_on_input(M, dtype):
    case = make_case(M, 256, 176, 8, 1, dtype=dtype, device="cuda", seed=7, id_dtype=torch.int64)
    check(case, dtype, apply_router_weight_on_input=True)


# "wgmma:gather": GEMM1's rows gathered per sorted position (INT8_MOE_WGMMA_GATHER=1; the
# gather kernel and the tensor maps over its buffer captured with the rest).
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
@pytest.mark.parametrize("M, path", [(1, "auto"), (2, "auto"), (48, "auto"), (120, "auto"),
                                     # decode (1: direct routing), tiled
                                     (512, "tiled"), (512, "grouped_mm"), (512, "wgmma"),
                                     (512, "wgmma:gather")])
def test_cuda_graph_capture_and_replay(monkeypatch, act_quant, M, path):
    path, _, variant = path.partition(":")
    if path == "grouped_mm" and not grouped_mm_available(torch.bfloat16):
        pytest.skip("the grouped_mm path needs bf16 on sm_90+")
    if path == "wgmma" and not wgmma_expected():
        pytest.skip("wgmma needs a compute capability 9.0 GPU")
    monkeypatch.setenv("INT8_MOE_GEMM_PATH", path)
    monkeypatch.setenv("INT8_MOE_WGMMA_GATHER", "1" if variant == "gather" else "auto")
    case = make_case(M, 256, 176, 8, 4, device="cuda", seed=8)
    static = [t.clone() for t in (case.x, case.topk_weights, case.topk_ids)]
    kw = dict(act_quant=act_quant)

    def run():
        return ops.fused_moe(static[0], case.w13, case.w2, case.w13_scale, case.w2_scale,
                             static[1], static[2], **kw)

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        run()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = run()
    for seed in range(3):  # new inputs, same buffers
        fresh = make_case(M, 256, 176, 8, 4, device="cuda", seed=100 + seed)
        static[0].copy_(fresh.x)
        static[1].copy_(fresh.topk_weights)
        static[2].copy_(fresh.topk_ids)
        g.replay()
        expected = ops.fused_moe(static[0], case.w13, case.w2, case.w13_scale, case.w2_scale,
                                 static[1], static[2], **kw)
        assert torch.equal(out, expected)


@pytest.mark.parametrize("M", [3, 500])
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
def test_bitwise_deterministic(M, act_quant):
    case = make_case(M, 512, 352, 16, 4, device="cuda", seed=9)
    first = ops.fused_moe(*case.args(), act_quant=act_quant)
    for _ in range(5):
        assert torch.equal(first, ops.fused_moe(*case.args(), act_quant=act_quant))


def test_matches_cpu_implementation():
    case = make_case(40, 256, 176, 8, 2, device="cuda", bias=True, seed=10)
    cpu_args = [t.cpu() for t in case.args()]
    cpu_bias = {k: v.cpu() for k, v in case.bias_kwargs().items()}
    gpu = ops.fused_moe(*case.args(), **case.bias_kwargs(), activation="gelu")
    cpu = ops.fused_moe(*cpu_args, **cpu_bias, activation="gelu")
    assert_moe_close(gpu.cpu(), cpu.float(), torch.bfloat16)


def test_respects_current_device_stream():
    case = make_case(16, 256, 176, 8, 2, device="cuda", seed=11)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = ops.fused_moe(*case.args())
    s.synchronize()
    assert torch.equal(out, ops.fused_moe(*case.args()))


@pytest.mark.parametrize("M", [5, 700])
def test_two_streams_at_once_match_one(M):
    # Two layers' forwards in flight on two streams at the same time (separate workspaces from
    # the caching allocator) give exactly what each gives alone on the default stream.
    cases = [make_case(M, 512, 352, 16, 4, device="cuda", seed=30 + i) for i in range(2)]
    alone = [ops.fused_moe(*c.args()) for c in cases]
    streams = [torch.cuda.Stream() for _ in cases]
    torch.cuda.synchronize()
    outs = [[], []]
    for _ in range(10):
        for i, (c, s) in enumerate(zip(cases, streams, strict=True)):
            with torch.cuda.stream(s):
                outs[i].append(ops.fused_moe(*c.args()))
    torch.cuda.synchronize()
    for i in range(2):
        for o in outs[i]:
            assert torch.equal(o, alone[i])


@pytest.mark.slow
@pytest.mark.parametrize("act_quant, staged", [("none", "1"), ("per_token", "0")])
def test_route_rows_beyond_2_pow_31_elements(monkeypatch, act_quant, staged):
    # n_routes * H > 2^31: the per-route output rows, the top-k sum and the sorted positions are
    # indexed past 32-bit offsets. ~9 GB of route rows plus the reference's. Each form of the
    # top-k sum (staged in shared memory or in registers) walks its grid-stride loop once.
    if torch.cuda.get_device_properties(0).total_memory < 60 * 2**30:
        pytest.skip("needs a GPU with 60 GB")
    monkeypatch.setenv("INT8_MOE_TOPK_SUM_STAGED", staged)
    H, I, E, k = 2048, 64, 8, 8
    M = 2**31 // (H * k) + 4099
    g = torch.Generator(device="cuda").manual_seed(40)
    x = torch.randn(M, H, generator=g, device="cuda").to(torch.bfloat16)
    w13 = torch.randn(E, 2 * I, H, generator=g, device="cuda") / H**0.5
    w2 = torch.randn(E, H, I, generator=g, device="cuda") / I**0.5
    q13, s13 = ref.quantize_rows(w13)
    q2, s2 = ref.quantize_rows(w2)
    ids = torch.rand(M, E, generator=g, device="cuda").argsort(dim=1)[:, :k].to(torch.int32)
    tw = torch.softmax(torch.randn(M, k, generator=g, device="cuda"), dim=-1)
    assert M * k * H > 2**31
    out = ops.fused_moe(x, q13, q2, s13, s2, tw, ids, act_quant=act_quant)
    del w13, w2
    torch.cuda.empty_cache()
    r = ref.fused_moe(x, q13, q2, s13, s2, tw, ids, act_quant=act_quant)
    assert_moe_close(out, r, torch.bfloat16, act_quant)
    assert_moe_close(out[-4099:], r[-4099:], torch.bfloat16, act_quant)  # the rows past 2^31


@pytest.mark.parametrize("E", [128, 257, 1500])  # the routing scan covers several experts a thread
@pytest.mark.parametrize("M", [1, 50, 700])
def test_many_experts(E, M):
    case = make_case(M, 128, 64, E, 8, device="cuda", seed=E + M)
    check(case)
