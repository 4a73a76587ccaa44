// The absolute value of bf16 / fp16 / fp32 elements as bit patterns: for IEEE formats the order
// of |x|'s bits as unsigned integers is the order of |x|, +inf sorts above every finite value and
// NaN above inf. So one integer max gives a row's amax (and flags a non-finite row) without a
// float conversion per element: the weight quantization (quantize_kernels.cuh) and the
// activation passes (moe_epilogue_kernels.cuh) take their row maxima so.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_types.cuh"

namespace int8_moe {

template <typename T>
struct AbsBits;
template <>
struct AbsBits<__nv_bfloat16> {
  static constexpr uint32_t kInf = 0x7f80u;
  static __device__ __forceinline__ float to_float(uint32_t b) { return __uint_as_float(b << 16); }
};
template <>
struct AbsBits<__half> {
  static constexpr uint32_t kInf = 0x7c00u;
  static __device__ __forceinline__ float to_float(uint32_t b) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(b)));
  }
};
template <>
struct AbsBits<float> {
  static constexpr uint32_t kInf = 0x7f800000u;
  static __device__ __forceinline__ float to_float(uint32_t b) { return __uint_as_float(b); }
};

// max |x| (as bits) over one 16-byte pack.
template <typename T>
__device__ __forceinline__ uint32_t pack_abs_bits_max(const Pack<T, 16 / sizeof(T)>& p,
                                                      uint32_t m) {
  const uint4 u = *reinterpret_cast<const uint4*>(&p);
  if constexpr (sizeof(T) == 2) {
    uint32_t m2 = __vmaxu2(__vmaxu2(u.x & 0x7fff7fffu, u.y & 0x7fff7fffu),
                           __vmaxu2(u.z & 0x7fff7fffu, u.w & 0x7fff7fffu));
    return max(m, max(m2 & 0xffffu, m2 >> 16));
  } else {
    return max(max(m, max(u.x & 0x7fffffffu, u.y & 0x7fffffffu)),
               max(u.z & 0x7fffffffu, u.w & 0x7fffffffu));
  }
}

template <typename T>
__device__ __forceinline__ uint32_t elem_abs_bits(T v) {
  if constexpr (sizeof(T) == 2) {
    return static_cast<uint32_t>(*reinterpret_cast<const unsigned short*>(&v)) & 0x7fffu;
  } else {
    return __float_as_uint(v) & 0x7fffffffu;
  }
}

}  // namespace int8_moe
