// Every wgmma kernel the library builds (bf16 and fp16 activations; W8A16 and W8A8; GEMM1 and
// GEMM2; each tile width, warpgroup count and main loop the launcher reaches), compiled for
// sm_90a by tests/test_cuda_compile.py, which reads ptxas's register counts: each kernel must
// keep the CTAs per SM its shared memory allows (an instance 10 registers over 128 at 128 routes
// per tile runs one CTA per SM and took 1.2-1.4x the time; benchmarks/NOTES.md, variant 49).
#include "cuda/gemm_instances.cuh"

namespace int8_moe {
INT8_MOE_WGMMA_LAUNCHER(, __nv_bfloat16, __nv_bfloat16, true)
INT8_MOE_WGMMA_LAUNCHER(, __nv_bfloat16, __nv_bfloat16, false)
INT8_MOE_WGMMA_LAUNCHER(, __half, __half, true)
INT8_MOE_WGMMA_LAUNCHER(, __half, __half, false)
INT8_MOE_WGMMA_LAUNCHER(, __nv_bfloat16, int8_t, true)
INT8_MOE_WGMMA_LAUNCHER(, __nv_bfloat16, int8_t, false)
INT8_MOE_WGMMA_LAUNCHER(, __half, int8_t, true)
INT8_MOE_WGMMA_LAUNCHER(, __half, int8_t, false)
}  // namespace int8_moe
