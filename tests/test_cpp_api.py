"""A LibTorch consumer: find_package(Torch) + find_package(int8_moe), build examples/cpp, run its
checks through ctest (quantization and the fused forward against a dequantized LibTorch loop,
options, error messages)."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

import int8_moe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found")
def test_cpp_example_builds_links_and_passes(tmp_path):
    build = tmp_path / "build"
    prefix = f"{torch.utils.cmake_prefix_path};{int8_moe.cmake_prefix_path}"
    steps = [
        ["cmake", "-S", os.path.join(ROOT, "examples", "cpp"), "-B", str(build),
         f"-DCMAKE_PREFIX_PATH={prefix}", f"-DPython3_EXECUTABLE={sys.executable}"],
        ["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2)],
        ["ctest", "--test-dir", str(build), "--output-on-failure"],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "100% tests passed" in r.stdout


def test_cmake_prefix_path_cli():
    r = subprocess.run([sys.executable, "-m", "int8_moe", "cmake-prefix-path"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    path = r.stdout.strip()
    assert path == int8_moe.cmake_prefix_path
    assert os.path.isfile(os.path.join(path, "int8_moe", "int8_moeConfig.cmake"))
