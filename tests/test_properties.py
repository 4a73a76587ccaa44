"""Property-based tests (hypothesis): random shapes with tails, dtypes, hostile routing,
activations and biases; the op must match the reference within the tolerance table. Runs on
the CPU, and on CUDA where this build has CUDA kernels and a GPU."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import int8_moe.reference as ref
from int8_moe import ops

from moe_cases import DEVICES
from numerics import assert_moe_close

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def moe_problem(draw):
    E = draw(st.integers(1, 9))
    H = draw(st.sampled_from([8, 16, 24, 40, 64, 72, 136]))  # tails of 16 and 64 included
    I = draw(st.sampled_from([1, 5, 16, 24, 48, 80]))
    M = draw(st.integers(0, 40))
    k = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([torch.bfloat16, torch.float16, torch.float32]))
    routing = draw(st.sampled_from(["uniform", "one_expert", "repeated", "hostile", "mapped"]))
    activation = draw(st.sampled_from(["silu", "gelu", "gelu_tanh", "swigluoai"]))
    bias = draw(st.booleans())
    act_quant = draw(st.sampled_from(["none", "per_token"]))
    seed = draw(st.integers(0, 2**31 - 1))
    return E, H, I, M, k, dtype, routing, activation, bias, act_quant, seed


def build(problem, device):
    E, H, I, M, k, dtype, routing, activation, bias, act_quant, seed = problem
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(M, H, generator=g).to(dtype)
    w13, s13 = ref.quantize_rows(torch.randn(E, 2 * I, H, generator=g) / H**0.5)
    w2, s2 = ref.quantize_rows(torch.randn(E, H, I, generator=g) / max(I, 1) ** 0.5)
    tw = torch.rand(M, k, generator=g)
    expert_map = None
    if routing == "uniform":
        ids = torch.randint(0, E, (M, k), generator=g)
    elif routing == "one_expert":
        ids = torch.zeros(M, k, dtype=torch.long)
    elif routing == "repeated":  # the same expert twice in a token's top-k
        ids = torch.randint(0, E, (M, 1), generator=g).repeat(1, k)
    elif routing == "hostile":  # negative and too-large ids mixed in
        ids = torch.randint(-3, E + 3, (M, k), generator=g)
    else:  # global ids through expert_map, some mapped away or out of range
        n_global = E + 4
        ids = torch.randint(0, n_global, (M, k), generator=g)
        expert_map = torch.randint(-1, E + 1, (n_global,), generator=g).to(torch.int32)
    kw = dict(activation=activation, act_quant=act_quant, expert_map=expert_map)
    if bias:
        kw.update(w13_bias=torch.randn(E, 2 * I, generator=g).to(dtype),
                  w2_bias=torch.randn(E, H, generator=g).to(dtype))
    args = [t.to(device) for t in (x, w13, w2, s13, s2, tw, ids.to(torch.int32))]
    kw = {n: (v.to(device) if isinstance(v, torch.Tensor) else v) for n, v in kw.items()}
    return args, kw, dtype, act_quant


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(problem=moe_problem())
def test_fused_moe_matches_reference(device, problem):
    args, kw, dtype, act_quant = build(problem, device)
    out = ops.fused_moe(*args, **kw)
    expected = ref.fused_moe(*(a.cpu() for a in args),
                             **{n: (v.cpu() if isinstance(v, torch.Tensor) else v)
                                for n, v in kw.items()})
    assert out.shape == args[0].shape and out.dtype == dtype
    assert_moe_close(out, expected, dtype, act_quant)


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(rows=st.integers(1, 20), K=st.integers(1, 300),
       dtype=st.sampled_from([torch.bfloat16, torch.float16, torch.float32]),
       compat=st.booleans(), zero_row=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_quantize_rows_matches_reference(device, rows, K, dtype, compat, zero_row, seed):
    w = (torch.randn(rows, K, generator=torch.Generator().manual_seed(seed)) * 0.1).to(dtype)
    if zero_row:
        w[rows // 2] = 0
    q, s = ops.quantize_rows(w.to(device), compat=compat)
    rq, rs = ref.quantize_rows(w, compat=compat)
    assert torch.equal(q.cpu(), rq) and torch.equal(s.cpu(), rs)


@pytest.mark.parametrize("device", DEVICES)
def test_nan_activation_propagates_to_its_token_only(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 32, generator=g).bfloat16()
    x[2, 5] = float("nan")
    w13, s13 = ref.quantize_rows(torch.randn(3, 32, 32, generator=g))
    w2, s2 = ref.quantize_rows(torch.randn(3, 32, 16, generator=g))
    ids = torch.randint(0, 3, (6, 2), generator=g, dtype=torch.int32)
    tw = torch.rand(6, 2, generator=g)
    out = ops.fused_moe(*(t.to(device) for t in (x, w13, w2, s13, s2, tw, ids))).cpu()
    assert torch.isnan(out[2]).all()
    assert torch.isfinite(out[[0, 1, 3, 4, 5]]).all()
