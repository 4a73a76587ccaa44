// int8 -> bf16 / fp16, exact, in registers: the conversion every W8A16 kernel runs on its
// weights (byte permutes onto a magic exponent and one subtraction instead of int -> float
// conversions, which issue at 16 per SM per clock against 128 float adds on sm_80 - sm_90).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace int8_moe {

// Two int8 (bytes 2i, 2i+1 of w) widened to a packed pair of T (exact).
template <typename T>
__device__ __forceinline__ uint32_t widen_pair(uint32_t w, int i);

template <>
__device__ __forceinline__ uint32_t widen_pair<__nv_bfloat16>(uint32_t w, int i) {
  // 0x4B000000 | u8 is the float 2^23 + u8; the sign flip maps int8 to u8 = q + 128.
  const uint32_t u = w ^ 0x80808080u;
  const float f0 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7650 | (2 * i))) - 8388736.0f;
  const float f1 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7650 | (2 * i + 1))) - 8388736.0f;
  const __nv_bfloat162 p = __floats2bfloat162_rn(f0, f1);
  return *reinterpret_cast<const uint32_t*>(&p);
}

template <>
__device__ __forceinline__ uint32_t widen_pair<__half>(uint32_t w, int i) {
  // 0x6400 | u8 is the half 1024 + u8: two of them in one register, minus 1152 = 1024 + 128.
  const uint32_t u = w ^ 0x80808080u;
  const uint32_t sel = i == 0 ? 0x4140 : 0x4342;  // bytes (0, 1) or (2, 3), each under 0x64
  const uint32_t h2 = __byte_perm(u, 0x64646464u, sel);
  const __half2 r =
      __hsub2(*reinterpret_cast<const __half2*>(&h2), __half2half2(__ushort_as_half(0x6480)));
  return *reinterpret_cast<const uint32_t*>(&r);
}

}  // namespace int8_moe
