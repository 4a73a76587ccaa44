"""The layer-level "auto" activation mode: W8A8 from a per-device token count, W8A16 below it."""

import pytest
import torch

from int8_moe import Int8MoE, act_modes
from int8_moe.act_modes import resolve_act_quant
from int8_moe.cli import random_layer, random_routing
from int8_moe.presets import MoEShape

from moe_cases import DEVICES

SHAPE = MoEShape("t", hidden=96, inter=80, experts=6, topk=2)


@pytest.mark.parametrize("device", DEVICES)
def test_auto_switches_at_the_device_threshold(device, monkeypatch):
    monkeypatch.setitem(act_modes.AUTO_PER_TOKEN_MIN_TOKENS, torch.device(device).type, 8)
    w13, w2, _, _ = random_layer(SHAPE, torch.bfloat16, device, 1)
    layers = {mode: Int8MoE.from_weights(w13.clone(), w2.clone(), act_quant=mode)
              for mode in ("none", "per_token", "auto")}
    for M, expected in ((1, "none"), (7, "none"), (8, "per_token"), (33, "per_token")):
        x = torch.randn(M, SHAPE.hidden, dtype=torch.bfloat16, device=device)
        tw, ids = random_routing(M, SHAPE, device, M)
        assert resolve_act_quant("auto", x) == expected
        # Bitwise the op run in the resolved mode (and not the other one).
        auto = layers["auto"](x, tw, ids)
        assert torch.equal(auto, layers[expected](x, tw, ids))
        other = "none" if expected == "per_token" else "per_token"
        assert not torch.equal(auto, layers[other](x, tw, ids))


def test_auto_without_a_threshold_is_w8a16(monkeypatch):
    monkeypatch.setitem(act_modes.AUTO_PER_TOKEN_MIN_TOKENS, "cpu", None)
    x = torch.randn(4096, 8)
    assert resolve_act_quant("auto", x) == "none"
    assert resolve_act_quant("per_token", x[:1]) == "per_token"
    assert resolve_act_quant("none", x) == "none"


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="act_quant must be one of .*'auto'.*got 'int4'"):
        Int8MoE(4, 32, 16, act_quant="int4")
