"""First thing a device run does: one error raised through each backend, then a tiny forward.
A crash here (rather than in the middle of pytest) points at the build, not at a test."""

import faulthandler

import torch

faulthandler.enable()
import int8_moe  # noqa: E402

for device in ("cpu", "cuda"):
    w = torch.randn(4, 64, device=device, dtype=torch.bfloat16)
    w[1, 3] = float("nan")
    try:
        int8_moe.quantize_rows(w)
    except RuntimeError as e:
        print(f"{device}: error raised as expected: {str(e).splitlines()[0]}")
print("cuda kernels:", int8_moe.cuda_available())
