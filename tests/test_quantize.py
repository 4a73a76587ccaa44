"""quantize_rows and row_amax against the reference, on every device this build runs."""

import pytest
import torch

import int8_moe.reference as ref
from int8_moe import ops

from moe_cases import DEVICES

DTYPES = [torch.bfloat16, torch.float16, torch.float32]
SHAPES = [(1, 1), (7, 5), (17, 1025), (3, 33, 130), (2, 4, 8, 5137)]


def randw(shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * 0.05).to(dtype).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_quantize_matches_reference(device, dtype, shape):
    w = randw(shape, dtype, device)
    q, s = ops.quantize_rows(w)
    rq, rs = ref.quantize_rows(w.cpu())
    assert q.dtype == torch.int8 and s.dtype == torch.float32
    assert q.shape == w.shape and s.shape == w.shape[:-1]
    assert torch.equal(s.cpu(), rs)
    assert torch.equal(q.cpu(), rq)
    assert int(q.abs().max()) == 127  # every row's amax element maps to +-127
    assert int(q.min()) >= -127


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 64, 96), (3, 17, 1025), (2, 130, 7)])
def test_compat_is_bit_exact_with_original(device, dtype, shape):
    # Ties and near-ties: values on a grid make w / scale land on x.5 often.
    g = torch.Generator().manual_seed(1)
    w = (torch.randint(-300, 300, shape, generator=g) * 0.01).to(dtype)
    w[..., 0] = 2.54  # amax 2.54 -> scale 0.02
    oq, os_ = ref.original_quantize(w)
    q, s = ops.quantize_rows(w.to(device), compat=True)
    assert torch.equal(s.cpu(), os_)
    assert torch.equal(q.cpu(), oq)


@pytest.mark.parametrize("device", DEVICES)
def test_compat_differs_from_fp32_mode_somewhere(device):
    # Guards against compat silently running the default path.
    w = randw((64, 512), torch.bfloat16, device, seed=3)
    assert not torch.equal(ops.quantize_rows(w, compat=True)[1], ops.quantize_rows(w)[1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("compat", [False, True])
def test_zero_rows_get_zero_scale_and_q(device, compat):
    w = randw((6, 37), torch.bfloat16, device)
    w[2] = 0
    w[5] = 0
    q, s = ops.quantize_rows(w, compat=compat)
    assert s[2].item() == 0 and s[5].item() == 0
    assert not q[2].any() and not q[5].any()
    assert s[0].item() > 0 and q[0].abs().max().item() == 127


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("compat", [False, True])
def test_amax_override(device, compat):
    w = randw((3, 20, 45), torch.bfloat16, device)
    amax = ref.row_amax(w.cpu()).to(device) * 2  # e.g. the max over tensor-parallel shards
    q, s = ops.quantize_rows(w, amax, compat=compat)
    rq, rs = ref.quantize_rows(w.cpu(), amax.cpu(), compat=compat)
    assert torch.equal(q.cpu(), rq) and torch.equal(s.cpu(), rs)
    assert q.abs().max().item() <= 64  # half the range used


@pytest.mark.parametrize("device", DEVICES)
def test_out_variant_writes_into_views(device):
    w = randw((4, 40, 33), torch.float16, device)
    q = torch.full((4, 40, 33), 99, dtype=torch.int8, device=device)
    s = torch.full((4, 40), float("nan"), device=device)
    for e in range(4):  # one expert at a time, into slices of the stacked result
        ops.quantize_rows(w[e], out=(q[e], s[e]))
    rq, rs = ref.quantize_rows(w.cpu())
    assert torch.equal(q.cpu(), rq) and torch.equal(s.cpu(), rs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weight_raises_naming_the_row(device, bad):
    w = randw((5, 9, 16), torch.bfloat16, device)
    w[3, 4, 7] = bad
    with pytest.raises(RuntimeError, match=r"non-finite value in row 31"):
        ops.quantize_rows(w)


@pytest.mark.parametrize("device", DEVICES)
def test_bad_amax_override_raises(device):
    w = randw((4, 16), torch.float32, device)
    amax = torch.ones(4, device=device)
    amax[1] = -1
    with pytest.raises(RuntimeError, match=r"amax\[1\]"):
        ops.quantize_rows(w, amax)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [(3, 0)])
def test_row_amax_exact(device, dtype, shape):
    w = randw(shape, dtype, device)
    a = ops.row_amax(w)
    assert a.dtype == torch.float32 and a.shape == w.shape[:-1]
    assert torch.equal(a.cpu(), ref.row_amax(w.cpu()))


@pytest.mark.parametrize("device", DEVICES)
def test_row_amax_propagates_nan(device):
    w = randw((3, 100), torch.bfloat16, device)
    w[1, 50] = float("nan")
    a = ops.row_amax(w).cpu()
    assert torch.isnan(a[1]) and torch.isfinite(a[[0, 2]]).all()


@pytest.mark.parametrize("device", DEVICES)
def test_quantize_bad_inputs(device):
    w = randw((4, 16), torch.bfloat16, device)
    with pytest.raises(RuntimeError, match="w must be bfloat16, float16 or float32"):
        ops.quantize_rows(w.to(torch.int32))
    with pytest.raises(RuntimeError, match=r"w must have shape \[\.\.\., N, K\]"):
        ops.quantize_rows(w[0])
    with pytest.raises(RuntimeError, match="w must be contiguous"):
        ops.quantize_rows(randw((16, 4), torch.bfloat16, device).t())
    with pytest.raises(RuntimeError, match="amax must have shape"):
        ops.quantize_rows(w, torch.ones(5, device=device))
    with pytest.raises(RuntimeError, match="amax must be Float"):
        ops.quantize_rows(w, torch.ones(4, device=device, dtype=torch.float64))
    q = torch.empty(4, 16, dtype=torch.int8, device=device)
    with pytest.raises(RuntimeError, match="scale must have shape"):
        ops.quantize_rows(w, out=(q, torch.empty(3, device=device)))
    with pytest.raises(RuntimeError, match="q must be Char"):
        ops.quantize_rows(w, out=(q.float(), torch.empty(4, device=device)))
    with pytest.raises(RuntimeError, match="w must be bfloat16"):
        ops.row_amax(w.to(torch.int8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_mismatch_raises():
    w = randw((4, 16), torch.float32, "cuda")
    with pytest.raises(RuntimeError, match="amax is on cpu"):
        ops.quantize_rows(w, torch.ones(4))
