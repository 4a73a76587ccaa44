"""The CUDA quantization passes' fast per-value rounding (quantize_activation_fast in
csrc/common/moe_math.h: a multiply by the row's 1 / scale, the exact division only near a tie;
and quantize_activation_magic, the same rounding by adding 1.5 * 2^23, falling back to
quantize_activation_fast where it says so) against quantize_activation_value, the definition,
on the host: tests/host_checks/
act_quant_fast_check.cpp over every bf16 and fp16 value within ~4700 row maxima and 50 million
random float32 ones. A margin too thin or a missing fallback makes it report mismatches (1034 at
a margin of 1e-9, 20196 without the fallback). On the GPU,
test_w8a8_int32_accumulation_is_exact_on_every_family checks a pass's output through the layer's
output against the reference's quantization bit for bit (40 rows: the block form), and
test_act_quant_kernels_agree and test_act_quant_special_rows_agree the looped, block and warp
forms against each other."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to build the host check")
def test_fast_activation_rounding_is_the_definition(tmp_path):
    exe = str(tmp_path / "act_quant_fast_check")
    subprocess.run(["g++", "-O2", "-std=c++17", "-ffp-contract=off",
                    "-I" + os.path.join(ROOT, "csrc"),
                    os.path.join(ROOT, "tests", "host_checks", "act_quant_fast_check.cpp"),
                    "-o", exe], check=True)
    run = subprocess.run([exe], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "mismatches 0" in run.stdout, run.stdout
