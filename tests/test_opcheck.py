"""torch.library.opcheck on every op and overload: schema, fake kernel, autograd registration,
and torch.compile tracing."""

import pytest
import torch

import int8_moe  # noqa: F401  (registers the ops)

from moe_cases import DEVICES, make_case

ops = torch.ops.int8_moe


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_quantize_rows(device):
    w = torch.randn(3, 17, 33, dtype=torch.bfloat16, device=device)
    amax = w.float().abs().amax(-1) * 1.5
    torch.library.opcheck(ops.quantize_rows.default, (w,))
    torch.library.opcheck(ops.quantize_rows.default, (w, amax), {"compat": True})
    q = torch.empty(3, 17, 33, dtype=torch.int8, device=device)
    s = torch.empty(3, 17, device=device)
    torch.library.opcheck(ops.quantize_rows.out, (w, None), {"q": q, "scale": s})


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_row_amax(device):
    torch.library.opcheck(ops.row_amax.default, (torch.randn(5, 7, 19, device=device),))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kw", [
    {},
    {"activation": "swigluoai", "act_quant": "per_token"},
    {"activation": "gelu_tanh", "bias": True},
])
def test_opcheck_fused_moe(device, kw):
    kw = dict(kw)
    case = make_case(9, 40, 24, 4, 2, device=device, bias=kw.pop("bias", False))
    kwargs = {**kw, **{k: v for k, v in case.bias_kwargs().items() if v is not None}}
    torch.library.opcheck(ops.fused_moe.default, case.args(), kwargs)
    out = torch.empty_like(case.x)
    torch.library.opcheck(ops.fused_moe.out, case.args(), {**kwargs, "out": out})


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph(device):
    case = make_case(6, 32, 16, 3, 2, device=device)

    def f(*args):
        return int8_moe.fused_moe(*args) * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(*case.args()), f(*case.args()))
