"""Build of int8-moe's op library `int8_moe._C`.

CUDA kernels are built when both a CUDA toolkit and a CUDA build of torch are present;
otherwise only the CPU kernels. Always build with `pip install --no-build-isolation -e .` so pip
uses the torch already installed (build isolation would download a fresh torch).

Environment:
  TORCH_CUDA_ARCH_LIST  architectures to build (default "8.0;8.9;9.0a": A100, L40/4090, H100/H200)
  MAX_JOBS              parallel compile jobs (read by torch.utils.cpp_extension)
  INT8_MOE_FORCE_CPU=1  build the CPU-only library even where CUDA is available
"""

import glob
import os

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError as e:  # pragma: no cover - build-time message
    raise RuntimeError(
        "int8-moe builds against the torch already installed: install torch first, then run "
        "`pip install --no-build-isolation -e .`"
    ) from e

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(ROOT, "csrc")


def sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(CSRC, pattern)))


def want_cuda():
    if os.environ.get("INT8_MOE_FORCE_CPU") == "1":
        return False
    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def extension():
    cxx_flags = ["-O3"]
    srcs = sources("*.cpp") + sources("common/*.cpp") + sources("cpu/*.cpp")
    include_dirs = [CSRC]
    # An explicit .eh_frame_hdr keeps C++ exceptions (TORCH_CHECK) unwinding through this
    # library fast and safe whatever the linker's default.
    link_args = ["-Wl,--eh-frame-hdr"]
    if not want_cuda():
        return cpp_extension.CppExtension(
            "int8_moe._C", srcs, include_dirs=include_dirs, extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_args,
        )
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;8.9;9.0a")
    nvcc_flags = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
    # The wgmma kernels exist only in sm_90a machine code; the dispatch asks for this macro. Not
    # when plain 9.0 is built too: which of the two cubins a 9.0 device loads is the driver's
    # choice, and the sm_90 one has no wgmma.
    arch_list = os.environ["TORCH_CUDA_ARCH_LIST"].replace(" ", ";").split(";")
    archs = {a.split("+")[0] for a in arch_list}  # "9.0a+PTX" counts as 9.0a
    if "9.0a" in archs and "9.0" not in archs:
        nvcc_flags.append("-DINT8_MOE_HAS_SM90A")
    return cpp_extension.CUDAExtension(
        "int8_moe._C",
        srcs + sources("cuda/*.cu") + sources("cuda/instances/*.cu"),
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags + ["-DINT8_MOE_WITH_CUDA"], "nvcc": nvcc_flags},
        extra_link_args=link_args,
    )


setup(
    name="int8-moe",
    packages=find_packages("python"),
    package_dir={"": "python"},
    # The C++ API: public header and CMake package (find_package(int8_moe)).
    package_data={"int8_moe": ["include/int8_moe/*.h", "share/cmake/int8_moe/*.cmake"]},
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
)
