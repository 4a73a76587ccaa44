"""On a machine with nvcc but no CUDA build of torch (CI, developers' CPUs): compile every CUDA
kernel for sm_80, sm_89 and sm_90a, so syntax and template errors show up before a GPU run.

The kernels are framework-free, so tests/cuda_compile/instantiate_kernels.cu instantiates them
without torch's CUDA headers (which the CPU wheel lacks in part). The bindings in csrc/cuda/*.cu
need those headers and are compiled by the real build on a GPU machine. Host-side logic shared
with the kernels (the grouped CTA order) is built by nvcc and run on the CPU.
"""

import os
import re
import shutil
import subprocess

import pytest

from int8_moe._library import has_kernel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc"
                                if os.path.exists("/usr/local/cuda/bin/nvcc") else None)


def ptx_kernels(tmp_path, source: str) -> dict[str, str]:
    """tests/cuda_compile/<source> compiled to sm_90a PTX: kernel (mangled name) -> its body."""
    ptx = tmp_path / (source + ".ptx")
    cmd = [NVCC, "-std=c++17", "-O3", "--expt-relaxed-constexpr", f"-I{ROOT}/csrc",
           "-arch=compute_90a", "-ptx", f"{ROOT}/tests/cuda_compile/{source}", "-o", str(ptx)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    entries = re.split(r"\.entry ", ptx.read_text())[1:]
    return {e.split("(")[0]: e for e in entries}


def run_host_check(tmp_path, name: str, ok_line: str) -> None:
    """tests/cuda_compile/<name>.cu built by nvcc for the host and run: it must exit 0 and print
    ok_line."""
    exe = tmp_path / name
    cmd = [NVCC, "-std=c++17", f"-I{ROOT}/csrc", f"{ROOT}/tests/cuda_compile/{name}.cu", "-o",
           str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and ok_line in r.stdout, r.stdout[-4000:]


def ptxas_report(tmp_path, source: str) -> str:
    """tests/cuda_compile/<source> compiled for sm_90a at -O3 with ptxas -v: its report
    (registers, spills and warnings per kernel, on stderr)."""
    cmd = [NVCC, "-std=c++17", "-O3", "--expt-relaxed-constexpr", f"-I{ROOT}/csrc",
           "-gencode=arch=compute_90a,code=sm_90a", "-Xptxas", "-v", "-c",
           f"{ROOT}/tests/cuda_compile/{source}", "-o", str(tmp_path / (source + ".o"))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    return r.stderr


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
@pytest.mark.skipif(has_kernel("fused_moe", "cuda"),
                    reason="this build already compiled the CUDA kernels")
def test_cuda_kernels_compile(tmp_path):
    cmd = [NVCC, "-std=c++17", "-O1", "--expt-relaxed-constexpr", f"-I{ROOT}/csrc",
           "-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_89,code=sm_89",
           "-gencode=arch=compute_90a,code=sm_90a", "-c",
           f"{ROOT}/tests/cuda_compile/instantiate_kernels.cu", "-o", str(tmp_path / "k.o")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
@pytest.mark.skipif(has_kernel("fused_moe", "cuda"),
                    reason="this build already compiled the CUDA kernels")
def test_quantize_kernel_benchmark_compiles(tmp_path):
    """benchmarks/quantize_kernel_variants.cu (a torch-free tool, built by hand) stays buildable."""
    cmd = [NVCC, "-std=c++17", "-O1", f"-I{ROOT}/csrc", "-gencode=arch=compute_90a,code=sm_90a",
           f"{ROOT}/benchmarks/quantize_kernel_variants.cu", "-o", str(tmp_path / "qkv")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
@pytest.mark.skipif(has_kernel("fused_moe", "cuda"),
                    reason="this build already compiled the CUDA kernels")
def test_widen_benchmark_compiles(tmp_path):
    """benchmarks/widen_variants.cu (a torch-free tool, built by hand) stays buildable, for sm_80
    too (bf16x2 subtraction is an fma there, native from sm_90)."""
    cmd = [NVCC, "-std=c++17", "-O1", f"-I{ROOT}/csrc", "-gencode=arch=compute_80,code=sm_80",
           "-gencode=arch=compute_90a,code=sm_90a", f"{ROOT}/benchmarks/widen_variants.cu",
           "-o", str(tmp_path / "widen")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
@pytest.mark.skipif(has_kernel("fused_moe", "cuda"),
                    reason="this build already compiled the CUDA kernels")
def test_stream_pattern_benchmark_compiles(tmp_path):
    """benchmarks/stream_pattern.cu (a torch-free tool, built by hand: the decode weight stream's
    DRAM rate by layout and L2 prefetch size) stays buildable, for sm_80 too."""
    cmd = [NVCC, "-std=c++17", "-O1", "-gencode=arch=compute_80,code=sm_80",
           "-gencode=arch=compute_90a,code=sm_90a", f"{ROOT}/benchmarks/stream_pattern.cu",
           "-o", str(tmp_path / "stream_pattern")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
def test_unsplit_decode_kernels_carry_no_split_code(tmp_path):
    """The decode GEMM2 split over K is a compile-time flag (the last template argument, SPLIT):
    only the split kernels read blockIdx.z (%ctaid.z in PTX). (scripts/ptx_compare.py compares
    every kernel with an earlier revision's.)"""
    entries = ptx_kernels(tmp_path, "decode_split_ptx.cu")
    split = {name: "%ctaid.z" in body for name, body in entries.items()
             if "moe_gemm_decode_kernel" in name}
    # Mangled template arguments end in "Lb1E" (SPLIT = true) or "Lb0E" before the parameters.
    flagged = {name: name.endswith("Lb1EEEvNS_11MoeGemmArgsE") for name in split}
    assert any(flagged.values()) and not all(flagged.values()), sorted(split)
    for name, reads_z in split.items():
        assert reads_z == flagged[name], name


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
@pytest.mark.skipif(has_kernel("fused_moe", "cuda"),
                    reason="this build already compiled the CUDA kernels")
def test_decode_kernels_do_not_spill(tmp_path):
    """Every decode-kernel instance (tests/cuda_compile/decode_instances.cu) fits its register
    bound (__launch_bounds__: 8 CTAs per SM at 8 routes per block, 64 registers) without spills
    or a stack frame: a GEMM2 quantizing its activation rows on load spilled its loop there
    (benchmarks/NOTES.md, variant 58), and the loop's bounds were set without such a check
    (variants 13 and 33)."""
    report = ptxas_report(tmp_path, "decode_instances.cu")
    props = re.findall(r"Function properties for (\w+)\n\s*(\d+) bytes stack frame, (\d+) bytes "
                       r"spill stores, (\d+) bytes spill loads", report)
    decode = [p for p in props if "moe_gemm_decode_kernel" in p[0]]
    # 2 dtypes x 2 modes x (GEMM1: 6 instances, GEMM2: 12, 5 of them split over K)
    assert len(decode) >= 72, props
    bad = [p for p in decode if p[1:] != ("0", "0", "0")]
    assert not bad, bad


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
def test_tile_order_map_is_a_bijection(tmp_path):
    """The grouped CTA order of the tiled and wgmma GEMMs (csrc/cuda/tile_order.cuh), run on the
    host: every (route block, weight tile) pair exactly once for 1-40 blocks x 1-9 tiles x every
    group size, blocks fastest inside a group."""
    run_host_check(tmp_path, "tile_order_check", "tile order: ok")


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
def test_ldsm_fragment_activation_layout(tmp_path):
    """The activation rows' permutation per 16 elements (csrc/cuda/perm16.cuh) that W8A16's
    ldmatrix fragments need, run on the host: derived from mma's fragment layout and ldmatrix's,
    inverted by perm16_position, carried out by perm16_words, a dot product unchanged."""
    run_host_check(tmp_path, "perm16_check", "perm16: ok")


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
def test_weight_loads_fetch_whole_l2_lines(tmp_path):
    """Every streaming weight load of the decode kernels (ld.global.cs) and every cp.async of
    the tiled and wgmma kernels carries the L2::128B prefetch size (benchmarks/NOTES.md, variant
    44: the W8A16 decode chains 1.5-5% faster); a plain __ldcs or cp.async would drop it
    silently."""
    families = {"moe_gemm_decode_kernel": r"ld\.global\.cs\S*",
                "moe_gemm_tiled_kernel": r"cp\.async\.cg\.shared\.global\S*",
                "moe_gemm_wgmma_kernel": r"cp\.async\.cg\.shared\.global\S*"}
    seen = set()
    for name, body in ptx_kernels(tmp_path, "weight_loads_ptx.cu").items():
        for family, pattern in families.items():
            if family not in name:
                continue
            seen.add(family)
            loads = re.findall(pattern, body)
            assert loads, f"{name}: no weight loads matched {pattern}"
            assert all(".L2::128B" in op for op in loads), (name, sorted(set(loads)))
    assert seen == set(families), seen


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
@pytest.mark.skipif(has_kernel("fused_moe", "cuda"),
                    reason="this build already compiled the CUDA kernels")
def test_wgmma_kernels_keep_their_ctas_per_sm(tmp_path):
    """Each wgmma kernel fits as many CTAs per SM in registers as its shared memory allows
    (ring slots: 3 CTAs at 64 routes per tile, 2 at 128 with 2 warpgroups, 1 at 256 or with 4):
    ptxas left free once gave instances 138 registers at 128 routes (one CTA per SM, 1.2-1.4x
    the time) and 94 at 64 (two instead of three; benchmarks/NOTES.md, variant 49). And none has
    its products serialized by ptxas."""
    report = ptxas_report(tmp_path, "wgmma_instances.cu")
    used = re.findall(r"Compiling entry function '(\w+)'.*?Used (\d+) registers", report, re.S)
    checked = 0
    for name, regs in used:
        m = re.search(r"moe_gemm_wgmma_(?:tma_)?kernel.*?Li(\d+)ELb[01]ELi(\d+)E", name)
        if not m:
            continue
        bn, wg = int(m.group(1)), int(m.group(2))
        ctas = 3 if bn == 64 else 2 if bn == 128 and wg == 2 else 1
        per_thread = -(-int(regs) // 8) * 8  # allocated per warp in 256-register units
        assert per_thread * 128 * wg * ctas <= 65536, (name, regs, ctas)
        checked += 1
    # 8 instances x (64, 128, 256 routes), + pipelined and 4-warpgroup, + the TMA-fed ones
    assert checked >= 50, used
    # ptxas serializes the asynchronous products (waits for each before the next) where it finds
    # a product's register operands rewritten while one may be in flight: a kernel that reused
    # the W8A16 fragments' registers this way once compiled with only this warning (C7513).
    assert "C7513" not in report, re.findall(r".*C7513.*", report)
