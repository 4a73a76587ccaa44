// cp.async (sm_80+): 16-byte global -> shared copies that bypass the registers, in commit groups.
#pragma once

#include <cstdint>

namespace int8_moe {

// 16-byte global -> shared copy of which the first src_bytes (16 or 0) come from src and the rest
// are zeros (0: src is not read). On an L2 miss the whole 128-byte line comes from DRAM (the
// L2::128B prefetch size): a weight row's 64-byte piece of a W8A16 chunk brings the next chunk's
// (NOTES, variant 44).
__device__ __forceinline__ void cp_async_16_bytes(uint32_t dst, const void* src,
                                                  uint32_t src_bytes) {
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes));
}
// 16 bytes, or 16 zeros where `zero` (the ignore-src predicate: nothing read from src, though src
// stays a valid address); one copy with no size arithmetic, which the register src-size form
// costs.
__device__ __forceinline__ void cp_async_16_zfill(uint32_t dst, const void* src, bool zero) {
  asm volatile(
      "{\n .reg .pred z;\n setp.ne.b32 z, %2, 0;\n"
      " cp.async.cg.shared.global.L2::128B [%0], [%1], 16, z;\n}\n" ::"r"(dst),
      "l"(src), "r"(static_cast<uint32_t>(zero)));
}
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  cp_async_16_bytes(dst, src, valid ? 16 : 0);
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// No memory access moves across this point at compile time (the copies above are asm statements
// the compiler does not see write shared memory); no instruction is emitted.
__device__ __forceinline__ void compiler_fence() { asm volatile("" ::: "memory"); }

// The shared-state-space address of p (a pointer into shared memory), as cp.async takes it.
__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

}  // namespace int8_moe
