"""Compare the PTX of every kernel in tests/cuda_compile/instantiate_kernels.cu between a revision
and the working tree, on a machine with nvcc (no GPU needed).

For a change meant to leave some kernels alone (a feature behind a compile-time flag), this says
which kernels still compile to the same code. Register numbers, labels, parameter declarations
and parameter indices are normalized away, so a kernel that gained a parameter still counts as
the same where its instructions are; defaulted template flags added as the last template
arguments (mangled `Lb0E` each) are matched to the kernel without them. Prints one line per
kernel that differs (with its differing instruction lines) or exists on one side only, then the
counts.

python scripts/ptx_compare.py <rev> [--arch compute_90a]
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = "tests/cuda_compile/instantiate_kernels.cu"


def ptx_of(tree: str, arch: str, out: str) -> str:
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    cmd = [nvcc, "-std=c++17", "-O3", "--expt-relaxed-constexpr", f"-I{tree}/csrc",
           f"-arch={arch}", "-ptx", f"{tree}/{SOURCE}", "-o", out]
    subprocess.run(cmd, check=True)
    with open(out) as f:
        return f.read()


def kernels(ptx: str) -> dict[str, list[str]]:
    """Kernel key -> normalized instruction lines."""
    found = {}
    for m in re.finditer(r"\.entry (\S+)\(", ptx):
        name = m.group(1)
        body = ptx[m.start():ptx.index("\n}\n", m.start())]
        body = body.replace(name, "KERNEL")
        body = re.sub(r"_ZZN\S+?E(\d+\w+?)(?=[\[;,])", r"SHARED_\1", body)  # function statics
        body = re.sub(r"KERNEL_param_\d+", "KERNEL_param", body)
        body = re.sub(r"%(r|rd|f|fd|p|rs|h|hh)\d+", r"%\1", body)
        body = re.sub(r"\$L__BB\d+_\d+", "L", body)
        lines = [ln for ln in body.splitlines()
                 if not re.match(r"\s*\.(param|reg)\b", ln) and ln.strip()]
        # The template arguments end at the first "EEv" (arguments, nested name, return type);
        # trailing defaulted flags (Lb0E) are dropped so that old and new names match.
        head = name.split("EEv", 1)[0] + "E"
        found[re.sub(r"(Lb0E)+$", "", head[:-1]) + "E"] = lines
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev")
    parser.add_argument("--arch", default="compute_90a")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = os.path.join(tmp, "base")
        os.makedirs(base_tree)
        archive = subprocess.run(["git", "-C", ROOT, "archive", args.rev, "csrc", "tests"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", base_tree], input=archive, check=True)
        base = kernels(ptx_of(base_tree, args.arch, os.path.join(tmp, "base.ptx")))
        head = kernels(ptx_of(ROOT, args.arch, os.path.join(tmp, "head.ptx")))
    same = 0
    for key in sorted(base.keys() | head.keys()):
        if key not in head or key not in base:
            print(f"only in {'base' if key in base else 'head'}: {key}")
            continue
        diff = [ln for ln in difflib.unified_diff(base[key], head[key], lineterm="", n=0)
                if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
        if diff:
            print(f"differs: {key}")
            print("\n".join("    " + ln.strip() for ln in diff[:12]))
        else:
            same += 1
    print(f"{same} of {len(base)} base kernels compile to the same instructions; "
          f"{len(head.keys() - base.keys())} kernels only in the working tree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
