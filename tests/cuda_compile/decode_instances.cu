// Every decode-kernel instance the launchers reach (both 16-bit activation dtypes, W8A16 and W8A8,
// GEMM1 and GEMM2, split over K or not), compiled with ptxas -v by tests/test_cuda_compile.py:
// none may spill or keep a stack frame at its register bound.
#include "cuda/moe_gemm_decode.cuh"

namespace int8_moe {
#define INT8_MOE_DECODE_LAUNCHER(T, AT, GATED)                                                 \
  template cudaError_t launch_decode_gemm<T, AT, GATED>(const MoeGemmArgs&, int64_t, int, int, \
                                                        int, int, bool, cudaStream_t);
INT8_MOE_DECODE_LAUNCHER(__nv_bfloat16, __nv_bfloat16, true)
INT8_MOE_DECODE_LAUNCHER(__nv_bfloat16, __nv_bfloat16, false)
INT8_MOE_DECODE_LAUNCHER(__nv_bfloat16, int8_t, true)
INT8_MOE_DECODE_LAUNCHER(__nv_bfloat16, int8_t, false)
INT8_MOE_DECODE_LAUNCHER(__half, __half, true)
INT8_MOE_DECODE_LAUNCHER(__half, __half, false)
INT8_MOE_DECODE_LAUNCHER(__half, int8_t, true)
INT8_MOE_DECODE_LAUNCHER(__half, int8_t, false)
#undef INT8_MOE_DECODE_LAUNCHER
}  // namespace int8_moe
