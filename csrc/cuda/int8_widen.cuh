// int8 -> bf16 / fp16, exact, in registers: the conversion every W8A16 kernel runs on its
// weights (byte permutes under a fixed exponent and one packed subtraction instead of int ->
// float conversions, which issue at 16 per SM per clock against 128 float adds on sm_80 - sm_90).
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
  // bf16 has 8 significant bits: 2^k + u8 does not fit, but 128 + (low 7 bits) does. With
  // q = low7 - 128 * sign bit: bf16 (0x4300 | low7) - bf16 (0x4300 | sign << 7) = (128 + low7) -
  // (128 or 256) = q, exact. A byte permute puts each byte of the pair under a 0x43 byte (one
  // 16-bit half each), a mask apiece splits off both operands, one bf16x2 subtraction: 4
  // instructions per pair (3 on the half-rate ALU pipe) against 5.5 (3.5) through fp32 magic
  // numbers (2 permutes, 2 float adds, a pack, half an xor; benchmarks/widen_variants.cu).
  const uint32_t t = __byte_perm(w, 0x43434343u, i == 0 ? 0x4140 : 0x4342);  // 0x43 b0 0x43 b1
  const uint32_t low7 = t & 0xFF7FFF7Fu;
  const uint32_t sign = t & 0xFF80FF80u;
  const __nv_bfloat162 r = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&low7),
                                   *reinterpret_cast<const __nv_bfloat162*>(&sign));
  return *reinterpret_cast<const uint32_t*>(&r);
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
