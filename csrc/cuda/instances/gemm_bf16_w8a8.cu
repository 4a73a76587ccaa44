// The expert-GEMM launchers for bf16 activations, W8A8 (csrc/cuda/gemm_instances.cuh).
#include "../gemm_instances.cuh"

namespace int8_moe {
INT8_MOE_GEMM_LAUNCHERS(, __nv_bfloat16, int8_t)
}  // namespace int8_moe
