"""The main job, `python -m int8_moe demo`, runs and reports."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("act_quant", ["none", "per_token", "auto"])
def test_demo_runs_and_reports(act_quant):
    r = subprocess.run(
        [sys.executable, "-m", "int8_moe", "demo", "--preset", "tiny", "--tokens", "9",
         "--device", "cpu", "--reps", "1", "--act-quant", act_quant],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    for needle in ("expert weights", "quantization", "forward", "error vs bf16"):
        assert needle in r.stdout
    err = float(r.stdout.split("||int8 - bf16|| / ||bf16|| = ")[1].split()[0])
    assert 0 < err < 0.05
    assert f"act_quant={act_quant}" in r.stdout


def test_presets_listed():
    r = subprocess.run([sys.executable, "-m", "int8_moe", "presets"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "mixtral-8x7b" in r.stdout and "gpt-oss-20b" in r.stdout
