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
