// The expert-GEMM launchers the library runs, one list. Each (activation type T, activation
// rows AT: T for W8A16, int8_t for W8A8) has its own translation unit under
// csrc/cuda/instances/ that instantiates its decode, tiled and wgmma launchers for both GEMMs
// (GATED: GEMM1), so that the build compiles those kernels in parallel; fused_moe_cuda.cu
// declares them extern and instantiates none itself. (One translation unit held them all and
// took ~3.5 minutes alone: cicc and ptxas over every kernel, after torch's headers.)
// fp32 activations run the SIMT kernel only and have no instances here.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "moe_gemm_wgmma.cuh"  // (with moe_gemm_tiled.cuh and moe_gemm_decode.cuh)

// EXTERN: empty (the instance files' definitions) or `extern` (declarations).
#define INT8_MOE_DECODE_LAUNCHER(EXTERN, T, AT, GATED)                                          \
  EXTERN template cudaError_t launch_decode_gemm<T, AT, GATED>(                                 \
      const MoeGemmArgs&, int64_t, int, int, int, int, bool, cudaStream_t);
#define INT8_MOE_TILED_LAUNCHER(EXTERN, T, AT, GATED)                                           \
  EXTERN template cudaError_t launch_tiled_gemm<T, AT, GATED>(const MoeGemmArgs&, int64_t, int, \
                                                              cudaStream_t);
#define INT8_MOE_WGMMA_LAUNCHER(EXTERN, T, AT, GATED)                                           \
  EXTERN template cudaError_t launch_wgmma_gemm<T, AT, GATED>(                                  \
      const MoeGemmArgs&, int64_t, int, int, cudaStream_t, bool, bool, bool);
#define INT8_MOE_GEMM_LAUNCHERS(EXTERN, T, AT)  \
  INT8_MOE_DECODE_LAUNCHER(EXTERN, T, AT, true)  \
  INT8_MOE_DECODE_LAUNCHER(EXTERN, T, AT, false) \
  INT8_MOE_TILED_LAUNCHER(EXTERN, T, AT, true)   \
  INT8_MOE_TILED_LAUNCHER(EXTERN, T, AT, false)  \
  INT8_MOE_WGMMA_LAUNCHER(EXTERN, T, AT, true)   \
  INT8_MOE_WGMMA_LAUNCHER(EXTERN, T, AT, false)

// Every (T, AT) with an instance file, for the extern declarations.
#define INT8_MOE_EXTERN_GEMM_LAUNCHERS(T, AT) INT8_MOE_GEMM_LAUNCHERS(extern, T, AT)
#define INT8_MOE_FOR_EACH_GEMM_TYPES(X) \
  X(__nv_bfloat16, __nv_bfloat16)       \
  X(__nv_bfloat16, int8_t)              \
  X(__half, __half)                     \
  X(__half, int8_t)
