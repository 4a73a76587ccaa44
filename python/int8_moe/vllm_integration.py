"""int8-moe inside vLLM: the quantization config and the fused-MoE method. Imported only when
vLLM is installed (by `vllm_plugin.register`)."""

from __future__ import annotations

from typing import Any

import torch
from vllm.model_executor.layers.fused_moe import RoutedExperts
from vllm.model_executor.layers.linear import LinearBase, UnquantizedLinearMethod
from vllm.model_executor.layers.quantization import register_quantization_config
from vllm.model_executor.layers.quantization.base_config import (
    QuantizationConfig,
    QuantizeMethodBase,
)
from vllm.model_executor.layers.quantization.online.moe_base import OnlineMoEMethodBase
from vllm.model_executor.layers.quantization.utils.quant_utils import amax_for_moe_weight_quant
from vllm.model_executor.utils import replace_parameter

from . import ops
from .act_modes import check_layer_act_quant, resolve_act_quant
from .method import _activation_name

__all__ = ["Int8MoEConfig", "Int8MoEVllmMethod", "register_quantization_configs"]


class Int8MoEVllmMethod(OnlineMoEMethodBase):
    """Online per-channel int8 MoE on int8-moe's kernels.

    Weights are created on the meta device in the checkpoint dtype (vLLM's online base), loaded,
    then quantized with `quantize_rows` (the w2 row amax MAX-all-reduced over the tensor-parallel
    group first, by vLLM's own helper) and run with `fused_moe`. Layouts stay expert-major, so
    EPLB can move experts; reloading weights re-quantizes through vLLM's online machinery.
    """

    def __init__(self, moe, act_quant: str = "none"):
        super().__init__(moe)
        self.act_quant = check_layer_act_quant(act_quant)

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        if getattr(layer, "_already_called_process_weights_after_loading", False):
            return
        w13, w2 = self.get_weights_for_quantization(layer)
        q13, s13 = ops.quantize_rows(w13)
        amax = amax_for_moe_weight_quant(ops.row_amax(w2), self.moe.tp_size)
        q2, s2 = ops.quantize_rows(w2, amax)
        del w13, w2
        replace_parameter(layer, "w13_weight", q13)
        replace_parameter(layer, "w2_weight", q2)
        replace_parameter(layer, "w13_scale", s13)
        replace_parameter(layer, "w2_scale", s2)
        self.release_requantization_source_weights(layer)
        self.moe_quant_config = self.get_fused_moe_quant_config(layer)
        layer._already_called_process_weights_after_loading = True

    def get_fused_moe_quant_config(self, layer: torch.nn.Module):
        # Our kernel reads the scales from the layer; vLLM's modular kernels are not used.
        return None

    def apply(self, layer, x, topk_weights, topk_ids, shared_experts=None,
              shared_experts_input=None):
        # Shared experts: with no modular kernel, vLLM's runner computes them itself.
        return ops.fused_moe(
            x, layer.w13_weight, layer.w2_weight, layer.w13_scale, layer.w2_scale,
            topk_weights.float(), topk_ids,
            w13_bias=getattr(layer, "w13_bias", None),
            w2_bias=getattr(layer, "w2_bias", None),
            expert_map=layer.expert_map,
            activation=_activation_name(layer),
            apply_router_weight_on_input=layer.apply_router_weight_on_input,
            act_quant=resolve_act_quant(self.act_quant, x),
        )


class Int8MoEConfig(QuantizationConfig):
    """`--quantization int8_moe`: MoE experts in int8 (online), linear layers unquantized."""

    def __init__(self) -> None:
        super().__init__()

    @classmethod
    def get_name(cls) -> str:
        return "int8_moe"

    @classmethod
    def get_supported_act_dtypes(cls) -> list[torch.dtype]:
        return [torch.bfloat16, torch.half]

    @classmethod
    def get_min_capability(cls) -> int:
        return 80

    @classmethod
    def get_config_filenames(cls) -> list[str]:
        return []  # online: nothing to read

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Int8MoEConfig:
        return cls()

    def get_quant_method(self, layer: torch.nn.Module, prefix: str) -> QuantizeMethodBase | None:
        if isinstance(layer, LinearBase):
            return UnquantizedLinearMethod()
        if isinstance(layer, RoutedExperts):
            return Int8MoEVllmMethod(layer.moe_config)
        return None


class _ExpertsInt8TakeOver(Int8MoEConfig):
    @classmethod
    def get_name(cls) -> str:
        return "experts_int8"


def register_quantization_configs(take_over_experts_int8: bool = False) -> None:
    register_quantization_config("int8_moe")(Int8MoEConfig)
    if take_over_experts_int8:
        register_quantization_config("experts_int8")(_ExpertsInt8TakeOver)
