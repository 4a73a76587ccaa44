"""`Int8OnlineMoEMethod`: the online int8 lifecycle of SPEC on any fused-MoE module.

create_weights (bf16/fp16 parameters, possibly on the meta device) -> the engine loads weights ->
process_weights_after_loading (idempotent): _quantize_weights (int8 + fp32 per-row scales
replace the originals, which are released) then _setup_kernel -> apply(layer, x, topk_weights,
topk_ids).

The layer carries vLLM's fused-MoE attribute names: w13_weight [E, 2I, H], w2_weight [E, H, I],
optional w13_bias / w2_bias, num_experts, local_num_experts, activation, expert_map,
apply_router_weight_on_input. Quantization adds w13_scale [E, 2I] and w2_scale [E, H].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import ops
from .act_modes import check_layer_act_quant, resolve_act_quant

__all__ = ["Int8OnlineMoEMethod", "Int8MoEQuantConfig"]

_READY_FLAG = "_int8_moe_weights_ready"


@dataclass(frozen=True)
class Int8MoEQuantConfig:
    """What the kernel needs besides the int8 weights (vLLM: get_fused_moe_quant_config)."""

    w13_scale: Tensor
    w2_scale: Tensor
    w13_bias: Tensor | None
    w2_bias: Tensor | None
    act_quant: str


def _activation_name(layer: nn.Module) -> str:
    act = getattr(layer, "activation", "silu")
    return str(getattr(act, "value", act)).lower()  # vLLM may hold an enum


def _frozen(t: Tensor) -> nn.Parameter:
    return nn.Parameter(t, requires_grad=False)


class Int8OnlineMoEMethod:
    """Online per-channel int8 MoE method (mirrors vLLM's `Int8OnlineMoEMethod`).

    Args:
        act_quant: "none" (W8A16, the default, as the original), "per_token" (W8A8), or "auto"
            (W8A8 from a token count measured per device type, W8A16 below it; see
            `int8_moe.act_modes`).
        compat: quantize with the original vLLM arithmetic, bit for bit.
        tp_group: process group whose ranks hold row shards of w2 (tensor parallel). The w2 row
            amax is MAX-all-reduced over it before scales are formed, so a sharded model
            quantizes exactly like the unsharded one. None: no reduction.
    """

    def __init__(self, act_quant: str = "none", compat: bool = False, tp_group=None):
        self.act_quant = check_layer_act_quant(act_quant)
        self.compat = compat
        self.tp_group = tp_group

    # ---- lifecycle ---------------------------------------------------------------------

    def create_weights(
        self,
        layer: nn.Module,
        num_experts: int,
        hidden_size: int,
        intermediate_size_per_partition: int,
        params_dtype: torch.dtype,
        *,
        has_bias: bool = False,
        device: torch.device | str | None = None,
        **extra_weight_attrs,
    ) -> None:
        """Registers the unquantized parameters the engine loads into (device may be "meta")."""
        E, H, I = num_experts, hidden_size, intermediate_size_per_partition
        shapes = {"w13_weight": (E, 2 * I, H), "w2_weight": (E, H, I)}
        if has_bias:
            shapes.update(w13_bias=(E, 2 * I), w2_bias=(E, H))
        for name, shape in shapes.items():
            p = _frozen(torch.empty(shape, dtype=params_dtype, device=device))
            for k, v in extra_weight_attrs.items():
                setattr(p, k, v)
            layer.register_parameter(name, p)
        setattr(layer, _READY_FLAG, False)

    def process_weights_after_loading(self, layer: nn.Module) -> None:
        """Quantizes once; later calls do nothing (idempotent)."""
        if getattr(layer, _READY_FLAG, False):
            return
        self._quantize_weights(layer)
        self._setup_kernel(layer)
        setattr(layer, _READY_FLAG, True)

    def _quantize_weights(self, layer: nn.Module) -> None:
        """Replaces w13_weight/w2_weight by int8 and adds fp32 w13_scale/w2_scale.

        Each bf16 tensor is released as soon as its int8 copy exists, so the peak is one bf16
        tensor plus its int8 copy and scales.
        """
        for name in ("w13_weight", "w2_weight"):
            w = getattr(layer, name).data
            if w.is_meta:
                raise RuntimeError(f"{name} is still on the meta device: load weights first")
            amax = None
            if name == "w2_weight" and self._tp_world_size() > 1:
                amax = ops.row_amax(w)
                torch.distributed.all_reduce(
                    amax, op=torch.distributed.ReduceOp.MAX, group=self.tp_group
                )
            q, scale = self._quantize(name, w, amax)
            del w
            setattr(layer, name, _frozen(q))  # drops the last reference to the bf16 tensor
            layer.register_parameter(name.replace("_weight", "_scale"), _frozen(scale))

    def install_quantized(
        self, layer: nn.Module, w13: Tensor, w13_scale: Tensor, w2: Tensor, w2_scale: Tensor
    ) -> None:
        """Installs weights quantized elsewhere (e.g. expert by expert while reading a file)."""
        for name, t in (("w13_weight", w13), ("w13_scale", w13_scale), ("w2_weight", w2),
                        ("w2_scale", w2_scale)):
            setattr(layer, name, _frozen(t))
        self._setup_kernel(layer)
        setattr(layer, _READY_FLAG, True)

    def _setup_kernel(self, layer: nn.Module) -> None:
        """Validates the quantized layer and builds its quant config.

        The int8 weights keep the expert-major layout [E, ...] so an engine can move experts.
        """
        E = layer.w13_weight.shape[0]
        if layer.w2_weight.shape[0] != E or layer.w13_weight.dtype != torch.int8:
            raise RuntimeError("w13_weight/w2_weight must be int8 [E, 2I, H] / [E, H, I]")
        activation = _activation_name(layer)
        if activation not in ops.ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {ops.ACTIVATIONS}")
        layer.int8_moe_quant_config = self.get_fused_moe_quant_config(layer)

    def get_fused_moe_quant_config(self, layer: nn.Module) -> Int8MoEQuantConfig:
        return Int8MoEQuantConfig(
            w13_scale=layer.w13_scale,
            w2_scale=layer.w2_scale,
            w13_bias=getattr(layer, "w13_bias", None),
            w2_bias=getattr(layer, "w2_bias", None),
            act_quant=self.act_quant,
        )

    def apply(self, layer: nn.Module, x: Tensor, topk_weights: Tensor, topk_ids: Tensor) -> Tensor:
        """The MoE forward for x [M, H] routed by topk_weights/topk_ids [M, k]: returns [M, H]."""
        cfg: Int8MoEQuantConfig = layer.int8_moe_quant_config
        return ops.fused_moe(
            x,
            layer.w13_weight,
            layer.w2_weight,
            cfg.w13_scale,
            cfg.w2_scale,
            topk_weights,
            topk_ids,
            w13_bias=cfg.w13_bias,
            w2_bias=cfg.w2_bias,
            expert_map=getattr(layer, "expert_map", None),
            activation=_activation_name(layer),
            apply_router_weight_on_input=getattr(layer, "apply_router_weight_on_input", False),
            act_quant=resolve_act_quant(cfg.act_quant, x),
        )

    # ---- helpers -----------------------------------------------------------------------

    def _tp_world_size(self) -> int:
        dist = torch.distributed
        if self.tp_group is None or not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.tp_group)

    def _quantize(self, name: str, w: Tensor, amax: Tensor | None) -> tuple[Tensor, Tensor]:
        try:
            return ops.quantize_rows(w, amax, compat=self.compat)
        except RuntimeError as e:
            raise ValueError(f"cannot quantize {name} {tuple(w.shape)}: {e}") from e

    def _quantize_into(self, name: str, w: Tensor, q: Tensor, scale: Tensor) -> None:
        """Quantizes w into the preallocated views q/scale (e.g. one expert of a stack)."""
        try:
            ops.quantize_rows(w, compat=self.compat, out=(q, scale))
        except RuntimeError as e:
            raise ValueError(f"cannot quantize {name} {tuple(w.shape)}: {e}") from e
