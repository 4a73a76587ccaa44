"""Bad inputs to fused_moe raise errors that name the argument."""

import pytest
import torch

from int8_moe import ops

from moe_cases import DEVICES, make_case


def call(case, **kw):
    args = dict(zip(["x", "w13", "w2", "w13_scale", "w2_scale", "topk_weights", "topk_ids"],
                    case.args(), strict=True))
    over = {k: kw.pop(k) for k in list(kw) if k in args}
    args.update(over)
    return ops.fused_moe(*args.values(), **kw)


@pytest.fixture(params=DEVICES)
def case(request):
    return make_case(8, 32, 16, 4, 2, device=request.param)


@pytest.mark.parametrize("override, message", [
    (lambda c: dict(x=c.x.to(torch.int32)), "x must be bfloat16, float16 or float32"),
    (lambda c: dict(x=c.x[None]), "x must be 2-D"),
    (lambda c: dict(w13=c.w13.float()), "w13 must be Char"),
    (lambda c: dict(w2=c.w2[:, :, :-1]), r"w2 must have shape \[4, 32, 16\]"),
    (lambda c: dict(w13=c.w13[:, :-1]), r"w13 must have shape \[E, 2\*I, H\]"),
    (lambda c: dict(w13=c.w13[..., :-1]), r"w13 must have shape \[E, 2\*I, H\] with H"),
    (lambda c: dict(w13_scale=c.w13_scale[:, :5]), "w13_scale must have shape"),
    (lambda c: dict(w2_scale=c.w2_scale.half()), "w2_scale must be Float"),
    (lambda c: dict(topk_ids=c.topk_ids.float()), "topk_ids must be int32 or int64"),
    (lambda c: dict(topk_ids=c.topk_ids[:-1]), r"topk_ids must have shape \[M, k\]"),
    (lambda c: dict(topk_weights=c.topk_weights[:, :1]), "topk_weights must have shape"),
    (lambda c: dict(topk_weights=c.topk_weights.half()), "topk_weights must be Float"),
    (lambda c: dict(x=c.x.t().contiguous().t()), "x must be contiguous"),
    (lambda c: dict(activation="relu"), "activation must be one of"),
    (lambda c: dict(act_quant="per_tensor"), "act_quant must be 'none' or 'per_token'"),
    (lambda c: dict(apply_router_weight_on_input=True), "needs top-k = 1"),
    (lambda c: dict(w13_bias=torch.zeros(4, 32, dtype=torch.float32, device=c.x.device)),
     "w13_bias must have x's dtype"),
    (lambda c: dict(w2_bias=torch.zeros(4, 31, dtype=c.x.dtype, device=c.x.device)),
     "w2_bias must have shape"),
    (lambda c: dict(expert_map=torch.zeros(4, dtype=torch.int64, device=c.x.device)),
     "expert_map must be Int"),
    (lambda c: dict(out=torch.empty(8, 31, dtype=c.x.dtype, device=c.x.device)),
     "out must have shape"),
    (lambda c: dict(out=torch.empty(8, 32, dtype=torch.float32, device=c.x.device)),
     "out must have x's dtype"),
    (lambda c: dict(out=c.x), "out must not share memory with x"),
])
def test_bad_argument_is_named(case, override, message):
    with pytest.raises(RuntimeError, match=message):
        call(case, **override(case))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_mismatch_is_named():
    case = make_case(8, 32, 16, 4, 2, device="cuda")
    with pytest.raises(RuntimeError, match="must be on x's device"):
        call(case, topk_ids=case.topk_ids.cpu())
    with pytest.raises(RuntimeError, match="expert_map is on cpu"):
        call(case, expert_map=torch.zeros(4, dtype=torch.int32))
