"""The vLLM plugin against the real vLLM registry: runs wherever vLLM is importable;
`scripts/test_vllm.sh` makes a throwaway environment with the real vllm package for it."""

import inspect

import pytest

from int8_moe import vllm_plugin

vllm = pytest.importorskip("vllm", reason="vLLM not importable (scripts/test_vllm.sh installs it)")
pytestmark = pytest.mark.vllm


def test_registers_config_idempotently():
    from vllm.model_executor.layers.quantization import (
        QUANTIZATION_METHODS,
        get_quantization_config,
    )

    from int8_moe.vllm_integration import Int8MoEConfig

    vllm_plugin.register()
    vllm_plugin.register()
    assert get_quantization_config("int8_moe") is Int8MoEConfig
    assert QUANTIZATION_METHODS.count("int8_moe") == 1
    cfg = Int8MoEConfig.from_config({})
    assert cfg.get_name() == "int8_moe"
    assert cfg.get_config_filenames() == []
    assert cfg.get_min_capability() == 80
    import torch

    assert cfg.get_supported_act_dtypes() == [torch.bfloat16, torch.half]


def test_method_implements_vllm_interface():
    from vllm.model_executor.layers.fused_moe import FusedMoEMethodBase
    from vllm.model_executor.layers.quantization.online.moe_base import OnlineMoEMethodBase

    from int8_moe.vllm_integration import Int8MoEVllmMethod

    assert issubclass(Int8MoEVllmMethod, OnlineMoEMethodBase)
    assert issubclass(Int8MoEVllmMethod, FusedMoEMethodBase)
    assert not inspect.isabstract(Int8MoEVllmMethod)
    assert Int8MoEVllmMethod.uses_meta_device
    params = inspect.signature(Int8MoEVllmMethod.apply).parameters
    assert list(params)[:5] == ["self", "layer", "x", "topk_weights", "topk_ids"]


def test_linear_layers_stay_unquantized():
    from vllm.model_executor.layers.linear import LinearBase, UnquantizedLinearMethod

    from int8_moe.vllm_integration import Int8MoEConfig

    linear = LinearBase.__new__(LinearBase)  # isinstance only; no distributed init needed
    assert isinstance(Int8MoEConfig().get_quant_method(linear, "model.layers.0.o_proj"),
                      UnquantizedLinearMethod)
    assert Int8MoEConfig().get_quant_method(object(), "x") is None


def test_experts_int8_take_over_is_opt_in(monkeypatch):
    from vllm.model_executor.layers.quantization import get_quantization_config

    from int8_moe.vllm_integration import register_quantization_configs

    original = get_quantization_config("experts_int8")
    assert original.__module__.startswith("vllm.")  # untouched by a plain register()
    register_quantization_configs(take_over_experts_int8=True)
    try:
        assert get_quantization_config("experts_int8").__module__ == "int8_moe.vllm_integration"
    finally:
        from vllm.model_executor.layers.quantization import register_quantization_config

        register_quantization_config("experts_int8")(original)


def test_method_quantizes_once_and_runs_our_kernel():
    """process_weights_after_loading + apply on a minimal layer, through vLLM's own helpers
    (replace_parameter, amax_for_moe_weight_quant, the requantization mixin)."""
    from types import SimpleNamespace

    import torch
    from torch import nn
    from vllm.model_executor.layers.fused_moe.activation import MoEActivation

    import int8_moe.reference as ref
    from int8_moe.vllm_integration import Int8MoEVllmMethod

    E, H, I, M, k = 4, 64, 48, 9, 2
    g = torch.Generator().manual_seed(0)
    w13 = (torch.randn(E, 2 * I, H, generator=g) / H**0.5).bfloat16()
    w2 = (torch.randn(E, H, I, generator=g) / I**0.5).bfloat16()
    layer = nn.Module()
    layer.w13_weight = nn.Parameter(w13.clone(), requires_grad=False)
    layer.w2_weight = nn.Parameter(w2.clone(), requires_grad=False)
    layer.expert_map = None
    layer.apply_router_weight_on_input = False
    layer.activation = MoEActivation.SILU
    method = Int8MoEVllmMethod(SimpleNamespace(tp_size=1))
    method.process_weights_after_loading(layer)
    method.process_weights_after_loading(layer)  # idempotent
    q13, s13 = ref.quantize_rows(w13)
    assert torch.equal(layer.w13_weight, q13) and torch.equal(layer.w13_scale, s13)
    x = torch.randn(M, H, generator=g).bfloat16()
    ids = torch.randint(0, E, (M, k), generator=g, dtype=torch.int32)
    tw = torch.rand(M, k, generator=g)
    out = method.apply(layer, x, tw, ids, None, None)
    expected = ref.fused_moe(x, layer.w13_weight, layer.w2_weight, layer.w13_scale,
                             layer.w2_scale, tw, ids)
    assert ((out.float() - expected).norm() / expected.norm()).item() < 1e-2


def test_reload_requantizes_new_weights():
    """vLLM's weight reloading hands the method fresh full-precision weights and clears the
    processed flag; the method must quantize the new weights, not keep the old int8."""
    from types import SimpleNamespace

    import torch
    from torch import nn

    import int8_moe.reference as ref
    from int8_moe.vllm_integration import Int8MoEVllmMethod

    E, H, I = 3, 32, 16
    method = Int8MoEVllmMethod(SimpleNamespace(tp_size=1))
    layer = nn.Module()
    for seed in (0, 1):  # load, then reload different weights
        g = torch.Generator().manual_seed(seed)
        w13 = torch.randn(E, 2 * I, H, generator=g).bfloat16()
        w2 = torch.randn(E, H, I, generator=g).bfloat16()
        layer.w13_weight = nn.Parameter(w13.clone(), requires_grad=False)
        layer.w2_weight = nn.Parameter(w2.clone(), requires_grad=False)
        layer._already_called_process_weights_after_loading = False
        method.process_weights_after_loading(layer)
        q2, s2 = ref.quantize_rows(w2)
        assert torch.equal(layer.w2_weight, q2) and torch.equal(layer.w2_scale, s2)
