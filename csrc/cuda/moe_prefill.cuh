// Prefill path (many tokens per expert, bf16 on sm_90+): compute-bound, so the expert GEMMs go
// to the tensor-core grouped GEMM that torch ships (at::_grouped_mm) on weights widened from
// int8 to bf16 (exact, no scale) into a transient buffer; the per-row scales, biases, the
// activation and the router weights are applied by the small kernels below. Rows are the
// routes' padded sorted positions; padding rows are zero and ignored.
#pragma once

#include <cuda_runtime.h>

#include "../common/moe_math.h"
#include "cuda_types.cuh"
#include "int8_widen.cuh"
#include "perm16.cuh"

namespace int8_moe {

// a[p] = x[route / topk] (times the router weight when it applies to the input), 0 for padding.
template <typename T>
__global__ void __launch_bounds__(256)
    gather_rows_kernel(const T* __restrict__ x, const int32_t* __restrict__ sorted_routes,
                       const float* __restrict__ topk_weights, bool weight_on_input,
                       int64_t topk, int64_t H, T* __restrict__ a) {
  const int64_t p = blockIdx.x;
  const int32_t route = sorted_routes[p];
  const float w = (route >= 0 && weight_on_input) ? topk_weights[route] : 1.0f;
  const T* src = route >= 0 ? x + (route / topk) * H : nullptr;
  for (int64_t i = threadIdx.x; i < H; i += 256) {
    float v = src ? Elem<T>::to_float(src[i]) : 0.0f;
    a[p * H + i] = Elem<T>::from_float(weight_on_input ? v * w : v);
  }
}

// The wgmma GEMM1's activation rows per sorted position (INT8_MOE_WGMMA_GATHER; one TMA box per
// chunk instead of gathered token rows): dst row p = src row route / topk, 16 bytes a thread
// (row16: 16-byte pieces per row; 16-byte aligned rows), zeros for padding; with scale,
// scale_out[p] = scale[route / topk] (W8A8's per-token scales; 0 for padding). Blocks of
// positions no expert holds (block_expert < 0, BM positions each) are skipped: no GEMM reads them.
// PERM16: 2-byte elements permuted per group of 16 (perm16.cuh; row16 even), 32 bytes a thread.
template <bool PERM16>
__global__ void __launch_bounds__(256)
    gather_row_bytes_kernel(const uint4* __restrict__ src,
                            const int32_t* __restrict__ sorted_routes,
                            const int32_t* __restrict__ block_expert, int BM, int64_t topk,
                            int64_t row16, const float* __restrict__ scale,
                            uint4* __restrict__ dst, float* __restrict__ scale_out) {
  const int64_t p = blockIdx.x;
  if (block_expert[p / BM] < 0) return;
  const int32_t route = sorted_routes[p];
  const int64_t token = route < 0 ? 0 : route / topk;
  if constexpr (PERM16) {
    for (int64_t i = 2 * threadIdx.x; i < row16; i += 512) {
      uint4 lo = make_uint4(0, 0, 0, 0), hi = lo;
      if (route >= 0) {
        lo = src[token * row16 + i];
        hi = src[token * row16 + i + 1];
        perm16_words(lo, hi);
      }
      dst[p * row16 + i] = lo;
      dst[p * row16 + i + 1] = hi;
    }
  } else {
    for (int64_t i = threadIdx.x; i < row16; i += 256)
      dst[p * row16 + i] = route < 0 ? make_uint4(0, 0, 0, 0) : src[token * row16 + i];
  }
  if (scale_out != nullptr && threadIdx.x == 0) scale_out[p] = route < 0 ? 0.0f : scale[token];
}

// dst = src with 2-byte elements permuted per group of 16 (perm16.cuh), n32 groups of 32 bytes
// (16-byte aligned): the token rows a W8A16 wgmma GEMM1 with LDSM reads where it does not gather.
__global__ void __launch_bounds__(256) perm16_copy_kernel(const uint4* __restrict__ src,
                                                          int64_t n32, uint4* __restrict__ dst) {
  for (int64_t i = blockIdx.x * 256ll + threadIdx.x; i < n32; i += gridDim.x * 256ll) {
    uint4 lo = src[2 * i], hi = src[2 * i + 1];
    perm16_words(lo, hi);
    dst[2 * i] = lo;
    dst[2 * i + 1] = hi;
  }
}

// out = T(q) elementwise (exact), 16 values per 16-byte load (n16: 16-byte pieces; 16-byte
// aligned), the conversion the GEMMs use (int8_widen.cuh). Bound by DRAM: one byte read and two
// written per weight, ~2.1 TB/s on an H100 (~2 ms per Mixtral-8x7B layer), whether it converts
// this way or by int -> float conversions, one load in flight or two (benchmarks/NOTES.md,
// variant 32).
template <typename T>
__global__ void __launch_bounds__(256) widen_int8_kernel(const int8_t* __restrict__ q,
                                                         int64_t n16, T* __restrict__ out) {
  const uint4* src = reinterpret_cast<const uint4*>(q);
  uint4* dst = reinterpret_cast<uint4*>(out);
  for (int64_t i = blockIdx.x * 256ll + threadIdx.x; i < n16; i += gridDim.x * 256ll) {
    const uint4 v = __ldcs(src + i);
    dst[2 * i] = make_uint4(widen_pair<T>(v.x, 0), widen_pair<T>(v.x, 1), widen_pair<T>(v.y, 0),
                            widen_pair<T>(v.y, 1));
    dst[2 * i + 1] = make_uint4(widen_pair<T>(v.z, 0), widen_pair<T>(v.z, 1),
                                widen_pair<T>(v.w, 0), widen_pair<T>(v.w, 1));
  }
}

// inter[p, j] = act(h[p, gate] * s + b, h[p, up] * s + b) for rows holding a route, 0 for padding.
template <typename T>
__global__ void __launch_bounds__(256)
    gated_epilogue_kernel(const T* __restrict__ h, const int32_t* __restrict__ sorted_routes,
                          const int32_t* __restrict__ block_expert, int BM,
                          const float* __restrict__ scale, const T* __restrict__ bias,
                          int64_t inter, Activation act, float alpha, float limit,
                          T* __restrict__ out) {
  const int64_t p = blockIdx.x;
  if (sorted_routes[p] < 0) {  // padding row: GEMM2 reads it (and drops the result), so define it
    for (int64_t j = threadIdx.x; j < inter; j += 256) out[p * inter + j] = Elem<T>::from_float(0.0f);
    return;
  }
  const int64_t e = block_expert[p / BM];
  const T* hr = h + p * 2 * inter;
  const float* s = scale + e * 2 * inter;
  const T* b = bias ? bias + e * 2 * inter : nullptr;
  for (int64_t j = threadIdx.x; j < inter; j += 256) {
    const int64_t gr = gate_row(act, j, inter), ur = up_row(act, j, inter);
    const float g = Elem<T>::to_float(hr[gr]) * s[gr] + (b ? Elem<T>::to_float(b[gr]) : 0.0f);
    const float u = Elem<T>::to_float(hr[ur]) * s[ur] + (b ? Elem<T>::to_float(b[ur]) : 0.0f);
    out[p * inter + j] = Elem<T>::from_float(gated_activation(act, g, u, alpha, limit));
  }
}

// route_out[route, n] = (y[p, n] * s + b) * router weight, for rows holding a route.
template <typename T>
__global__ void __launch_bounds__(256)
    down_epilogue_kernel(const T* __restrict__ y, const int32_t* __restrict__ sorted_routes,
                         const int32_t* __restrict__ block_expert, int BM,
                         const float* __restrict__ scale, const T* __restrict__ bias,
                         const float* __restrict__ topk_weights, bool weight_on_out, int64_t H,
                         T* __restrict__ route_out) {
  const int64_t p = blockIdx.x;
  const int32_t route = sorted_routes[p];
  if (route < 0) return;
  const int64_t e = block_expert[p / BM];
  const float w = weight_on_out ? topk_weights[route] : 1.0f;
  for (int64_t n = threadIdx.x; n < H; n += 256) {
    const float b = bias ? Elem<T>::to_float(bias[e * H + n]) : 0.0f;
    route_out[route * H + n] =
        Elem<T>::from_float((Elem<T>::to_float(y[p * H + n]) * scale[e * H + n] + b) * w);
  }
}

}  // namespace int8_moe
