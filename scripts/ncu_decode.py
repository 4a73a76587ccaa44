"""A few eager int8 forwards of one SPEC model at one token count, for profiling under Nsight
Compute: ncu --kernel-name regex:decode python3 scripts/ncu_decode.py mixtral-8x7b 1
(decode kernels), or regex:wgmma with 1024 tokens (the prefill wgmma kernels; per_token as the
third argument for W8A8)."""

import sys

import torch

import int8_moe
from int8_moe.cli import random_routing
from int8_moe.presets import PRESETS

shape = PRESETS[sys.argv[1]]
M = int(sys.argv[2])
act_quant = sys.argv[3] if len(sys.argv) > 3 else "none"
E, H, inter = shape.experts, shape.hidden, shape.inter
w13 = torch.randint(-127, 128, (E, 2 * inter, H), dtype=torch.int8, device="cuda")
w2 = torch.randint(-127, 128, (E, H, inter), dtype=torch.int8, device="cuda")
s13 = torch.rand(E, 2 * inter, device="cuda") * 1e-3
s2 = torch.rand(E, H, device="cuda") * 1e-3
x = torch.randn(M, H, dtype=torch.bfloat16, device="cuda")
tw, ids = random_routing(M, shape, "cuda", seed=M)
for _ in range(4):
    int8_moe.fused_moe(x, w13, w2, s13, s2, tw, ids, activation=shape.activation,
                       act_quant=act_quant)
torch.cuda.synchronize()
