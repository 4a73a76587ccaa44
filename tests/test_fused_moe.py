"""fused_moe against the independent fp32 reference on the same int8 weights."""

import pytest
import torch

import int8_moe.reference as ref
from int8_moe import ops

from moe_cases import DEVICES, make_case
from numerics import assert_moe_close, rel_err

ACTS = ["silu", "gelu", "gelu_tanh", "swigluoai"]
DTYPES = [torch.bfloat16, torch.float16, torch.float32]


def run_both(case, **kw):
    out = ops.fused_moe(*case.args(), **case.bias_kwargs(), **kw)
    cpu_args = [t.cpu() for t in case.args()]
    bias = {k: (v.cpu() if v is not None else None) for k, v in case.bias_kwargs().items()}
    kw_ref = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    return out, ref.fused_moe(*cpu_args, **bias, **kw_ref)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M", [1, 7, 64, 300])
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
def test_matches_reference_over_sizes(device, dtype, M, act_quant):
    case = make_case(M, 72, 44, 6, 2, dtype=dtype, device=device, seed=M)
    out, r = run_both(case, act_quant=act_quant)
    assert out.shape == (M, 72) and out.dtype == dtype
    assert_moe_close(out, r, dtype, act_quant)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
def test_activations_and_biases(device, activation, bias, act_quant):
    case = make_case(33, 40, 27, 4, 2, device=device, bias=bias, seed=5)
    out, r = run_both(case, activation=activation, act_quant=act_quant)
    assert_moe_close(out, r, torch.bfloat16, act_quant)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(1, 17, 5, 3, 1), (5, 129, 65, 9, 4), (3, 8, 1, 2, 2)])
def test_odd_shapes(device, shape):
    M, H, I, E, k = shape
    case = make_case(M, H, I, E, k, device=device, seed=11)
    out, r = run_both(case)
    assert_moe_close(out, r, torch.bfloat16)


@pytest.mark.parametrize("device", DEVICES)
def test_swiglu_parameters_are_used(device):
    case = make_case(16, 32, 24, 4, 2, device=device, bias=True, seed=3)
    kw = dict(activation="swigluoai", swiglu_alpha=1.0, swiglu_limit=0.5)
    out, r = run_both(case, **kw)
    assert_moe_close(out, r, torch.bfloat16)
    default = ops.fused_moe(*case.args(), **case.bias_kwargs(), activation="swigluoai")
    assert rel_err(out, default) > 0.05


@pytest.mark.parametrize("device", DEVICES)
def test_m_zero(device):
    case = make_case(0, 32, 16, 4, 2, device=device)
    out = ops.fused_moe(*case.args())
    assert out.shape == (0, 32)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_experts_and_uneven_load(device):
    # Only experts 0 and 1 of 8 get tokens.
    case = make_case(50, 48, 40, 8, 2, device=device, n_used_experts=2, seed=2)
    out, r = run_both(case)
    assert_moe_close(out, r, torch.bfloat16)


@pytest.mark.parametrize("device", DEVICES)
def test_all_tokens_on_one_expert_with_repeated_ids(device):
    case = make_case(20, 48, 40, 4, 3, device=device, n_used_experts=1, seed=4)
    assert (case.topk_ids == 0).all()
    out, r = run_both(case)
    assert_moe_close(out, r, torch.bfloat16)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("id_dtype", [torch.int32, torch.int64])
def test_out_of_range_ids_contribute_nothing(device, id_dtype):
    case = make_case(30, 40, 24, 5, 3, device=device, seed=6, id_dtype=id_dtype)
    ids = case.topk_ids.clone()
    ids[::3, 0] = -1
    ids[1::3, 1] = 5  # == E
    ids[2::3, 2] = 1 << 30
    case.topk_ids = ids
    out, r = run_both(case)
    assert_moe_close(out, r, torch.bfloat16)
    # Same as zeroing those slots' weights and pointing them at a valid expert.
    bad = (ids < 0) | (ids >= 5)
    case2 = make_case(30, 40, 24, 5, 3, device=device, seed=6, id_dtype=id_dtype)
    case2.topk_ids = torch.where(bad, torch.zeros_like(ids), ids)
    case2.topk_weights = torch.where(bad, torch.zeros_like(case2.topk_weights), case2.topk_weights)
    assert_moe_close(out, ops.fused_moe(*case2.args()), torch.bfloat16)


@pytest.mark.parametrize("device", DEVICES)
def test_expert_map(device):
    # 10 global experts, this rank holds global 2, 5, 7, 9 as local 0..3.
    E_global, local = 10, [2, 5, 7, 9]
    case = make_case(40, 40, 24, len(local), 3, device=device, seed=7)
    g = torch.Generator().manual_seed(0)
    case.topk_ids = torch.stack([torch.randperm(E_global, generator=g)[:3] for _ in range(40)])
    case.topk_ids = case.topk_ids.to(torch.int32).to(device)
    emap = torch.full((E_global,), -1, dtype=torch.int32)
    emap[local] = torch.arange(len(local), dtype=torch.int32)
    emap = emap.to(device)
    out, r = run_both(case, expert_map=emap)
    assert_moe_close(out, r, torch.bfloat16)
    # Tokens routed only to other ranks' experts get exactly zero.
    off_rank = ~torch.isin(case.topk_ids.cpu(), torch.tensor(local)).any(-1)
    assert off_rank.any()
    assert (out.cpu()[off_rank] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_expert_map_entries_out_of_range_are_ignored(device):
    case = make_case(12, 32, 16, 3, 2, device=device, seed=8)
    emap = torch.tensor([0, 1, 2, 3, -5, 99], dtype=torch.int32, device=device)  # 3, -5, 99 bad
    case.topk_ids = torch.randint(0, 6, (12, 2), dtype=torch.int32).to(device)
    out, r = run_both(case, expert_map=emap)
    assert_moe_close(out, r, torch.bfloat16)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
def test_apply_router_weight_on_input(device, act_quant):
    case = make_case(25, 40, 24, 4, 1, device=device, seed=9)
    case.topk_weights = torch.rand(25, 1).to(device) + 0.5
    out, r = run_both(case, apply_router_weight_on_input=True, act_quant=act_quant)
    assert_moe_close(out, r, torch.bfloat16, act_quant)
    plain = ops.fused_moe(*case.args(), act_quant=act_quant)
    assert rel_err(out, plain) > 1e-2  # the option changes the result (silu is not linear)


@pytest.mark.parametrize("device", DEVICES)
def test_out_variant_writes_every_element(device):
    case = make_case(19, 40, 24, 4, 2, device=device, seed=10)
    out = torch.full((19, 40), float("nan"), dtype=torch.bfloat16, device=device)
    ret = ops.fused_moe(*case.args(), out=out)
    assert ret.data_ptr() == out.data_ptr()
    assert torch.isfinite(out).all()
    assert torch.equal(out, ops.fused_moe(*case.args()))


@pytest.mark.parametrize("device", DEVICES)
def test_zero_token_rows_give_zero_output(device):
    case = make_case(9, 32, 16, 3, 2, device=device, seed=12)
    case.x[4] = 0
    out = ops.fused_moe(*case.args())
    assert (out[4] == 0).all() and out[3].abs().sum() > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act_quant", ["none", "per_token"])
def test_deterministic(device, act_quant):
    case = make_case(200, 64, 48, 8, 4, device=device, seed=13)
    first = ops.fused_moe(*case.args(), act_quant=act_quant)
    for _ in range(3):
        assert torch.equal(first, ops.fused_moe(*case.args(), act_quant=act_quant))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])  # CUDA: CUDA cores, int8 MMA
def test_w8a8_int32_accumulation_is_exact(monkeypatch, device, dtype):
    """W8A8 GEMM2 sums reach ~2.6e7 > 2^24, where fp32 accumulation would round: the output
    must equal fp32(exact integer sum) * a_scale bit for bit.

    Inputs are built so every step before GEMM2 is exact or a single IEEE operation: integer x
    with amax 127 (activation scale 1), integer weights, a power-of-two w13 scale, gates so
    large that silu(g) == g, and the intermediate's one rounding to the activation dtype.
    (CUDA: GEMM2 in one K slice; a split one rounds each slice's partial row, which
    test_fused_moe_cuda.py's family test checks.)
    """
    monkeypatch.setenv("INT8_MOE_DECODE_SPLITK", "1")
    H, I = 256, 2048
    g = torch.Generator().manual_seed(0)
    x = torch.randint(100, 128, (1, H), generator=g).float()
    x[0, 0] = 127
    w1 = torch.randint(100, 128, (1, 2 * I, H), generator=g).to(torch.int8)
    s1 = torch.full((1, 2 * I), 1.0 / 4096)
    w2 = torch.randint(100, 128, (1, H, I), generator=g).to(torch.int8)
    s2 = torch.ones(1, H)
    ids = torch.zeros(1, 1, dtype=torch.int32)
    tw = torch.ones(1, 1)
    out = ops.fused_moe(x.to(device, dtype), *(t.to(device) for t in (w1, w2, s1, s2, tw, ids)),
                        act_quant="per_token").cpu()

    h = (x.long() @ w1[0].long().T).float() * (1.0 / 4096)  # exact integer acc, one rounding
    assert h.min() > 100  # silu(g) == g in fp32
    a = (h[:, :I] * h[:, I:]).to(dtype)  # the intermediate is held in the activation dtype
    aq, a_scale = ref.quantize_activation_per_token(a)
    acc2 = aq.long() @ w2[0].long().T  # exact
    assert acc2.min() > 2**24
    expected = acc2.float() * a_scale
    assert torch.equal(out, expected.to(dtype))  # one rounding to the output dtype
    # The test can tell: sequential fp32 accumulation lands elsewhere in some columns.
    fp32_acc = torch.zeros(H)
    for i in range(I):  # sequential fp32 accumulation over the reduction dim
        fp32_acc += aq[0, i] * w2[0, :, i].float()
    assert not torch.equal(fp32_acc * a_scale[0], expected[0])
