// Instantiates every framework-free CUDA launcher so that nvcc can compile (and report the
// resources of) all kernels on a machine without a CUDA build of torch. Not part of the library.
#include "cuda/quantize_kernels.cuh"

namespace int8_moe {
template void launch_quantize_rows<__nv_bfloat16, false>(const __nv_bfloat16*, const float*,
                                                         int8_t*, float*, int64_t, int64_t,
                                                         unsigned long long*, cudaStream_t);
template void launch_quantize_rows<__nv_bfloat16, true>(const __nv_bfloat16*, const float*,
                                                        int8_t*, float*, int64_t, int64_t,
                                                        unsigned long long*, cudaStream_t);
template void launch_quantize_rows<__half, false>(const __half*, const float*, int8_t*, float*,
                                                  int64_t, int64_t, unsigned long long*,
                                                  cudaStream_t);
template void launch_quantize_rows<float, false>(const float*, const float*, int8_t*, float*,
                                                 int64_t, int64_t, unsigned long long*,
                                                 cudaStream_t);
template void launch_row_amax<__nv_bfloat16>(const __nv_bfloat16*, float*, int64_t, int64_t,
                                             cudaStream_t);
template void launch_row_amax<float>(const float*, float*, int64_t, int64_t, cudaStream_t);
}  // namespace int8_moe

#include "cuda/moe_epilogue_kernels.cuh"
#include "cuda/moe_gemm_tiled.cuh"
#include "cuda/moe_routing.cuh"

namespace int8_moe {
template __global__ void moe_align_kernel<int32_t>(const int32_t*, int64_t, const int32_t*,
                                                   int64_t, int, int, int32_t*, int32_t*, int64_t,
                                                   int32_t*);
template __global__ void moe_align_warp_kernel<int64_t>(const int64_t*, int64_t, const int32_t*,
                                                        int64_t, int, int, int32_t*, int32_t*,
                                                        int64_t);
template __global__ void moe_align_count_kernel<int32_t>(const int32_t*, int64_t,
                                                         const int32_t*, int64_t, int, int64_t,
                                                         int, int32_t*, int32_t*, int64_t);
template __global__ void moe_align_scatter_kernel<int64_t>(const int64_t*, int64_t,
                                                           const int32_t*, int64_t, int, int64_t,
                                                           int, const int32_t*, const int32_t*,
                                                           int32_t*);
template __global__ void moe_gemm_simt_kernel<__nv_bfloat16, __nv_bfloat16, true, false>(MoeGemmArgs);
template __global__ void moe_gemm_simt_kernel<float, __nv_bfloat16, false, false>(MoeGemmArgs);
template __global__ void moe_gemm_simt_kernel<int8_t, __nv_bfloat16, true, true>(MoeGemmArgs);
template __global__ void moe_gemm_simt_kernel<int8_t, __nv_bfloat16, false, true>(MoeGemmArgs);
template cudaError_t launch_tiled_gemm<__nv_bfloat16, __nv_bfloat16, true>(const MoeGemmArgs&,
                                                                           int64_t, int,
                                                                           cudaStream_t);
template cudaError_t launch_tiled_gemm<__nv_bfloat16, __nv_bfloat16, false>(const MoeGemmArgs&,
                                                                            int64_t, int,
                                                                            cudaStream_t);
template cudaError_t launch_tiled_gemm<__half, __half, true>(const MoeGemmArgs&, int64_t, int,
                                                             cudaStream_t);
template cudaError_t launch_tiled_gemm<__half, __half, false>(const MoeGemmArgs&, int64_t, int,
                                                              cudaStream_t);
template cudaError_t launch_tiled_gemm<__nv_bfloat16, int8_t, true>(const MoeGemmArgs&, int64_t,
                                                                    int, cudaStream_t);
template cudaError_t launch_tiled_gemm<__nv_bfloat16, int8_t, false>(const MoeGemmArgs&, int64_t,
                                                                     int, cudaStream_t);
template __global__ void quantize_act_rows_kernel<float>(const float*, int64_t, const float*,
                                                         const int32_t*, int8_t*, float*);
template __global__ void quantize_act_rows_regs_kernel<float, 4>(const float*, int64_t,
                                                                const float*, const int32_t*,
                                                                int8_t*, float*);
template __global__ void quantize_act_rows_regs_kernel<__nv_bfloat16, 4>(
    const __nv_bfloat16*, int64_t, const float*, const int32_t*, int8_t*, float*);
template __global__ void quantize_act_rows_regs_kernel<__half, 1>(const __half*, int64_t,
                                                                  const float*, const int32_t*,
                                                                  int8_t*, float*);
template __global__ void moe_topk_sum_kernel<__nv_bfloat16, int32_t, 8>(
    const __nv_bfloat16*, const int32_t*, const int32_t*, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, __nv_bfloat16*);
template __global__ void moe_topk_sum_kernel<__nv_bfloat16, int32_t, 8, true>(
    const __nv_bfloat16*, const int32_t*, const int32_t*, int64_t, int64_t, int64_t, int64_t,
    int64_t, int64_t, __nv_bfloat16*);
template __global__ void moe_topk_sum_staged_kernel<__half, int32_t>(
    const __half*, const int32_t*, const int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t,
    __half*);
template __global__ void moe_topk_sum_staged_kernel<__nv_bfloat16, int64_t>(
    const __nv_bfloat16*, const int64_t*, const int32_t*, int64_t, int64_t, int64_t, int64_t,
    int64_t, __nv_bfloat16*);
}  // namespace int8_moe

#include "cuda/moe_gemm_decode.cuh"

namespace int8_moe {
#define INT8_MOE_DECODE(T, AT, GATED)                                                   \
  template cudaError_t launch_decode_gemm<T, AT, GATED>(const MoeGemmArgs&, int64_t, int, int, int, \
                                                        int, bool, cudaStream_t);
INT8_MOE_DECODE(__nv_bfloat16, __nv_bfloat16, true)
INT8_MOE_DECODE(__nv_bfloat16, __nv_bfloat16, false)
INT8_MOE_DECODE(__half, __half, true)
INT8_MOE_DECODE(__half, __half, false)
INT8_MOE_DECODE(__nv_bfloat16, int8_t, true)
INT8_MOE_DECODE(__nv_bfloat16, int8_t, false)
#undef INT8_MOE_DECODE
}  // namespace int8_moe

#include "cuda/moe_prefill.cuh"

namespace int8_moe {
template __global__ void gather_rows_kernel<__nv_bfloat16>(const __nv_bfloat16*, const int32_t*,
                                                           const float*, bool, int64_t, int64_t,
                                                           __nv_bfloat16*);
template __global__ void widen_int8_kernel<__nv_bfloat16>(const int8_t*, int64_t, __nv_bfloat16*);
template __global__ void gated_epilogue_kernel<__nv_bfloat16>(
    const __nv_bfloat16*, const int32_t*, const int32_t*, int, const float*,
    const __nv_bfloat16*, int64_t, Activation, float, float, __nv_bfloat16*);
template __global__ void down_epilogue_kernel<__nv_bfloat16>(
    const __nv_bfloat16*, const int32_t*, const int32_t*, int, const float*,
    const __nv_bfloat16*, const float*, bool, int64_t, __nv_bfloat16*);
}  // namespace int8_moe

// Every wgmma launcher instance the library builds (its own file: test_cuda_compile.py also
// reads their register counts).
#include "wgmma_instances.cu"
