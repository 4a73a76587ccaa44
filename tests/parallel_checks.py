"""Tensor- and expert-parallel checks, run by every rank of an initialized process group:
tests/test_distributed.py (gloo, CPU processes) and scripts/multi_gpu_check.py (NCCL, GPUs).

TP: each rank holds an I-slice of every expert (w13 gate/up rows, w2 columns), so its w2 row
amax is partial; Int8OnlineMoEMethod(tp_group=...) MAX-all-reduces it, and the shards must
quantize to exactly the unsharded int8 values and scales. The all-reduced sum of the ranks'
outputs must equal the unsharded forward. EP: ranks hold disjoint experts behind expert_map;
the sum over ranks must equal the single-rank forward.
"""

import torch
import torch.distributed as dist
from torch import nn

from int8_moe import Int8MoE, Int8OnlineMoEMethod, ops
from int8_moe.cli import random_layer, random_routing
from int8_moe.presets import MoEShape

from numerics import moe_tol, rel_err

SHAPE = MoEShape("dist", 64, 96, 8, 2)


def _layer(method, w13, w2, expert_map=None):
    layer = nn.Module()
    layer.activation, layer.apply_router_weight_on_input = "silu", False
    layer.expert_map = expert_map
    layer.quant_method = method
    method.create_weights(layer, w13.shape[0], w13.shape[2], w2.shape[2], w13.dtype,
                          device=w13.device)
    layer.w13_weight.data.copy_(w13)
    layer.w2_weight.data.copy_(w2)
    method.process_weights_after_loading(layer)
    return layer


def check_parallel(mode: str, device: str) -> float:
    """Runs the TP ("tp") or EP ("ep") check on this rank; returns the relative error."""
    rank, world = dist.get_rank(), dist.get_world_size()
    w13, w2, _, _ = random_layer(SHAPE, torch.bfloat16, device, seed=0)  # same on every rank
    x = torch.randn(37, SHAPE.hidden, generator=torch.Generator().manual_seed(1)).bfloat16()
    x = x.to(device)
    tw, ids = random_routing(37, SHAPE, device, seed=2)
    full = Int8MoE.from_weights(w13.clone(), w2.clone())
    expected = full(x, tw, ids)
    I, E = SHAPE.inter, SHAPE.experts
    if mode == "tp":
        sl = slice(rank * I // world, (rank + 1) * I // world)
        w13_r = torch.cat([w13[:, :I][:, sl], w13[:, I:][:, sl]], dim=1).contiguous()
        w2_r = w2[:, :, sl].contiguous()
        method = Int8OnlineMoEMethod(tp_group=dist.group.WORLD)
        layer = _layer(method, w13_r, w2_r)
        assert torch.equal(layer.w2_weight, full.w2_weight[:, :, sl]), "w2 int8 differs"
        assert torch.equal(layer.w2_scale, full.w2_scale), "w2 scales differ"
        gate_up = torch.cat([full.w13_weight[:, :I][:, sl], full.w13_weight[:, I:][:, sl]], 1)
        assert torch.equal(layer.w13_weight, gate_up), "w13 int8 differs"
        # Without the all-reduce the shard's scales would differ (the test can fail).
        assert not torch.equal(ops.quantize_rows(w2_r)[1], full.w2_scale)
    else:
        per = E // world
        local = list(range(rank * per, (rank + 1) * per))
        emap = torch.full((E,), -1, dtype=torch.int32)
        emap[local] = torch.arange(per, dtype=torch.int32)
        emap = emap.to(device)
        layer = _layer(Int8OnlineMoEMethod(), w13[local].clone(), w2[local].clone(), emap)
    out = layer.quant_method.apply(layer, x, tw, ids).float()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    err = rel_err(out, expected)
    assert err <= moe_tol(torch.bfloat16), f"{mode} rank {rank}: relative error {err:.2e}"
    return err
