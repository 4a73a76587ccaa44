"""Random inputs for the fused-MoE tests: fresh random values, never zeros."""

from __future__ import annotations

from dataclasses import dataclass

import torch

import int8_moe.reference as ref

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@dataclass
class MoECase:
    x: torch.Tensor
    w13: torch.Tensor
    w2: torch.Tensor
    w13_scale: torch.Tensor
    w2_scale: torch.Tensor
    topk_weights: torch.Tensor
    topk_ids: torch.Tensor
    w13_bias: torch.Tensor | None = None
    w2_bias: torch.Tensor | None = None

    def args(self):
        return (self.x, self.w13, self.w2, self.w13_scale, self.w2_scale, self.topk_weights,
                self.topk_ids)

    def bias_kwargs(self):
        return dict(w13_bias=self.w13_bias, w2_bias=self.w2_bias)


def make_case(M, H, I, E, k, *, dtype=torch.bfloat16, device="cpu", bias=False, seed=0,
              n_used_experts=None, id_dtype=torch.int32) -> MoECase:
    """Weights quantized by the reference quantizer (independent of the op under test).

    n_used_experts < E leaves the other experts without tokens (empty experts).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(M, H, generator=g).to(dtype)
    w13 = torch.randn(E, 2 * I, H, generator=g) / H**0.5
    w2 = torch.randn(E, H, I, generator=g) / I**0.5
    q13, s13 = ref.quantize_rows(w13)
    q2, s2 = ref.quantize_rows(w2)
    used = n_used_experts or E
    ids = torch.stack([torch.randperm(used, generator=g)[:k] for _ in range(M)]) if M else \
        torch.empty(0, k, dtype=torch.long)
    if used < k:  # fewer experts than slots: repeat ids
        ids = torch.randint(0, used, (M, k), generator=g)
    tw = torch.rand(M, k, generator=g) + 0.1
    tw = tw / tw.sum(-1, keepdim=True)
    case = MoECase(x, q13, q2, s13, s2, tw.float(), ids.to(id_dtype))
    if bias:
        case.w13_bias = (torch.randn(E, 2 * I, generator=g) * 0.5).to(dtype)
        case.w2_bias = (torch.randn(E, H, generator=g) * 0.5).to(dtype)
    for name, t in vars(case).items():
        if t is not None:
            setattr(case, name, t.to(device))
    return case
