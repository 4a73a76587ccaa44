"""Static instruction counts of the GEMM kernels' main loops, from their SASS (no GPU needed).

Compiles tests/cuda_compile/instantiate_kernels.cu (the working tree, or a revision's sources
with --rev) to an sm_90a cubin, disassembles it with cuobjdump, and prints for each kernel whose
name matches --kernels: its registers, and the longest loop that holds an MMA (the span from a
backward branch's target to the branch): its instructions and the most frequent opcodes. Counts
are static: a loop body with a branch inside counts both sides, and a loop the compiler unrolled
counts every copy (the MMA count says how many chunks one pass takes).

cuobjdump ships with the CUDA toolkit; where the toolkit has only nvcc, the wheel
`pip download nvidia-cuda-cuobjdump` (unzip it) has it: pass its path with --cuobjdump.

python scripts/sass_loops.py [--rev <rev>] [--kernels decode|wgmma|widen] [--cuobjdump PATH]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = "tests/cuda_compile/instantiate_kernels.cu"


def cubin_of(tree: str, out: str) -> None:
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    subprocess.run([nvcc, "-std=c++17", "-O3", "--expt-relaxed-constexpr", f"-I{tree}/csrc",
                    "-gencode=arch=compute_90a,code=sm_90a", "-cubin", f"{tree}/{SOURCE}",
                    "-o", out], check=True)


def registers(cuobjdump: str, cubin: str) -> dict[str, int]:
    text = subprocess.run([cuobjdump, "--dump-resource-usage", cubin], check=True,
                          capture_output=True, text=True).stdout
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"Function (\S+):\s*\n\s*REG:(\d+)", text)}


def main_loop(body: str) -> tuple[int, collections.Counter]:
    """(instructions, opcode counts) of the longest backward-branch span holding an MMA."""
    lines = []
    for ln in body.splitlines():
        m = re.search(r"/\*([0-9a-f]{4,})\*/\s+(.*?);", ln)
        if m:
            lines.append((int(m.group(1), 16), m.group(2)))
    best: list[str] = []
    for addr, text in lines:
        target = re.search(r"BRA\s.*?0x([0-9a-f]+)", text)
        if not target or int(target.group(1), 16) >= addr:
            continue
        span = [t for a, t in lines if int(target.group(1), 16) <= a <= addr]
        if any("MMA" in t for t in span) and len(span) > len(best):
            best = span
    ops = collections.Counter(re.sub(r"^@!?U?P\w+\s+", "", t).split()[0].split(".")[0]
                              for t in best)
    return len(best), ops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default=None, help="a revision's sources instead of the tree")
    parser.add_argument("--kernels", default="decode|wgmma", help="regex on kernel names")
    parser.add_argument("--cuobjdump", default=shutil.which("cuobjdump") or "cuobjdump")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = ROOT
        if args.rev:
            tree = os.path.join(tmp, "tree")
            os.makedirs(tree)
            archive = subprocess.run(["git", "-C", ROOT, "archive", args.rev, "csrc", "tests"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        cubin = os.path.join(tmp, "k.cubin")
        cubin_of(tree, cubin)
        regs = registers(args.cuobjdump, cubin)
        sass = subprocess.run([args.cuobjdump, "-sass", cubin], check=True, capture_output=True,
                              text=True).stdout
    print(f"# {args.rev or 'working tree'}: kernel | registers | main-loop instructions "
          "(MMAs) | top opcodes")
    for part in re.split(r"\n\s+Function : ", sass)[1:]:
        name = part.split("\n", 1)[0].strip()
        if not re.search(args.kernels, name):
            continue
        n, ops = main_loop(part)
        mma = sum(v for k, v in ops.items() if "MMA" in k)
        top = " ".join(f"{k}:{v}" for k, v in ops.most_common(8))
        print(f"{name} | {regs.get(name, '?')} | {n} ({mma}) | {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
