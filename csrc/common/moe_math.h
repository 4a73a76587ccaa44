// Scalar math shared by the CPU and CUDA kernels: rounding rules, the int8 quantizers and the
// gated activations. Host/device inline so both backends compute exactly the same function.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define INT8_MOE_HD __host__ __device__ __forceinline__
#else
#define INT8_MOE_HD inline
#endif

namespace int8_moe {

constexpr float kInt8Max = 127.0f;
// Floor on a per-token activation amax, so an all-zero token gets a finite scale (SPEC, W8A8).
constexpr float kActAmaxFloor = 1e-10f;

// Activation between the two GEMMs. The numeric values are part of the kernel ABI.
enum class Activation : int32_t { kSilu = 0, kGelu = 1, kGeluTanh = 2, kSwigluOai = 3 };

// Weights: round half to even (rintf in the default rounding mode), clamp to [-127, 127].
INT8_MOE_HD int8_t quantize_weight_value(float w, float scale) {
  if (scale == 0.0f) return 0;  // all-zero row: q = 0, no 0/0
  float q = rintf(w / scale);
  q = fminf(fmaxf(q, -kInt8Max), kInt8Max);
  return static_cast<int8_t>(q);
}

// Activations (W8A8): round half away from zero, clamp to [-127, 127]. scale is never 0.
INT8_MOE_HD int8_t quantize_activation_value(float x, float scale) {
  float q = roundf(x / scale);
  q = fminf(fmaxf(q, -kInt8Max), kInt8Max);
  return static_cast<int8_t>(q);
}

INT8_MOE_HD float activation_scale_from_amax(float amax) {
  return fmaxf(amax, kActAmaxFloor) / kInt8Max;
}

// quantize_activation_value(x, s) bit for bit for |x| <= the row's amax (s its scale), with
// inv = 1 / s computed once per row instead of an IEEE division and a half-away rounding per
// value. y = x * inv is within |x / s| * 2^-23 <= 1.6e-5 of x / s (|x / s| <= 127 (1 + 2^-23)),
// so rintf(y) (one instruction) is roundf(x / s) unless y lies within 1e-4 of a tie (k + 0.5);
// only there, or where y is not finite, is the exact form taken. The product is rounded on its
// own (no contraction into the subtraction), as the bound assumes.
INT8_MOE_HD int8_t quantize_activation_fast(float x, float s, float inv) {
#if defined(__CUDA_ARCH__)
  const float y = __fmul_rn(x, inv);
#else
  volatile float product = x * inv;  // (the host check, tests: no contraction either)
  const float y = product;
#endif
  const float r = rintf(y);
  if (!(fabsf(y - r) < 0.5f - 1e-4f)) return quantize_activation_value(x, s);
  return static_cast<int8_t>(fminf(fmaxf(r, -kInt8Max), kInt8Max));
}

// 1.5 * 2^23. For |y| < 2^22, y + kRoundMagic is y rounded to an integer n (to nearest, ties to
// even: rintf's n) plus kRoundMagic, exactly: bits 0x4b400000 + n, whose low byte is n as an
// int8 for |n| <= 127.
constexpr float kRoundMagic = 12582912.0f;

// quantize_activation_fast(x, s, inv) as the low byte of the returned bits, with no
// float-to-integer conversion, clamp or branch (the CUDA passes issued two quarter-rate
// conversions per value, rintf and the cast; benchmarks/NOTES.md, variant 72). Sets `exact`
// where the fast form takes the exact division (y within 1e-4 of a tie, or not finite): the
// caller then takes quantize_activation_fast for that value. Needs |x| <= the amax s came from,
// so |y| <= 127 (1 + 2^-22) and the fast form's clamp never acts (nor, here, is it needed).
INT8_MOE_HD uint32_t quantize_activation_magic(float x, float inv, bool& exact) {
#if defined(__CUDA_ARCH__)
  const float y = __fmul_rn(x, inv);
  const float t = __fadd_rn(y, kRoundMagic);
  const float r = __fsub_rn(t, kRoundMagic);
  exact |= !(fabsf(__fsub_rn(y, r)) < 0.5f - 1e-4f);
  return __float_as_uint(t);
#else
  volatile float product = x * inv;  // (the host check: each step rounded on its own)
  const float y = product;
  volatile float sum = y + kRoundMagic;
  const float t = sum;
  const float r = t - kRoundMagic;
  exact |= !(fabsf(y - r) < 0.5f - 1e-4f);
  uint32_t bits;
  std::memcpy(&bits, &t, sizeof bits);
  return bits;
#endif
}

// silu(g) * u: SPEC's default activation, on its own for epilogues that pick the activation
// once instead of per value (the wgmma GEMM1's). On the device by the approximate exponential
// and division (about 2 ulp of fp32, far below the bf16 / fp16 rounding that follows; the same
// infinities and NaNs): IEEE division's slow-path branch (FCHK, CALL in the SASS) made each
// value's chain of dependent steps run after the previous value's; without it an epilogue's
// values interleave.
INT8_MOE_HD float silu_and_mul(float g, float u) {
#if defined(__CUDA_ARCH__)
  return __fdividef(g, 1.0f + __expf(-g)) * u;
#else
  return g / (1.0f + expf(-g)) * u;
#endif
}

// act(g, u) for the gated activations of SPEC. g is the gate row, u the up row.
INT8_MOE_HD float gated_activation(Activation act, float g, float u, float alpha, float limit) {
  switch (act) {
    case Activation::kSilu:
      return silu_and_mul(g, u);
    case Activation::kGelu:
      return 0.5f * g * (1.0f + erff(g * 0.70710678118654752f)) * u;
    case Activation::kGeluTanh: {
      const float inner = 0.79788456080286536f * (g + 0.044715f * g * g * g);
      return 0.5f * g * (1.0f + tanhf(inner)) * u;
    }
    case Activation::kSwigluOai:
    default: {
      g = fminf(g, limit);
      u = fminf(fmaxf(u, -limit), limit);
      return (u + 1.0f) * g / (1.0f + expf(-alpha * g));
    }
  }
}

// Row of w13 holding the gate (resp. up) value of intermediate column j. swigluoai (gpt-oss)
// interleaves gate/up rows; every other activation stacks gate rows on top of up rows.
INT8_MOE_HD int64_t gate_row(Activation act, int64_t j, int64_t inter) {
  return act == Activation::kSwigluOai ? 2 * j : j;
}
INT8_MOE_HD int64_t up_row(Activation act, int64_t j, int64_t inter) {
  return act == Activation::kSwigluOai ? 2 * j + 1 : inter + j;
}

}  // namespace int8_moe
