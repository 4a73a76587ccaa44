"""Routed-expert shapes of real MoE models (SPEC), plus small ones that run in seconds on a CPU."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MoEShape", "PRESETS", "TP_SPLITS"]


@dataclass(frozen=True)
class MoEShape:
    name: str
    hidden: int  # H
    inter: int  # I, per expert
    experts: int  # E
    topk: int  # k
    activation: str = "silu"
    bias: bool = False


PRESETS: dict[str, MoEShape] = {
    s.name: s
    for s in (
        # Small shapes for CPUs and tests (odd sizes on purpose).
        MoEShape("tiny", 256, 160, 8, 2),
        MoEShape("small", 1024, 704, 16, 4),
        # SPEC's model shapes.
        MoEShape("mixtral-8x7b", 4096, 14336, 8, 2),
        MoEShape("qwen3-30b-a3b", 2048, 768, 128, 8),
        MoEShape("qwen3-235b-a22b", 4096, 1536, 128, 8),
        MoEShape("deepseek-v2-lite", 2048, 1408, 64, 6),
        MoEShape("deepseek-v3", 7168, 2048, 256, 8),
        MoEShape("olmoe-1b-7b", 2048, 1024, 64, 8),
        MoEShape("gpt-oss-20b", 2880, 2880, 32, 4, activation="swigluoai", bias=True),
        MoEShape("qwen1.5-moe-a2.7b", 2048, 1408, 60, 4),
    )
}

# Intermediate sizes that tensor-parallel splits of the shapes above produce.
TP_SPLITS = (7168, 3584, 1792, 192, 96, 352, 176, 2880, 1440)
