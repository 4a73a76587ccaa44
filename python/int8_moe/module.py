"""`Int8MoE`: a standalone int8 MoE layer for users without vLLM.

Built from bf16/fp16 tensors (`from_weights`) or from a safetensors checkpoint with per-expert
Hugging Face weights (`from_safetensors`), quantized online as it loads.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from . import ops
from .method import Int8OnlineMoEMethod

__all__ = ["Int8MoE", "EXPERT_WEIGHT_NAMES"]

# Per-expert (gate, up, down) weight names under "<prefix>.<expert>.": Qwen/DeepSeek/OLMoE
# style first, Mixtral style second.
EXPERT_WEIGHT_NAMES = (("gate_proj", "up_proj", "down_proj"), ("w1", "w3", "w2"))


class Int8MoE(nn.Module):
    """Routed experts of one MoE layer, run from int8 weights.

    forward(x [M, H], topk_weights [M, k] fp32, topk_ids [M, k] int32/int64) -> [M, H].
    The router (softmax/top-k) stays with the caller, as in vLLM.
    """

    def __init__(
        self,
        num_experts: int,
        hidden_size: int,
        intermediate_size: int,
        *,
        activation: str = "silu",
        has_bias: bool = False,
        params_dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str | None = None,
        act_quant: str = "none",
        compat: bool = False,
    ):
        super().__init__()
        if activation not in ops.ACTIVATIONS:
            raise ValueError(f"activation must be one of {ops.ACTIVATIONS}, got {activation!r}")
        self.num_experts = self.local_num_experts = num_experts
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.activation = activation
        self.expert_map: Tensor | None = None
        self.apply_router_weight_on_input = False
        self.quant_method = Int8OnlineMoEMethod(act_quant=act_quant, compat=compat)
        self.quant_method.create_weights(
            self, num_experts, hidden_size, intermediate_size, params_dtype,
            has_bias=has_bias, device=device,
        )

    @classmethod
    def from_weights(
        cls,
        w13: Tensor,
        w2: Tensor,
        *,
        w13_bias: Tensor | None = None,
        w2_bias: Tensor | None = None,
        **kwargs,
    ) -> Int8MoE:
        """Quantizes w13 [E, 2I, H] and w2 [E, H, I] (bf16/fp16/fp32). Biases: [E, 2I], [E, H].

        The given tensors are adopted, not copied, and released once quantized: pass clones
        to keep the originals.
        """
        E, two_i, H = w13.shape
        m = cls(E, H, two_i // 2, has_bias=w13_bias is not None, params_dtype=w13.dtype,
                device="meta", **kwargs)
        m.w13_weight = nn.Parameter(w13, requires_grad=False)
        m.w2_weight = nn.Parameter(w2, requires_grad=False)
        if w13_bias is not None:
            m.w13_bias = nn.Parameter(w13_bias, requires_grad=False)
            m.w2_bias = nn.Parameter(w2_bias, requires_grad=False)
        del w13, w2
        m.quant_method.process_weights_after_loading(m)
        return m

    @classmethod
    def from_safetensors(
        cls,
        path: str,
        prefix: str,
        *,
        device: torch.device | str = "cpu",
        activation: str = "silu",
        **kwargs,
    ) -> Int8MoE:
        """Loads and quantizes the experts stored as "<prefix>.<e>.<gate>.weight" etc.

        Names: gate_proj/up_proj/down_proj, or Mixtral's w1/w3/w2. Experts are read one at a
        time and quantized straight into the int8 tensors, so at most one expert's bf16 weights
        exist at once. For swigluoai the gate and up rows are interleaved as the kernel expects.
        """
        from safetensors import safe_open  # optional dependency: `pip install safetensors`

        with safe_open(path, framework="pt", device="cpu") as f:
            keys = set(f.keys())
            names = _expert_names(keys, prefix)
            pattern = re.compile(
                re.escape(prefix) + r"\.(\d+)\." + re.escape(names[0]) + r"\.weight$"
            )
            E = 1 + max(int(m.group(1)) for k in keys if (m := pattern.match(k)))

            def load(e: int, which: int) -> Tensor:
                return f.get_tensor(f"{prefix}.{e}.{names[which]}.weight").to(device)

            gate0 = load(0, 0)
            inter, H = gate0.shape
            mod = cls(E, H, inter, activation=activation, params_dtype=gate0.dtype,
                      device="meta", **kwargs)
            q13 = torch.empty(E, 2 * inter, H, dtype=torch.int8, device=device)
            s13 = torch.empty(E, 2 * inter, dtype=torch.float32, device=device)
            q2 = torch.empty(E, H, inter, dtype=torch.int8, device=device)
            s2 = torch.empty(E, H, dtype=torch.float32, device=device)
            for e in range(E):
                gate, up = load(e, 0), load(e, 1)
                if activation == "swigluoai":
                    w13_e = torch.stack([gate, up], dim=1).reshape(2 * inter, H)
                else:
                    w13_e = torch.cat([gate, up], dim=0)
                del gate, up
                mod.quant_method._quantize_into(f"{prefix}.{e} gate/up", w13_e, q13[e], s13[e])
                del w13_e
                down_name = f"{prefix}.{e}.{names[2]}"
                mod.quant_method._quantize_into(down_name, load(e, 2), q2[e], s2[e])
        mod.quant_method.install_quantized(mod, q13, s13, q2, s2)
        return mod

    def forward(self, x: Tensor, topk_weights: Tensor, topk_ids: Tensor) -> Tensor:
        return self.quant_method.apply(self, x, topk_weights, topk_ids)

    def extra_repr(self) -> str:
        return (f"num_experts={self.num_experts}, hidden_size={self.hidden_size}, "
                f"intermediate_size={self.intermediate_size}, activation={self.activation}, "
                f"act_quant={self.quant_method.act_quant}")


def _expert_names(keys: set[str], prefix: str) -> tuple[str, str, str]:
    for names in EXPERT_WEIGHT_NAMES:
        if f"{prefix}.0.{names[0]}.weight" in keys:
            return names
    raise KeyError(
        f"no expert weights under prefix {prefix!r}: expected '{prefix}.0.gate_proj.weight' "
        f"or '{prefix}.0.w1.weight'"
    )
