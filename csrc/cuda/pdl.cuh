// Programmatic dependent launch (sm_90+): a kernel launched with launch_kernel(..., pdl = true)
// may start while the kernel before it in the stream is still running, so its CTAs are resident
// (and can prefetch weights) when that kernel ends, instead of paying the launch gap after it.
//
// The discipline every kernel of a PDL chain follows:
// - pdl_wait() (griddepcontrol.wait) before touching anything the previous kernel writes or
//   reads, and on every path before the CTA exits. It returns once the previous grid has
//   completed and its writes are visible. So when any CTA of a kernel has waited, every kernel
//   before it has completed too.
// - pdl_launch_dependents() right after the wait: the next kernel may launch.
// Hence, before its wait a kernel may read what was written two or more launches earlier (its
// predecessor launched it only after waiting itself). The decode GEMMs read the routing there.
// Both instructions are no-ops for a kernel launched without the attribute, and compile to
// nothing below sm_90.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

namespace int8_moe {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asks L2 for `bytes` (a multiple of 16) at the 16-byte aligned `p`, without waiting (sm_90+;
// nothing below).
__device__ __forceinline__ void prefetch_l2(const void* p, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
  (void)p;
  (void)bytes;
#endif
}

// Launches kernel<<<grid, block, smem, stream>>>(args...), with programmatic stream
// serialization when `pdl` (only on devices of compute capability 9.0 or newer).
template <typename... Params, typename... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                          cudaStream_t stream, bool pdl, Args&&... args) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = &attr;
  config.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace int8_moe
