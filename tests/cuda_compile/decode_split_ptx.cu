// The decode GEMM's launcher for one activation type (W8A16 bf16, GEMM2), which instantiates the
// kernels with and without the K split, compiled to PTX by tests/test_cuda_compile.py: the
// unsplit kernels must not read blockIdx.z, which only the split needs (the split's code in them
// cost Qwen3-30B-A3B decode 1-5 us; benchmarks/NOTES.md, variant 26).
#include "cuda/moe_gemm_decode.cuh"

namespace int8_moe {
template cudaError_t launch_decode_gemm<__nv_bfloat16, __nv_bfloat16, false>(
    const MoeGemmArgs&, int64_t, int, int, int, int, bool, cudaStream_t);
}  // namespace int8_moe
