"""Int8OnlineMoEMethod lifecycle and the standalone Int8MoE module."""

import gc
import weakref

import pytest
import torch
from torch import nn

import int8_moe.reference as ref
from int8_moe import Int8MoE, Int8OnlineMoEMethod
from int8_moe.cli import random_layer, random_routing
from int8_moe.presets import MoEShape

from moe_cases import DEVICES
from numerics import assert_moe_close, rel_err

SHAPE = MoEShape("test", 48, 40, 6, 2)


class FusedMoELayer(nn.Module):
    """The attribute names of vLLM's FusedMoE, nothing more."""

    def __init__(self, shape, method, activation="silu", has_bias=False, device=None):
        super().__init__()
        self.num_experts = self.local_num_experts = shape.experts
        self.activation = activation
        self.expert_map = None
        self.apply_router_weight_on_input = False
        self.quant_method = method
        method.create_weights(self, shape.experts, shape.hidden, shape.inter, torch.bfloat16,
                              has_bias=has_bias, device=device, weight_loader="loader-tag")


def load_random(layer, shape, device="cpu", seed=0):
    """What an engine's weight loader does: copy checkpoint tensors into the parameters."""
    w13, w2, b13, b2 = random_layer(shape, torch.bfloat16, device, seed)
    for name, t in (("w13_weight", w13), ("w2_weight", w2), ("w13_bias", b13), ("w2_bias", b2)):
        if t is not None and hasattr(layer, name):
            getattr(layer, name).data.copy_(t)
    return w13, w2, b13, b2


@pytest.mark.parametrize("device", DEVICES)
def test_lifecycle_quantizes_once_and_runs(device):
    method = Int8OnlineMoEMethod()
    layer = FusedMoELayer(SHAPE, method, device=device)
    assert layer.w13_weight.dtype == torch.bfloat16
    assert layer.w13_weight.weight_loader == "loader-tag"  # extra attrs reach the parameters
    w13, w2, _, _ = load_random(layer, SHAPE, device)
    method.process_weights_after_loading(layer)
    assert layer.w13_weight.dtype == torch.int8 and layer.w2_weight.dtype == torch.int8
    assert layer.w13_scale.shape == (6, 80) and layer.w2_scale.shape == (6, 48)
    q13 = layer.w13_weight.data.clone()
    method.process_weights_after_loading(layer)  # idempotent: no double quantization
    assert torch.equal(layer.w13_weight, q13)
    rq, rs = ref.quantize_rows(w13.cpu())
    assert torch.equal(layer.w13_weight.cpu(), rq) and torch.equal(layer.w13_scale.cpu(), rs)

    x = torch.randn(10, SHAPE.hidden, dtype=torch.bfloat16, device=device)
    tw, ids = random_routing(10, SHAPE, device)
    out = method.apply(layer, x, tw, ids)
    expected = ref.fused_moe(x.cpu(), layer.w13_weight.cpu(), layer.w2_weight.cpu(),
                             layer.w13_scale.cpu(), layer.w2_scale.cpu(), tw.cpu(), ids.cpu())
    assert_moe_close(out, expected, torch.bfloat16)
    # And close to the unquantized bf16 layer (int8 weight error only).
    dense = ref.fused_moe_dense(x.cpu(), w13.cpu(), w2.cpu(), tw.cpu(), ids.cpu())
    assert rel_err(out, dense) < 0.03
    cfg = method.get_fused_moe_quant_config(layer)
    assert cfg.w13_scale is layer.w13_scale and cfg.act_quant == "none"


def test_bf16_weights_are_released():
    method = Int8OnlineMoEMethod()
    layer = FusedMoELayer(SHAPE, method)
    load_random(layer, SHAPE)
    refs = [weakref.ref(layer.w13_weight), weakref.ref(layer.w2_weight)]
    method.process_weights_after_loading(layer)
    gc.collect()
    assert all(r() is None for r in refs), "a bf16 weight outlived its quantization"


def test_meta_device_then_load():
    method = Int8OnlineMoEMethod()
    layer = FusedMoELayer(SHAPE, method, device="meta")
    assert layer.w13_weight.is_meta
    with pytest.raises(RuntimeError, match="meta device"):
        method.process_weights_after_loading(layer)
    w13, w2, _, _ = random_layer(SHAPE, torch.bfloat16, "cpu")
    layer.w13_weight = nn.Parameter(w13, requires_grad=False)  # engine materializes, loads
    layer.w2_weight = nn.Parameter(w2, requires_grad=False)
    method.process_weights_after_loading(layer)
    assert layer.w2_weight.dtype == torch.int8


def test_non_finite_weight_error_names_the_tensor():
    method = Int8OnlineMoEMethod()
    layer = FusedMoELayer(SHAPE, method)
    load_random(layer, SHAPE)
    layer.w2_weight.data[3, 7, 2] = float("nan")
    with pytest.raises(ValueError, match=r"w2_weight.*non-finite value in row 151"):
        method.process_weights_after_loading(layer)


@pytest.mark.parametrize("act_quant", ["none", "per_token"])
def test_biases_and_swigluoai_through_the_method(act_quant):
    shape = MoEShape("oai", 40, 24, 4, 2, activation="swigluoai", bias=True)
    method = Int8OnlineMoEMethod(act_quant=act_quant)
    layer = FusedMoELayer(shape, method, activation="swigluoai", has_bias=True)
    w13, w2, b13, b2 = load_random(layer, shape)
    method.process_weights_after_loading(layer)
    x = torch.randn(12, shape.hidden, dtype=torch.bfloat16)
    tw, ids = random_routing(12, shape, "cpu")
    out = method.apply(layer, x, tw, ids)
    expected = ref.fused_moe_dense(x, w13, w2, tw, ids, w13_bias=b13, w2_bias=b2,
                                   activation="swigluoai", act_quant=act_quant)
    assert rel_err(out, expected) < 0.05


def test_compat_mode_matches_original():
    method = Int8OnlineMoEMethod(compat=True)
    layer = FusedMoELayer(SHAPE, method)
    w13, w2, _, _ = load_random(layer, SHAPE)
    method.process_weights_after_loading(layer)
    oq, os_ = ref.original_quantize(w2)
    assert torch.equal(layer.w2_weight, oq) and torch.equal(layer.w2_scale, os_)


def test_bad_act_quant_rejected():
    with pytest.raises(ValueError, match="act_quant must be one of"):
        Int8OnlineMoEMethod(act_quant="fp8")


@pytest.mark.parametrize("device", DEVICES)
def test_int8moe_from_weights(device):
    w13, w2, _, _ = random_layer(SHAPE, torch.bfloat16, device)
    m = Int8MoE.from_weights(w13.clone(), w2.clone())
    assert m.w13_weight.device.type == device and m.w13_weight.dtype == torch.int8
    x = torch.randn(5, SHAPE.hidden, dtype=torch.bfloat16, device=device)
    tw, ids = random_routing(5, SHAPE, device)
    out = m(x, tw, ids)
    assert rel_err(out, ref.fused_moe_dense(x, w13, w2, tw, ids)) < 0.03


@pytest.mark.parametrize("names", [("gate_proj", "up_proj", "down_proj"), ("w1", "w3", "w2")])
@pytest.mark.parametrize("activation", ["silu", "swigluoai"])
def test_int8moe_from_safetensors(tmp_path, names, activation):
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="safetensors not installed")
    E, H, I = 5, 40, 24
    g = torch.Generator().manual_seed(0)
    prefix = "model.layers.3.mlp.experts"
    tensors, gates, ups, downs = {}, [], [], []
    for e in range(E):
        gate = (torch.randn(I, H, generator=g) / H**0.5).bfloat16()
        up = (torch.randn(I, H, generator=g) / H**0.5).bfloat16()
        down = (torch.randn(H, I, generator=g) / I**0.5).bfloat16()
        for n, t in zip(names, (gate, up, down), strict=True):
            tensors[f"{prefix}.{e}.{n}.weight"] = t
        gates.append(gate), ups.append(up), downs.append(down)
    tensors["model.layers.3.mlp.gate.weight"] = torch.randn(E, H).bfloat16()  # router: ignored
    path = tmp_path / "moe.safetensors"
    safetensors_torch.save_file(tensors, str(path))

    m = Int8MoE.from_safetensors(str(path), prefix, activation=activation)
    assert (m.num_experts, m.hidden_size, m.intermediate_size) == (E, H, I)
    if activation == "swigluoai":  # gate/up rows interleaved
        pairs = zip(gates, ups, strict=True)
        w13 = torch.stack([torch.stack([gt, u], 1).reshape(2 * I, H) for gt, u in pairs])
    else:
        w13 = torch.stack([torch.cat([gt, u]) for gt, u in zip(gates, ups, strict=True)])
    w2 = torch.stack(downs)
    rq, rs = ref.quantize_rows(w13)
    assert torch.equal(m.w13_weight, rq) and torch.equal(m.w13_scale, rs)
    x = torch.randn(7, H, dtype=torch.bfloat16)
    tw, ids = random_routing(7, MoEShape("t", H, I, E, 2), "cpu")
    out = m(x, tw, ids)
    assert rel_err(out, ref.fused_moe_dense(x, w13, w2, tw, ids, activation=activation)) < 0.03


def test_from_safetensors_wrong_prefix(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="safetensors not installed")
    path = tmp_path / "m.safetensors"
    safetensors_torch.save_file({"a.0.gate_proj.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(KeyError, match="no expert weights under prefix 'b'"):
        Int8MoE.from_safetensors(str(path), "b")
