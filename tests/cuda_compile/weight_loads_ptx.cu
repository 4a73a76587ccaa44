// One launcher of each weight-streaming GEMM family (decode, tiled, wgmma; W8A16 and W8A8),
// compiled to PTX by tests/test_cuda_compile.py: every weight load and cp.async must ask L2 for
// whole 128-byte lines (the L2::128B prefetch size; the W8A16 decode chains 1.5-5% faster,
// benchmarks/NOTES.md, variant 44), which a plain __ldcs or cp.async would silently drop.
#include "cuda/moe_gemm_decode.cuh"
#include "cuda/moe_gemm_tiled.cuh"
#include "cuda/moe_gemm_wgmma.cuh"

namespace int8_moe {
template cudaError_t launch_decode_gemm<__nv_bfloat16, __nv_bfloat16, true>(
    const MoeGemmArgs&, int64_t, int, int, int, int, bool, cudaStream_t);
template cudaError_t launch_decode_gemm<__nv_bfloat16, int8_t, false>(
    const MoeGemmArgs&, int64_t, int, int, int, int, bool, cudaStream_t);
template cudaError_t launch_tiled_gemm_bn<__nv_bfloat16, int8_t, 64, false>(const MoeGemmArgs&,
                                                                           int64_t, cudaStream_t);
template cudaError_t launch_wgmma_gemm<__nv_bfloat16, __nv_bfloat16, true>(
    const MoeGemmArgs&, int64_t, int, int, cudaStream_t, bool, bool, bool);
}  // namespace int8_moe
