// Per-row int8 quantization and row amax on CUDA. Framework-free: raw pointers, sizes, a stream.
//
// quantize: TPR threads share a row and hold it in registers (VPT 16-byte loads each: up to 4 in
// flight per thread, 8 for rows beyond 4096 loads), the row max is reduced, and q is computed
// from the registers and written as packed int8: one read of 2 bytes and one write of 1 byte per
// weight. Rows whose length or pointers rule out 16-byte access, or that are too long for
// registers, take a looped path that reads the row twice (the second read mostly hits L2).
//
// The row max is taken over the absolute-value *bit patterns* as unsigned integers: for IEEE
// formats that order equals the order of |x|, +inf sorts above every finite value and NaN above
// inf. So one integer max gives the amax, detects non-finite rows (max >= inf's bits) and, for
// row_amax, propagates NaN, without converting elements to float twice.
#pragma once

#include <cuda_runtime.h>

#include <tuple>

#include "../common/moe_math.h"
#include "abs_bits.cuh"
#include "cuda_types.cuh"

namespace int8_moe {

// Device-side error slots: [0] first row with a non-finite weight, [1] first row whose amax
// override is negative or non-finite. Initialized to kNoBadRow.
constexpr unsigned long long kNoBadRow = ~0ull;

// Max over the TPR consecutive threads of a row. Rows never straddle a warp boundary unless
// TPR > 32, in which case a row owns whole warps and they combine through shared memory.
template <int TPR, int THREADS>
__device__ __forceinline__ uint32_t row_max(uint32_t v) {
#pragma unroll
  for (int o = (TPR < 32 ? TPR : 32) / 2; o > 0; o /= 2)
    v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  if constexpr (TPR > 32) {
    constexpr int kWarpsPerRow = TPR / 32;
    __shared__ uint32_t warp_max[THREADS / 32];
    const int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0) warp_max[warp] = v;
    __syncthreads();
    const int first = warp - warp % kWarpsPerRow;
#pragma unroll
    for (int i = 0; i < kWarpsPerRow; ++i) v = max(v, warp_max[first + i]);
  }
  return v;
}

__device__ __forceinline__ bool amax_override_ok(float a) {
  return a >= 0.0f && a <= 3.402823466e38f;
}

__device__ __forceinline__ void report(unsigned long long* slot, int64_t row) {
  atomicMin(slot, static_cast<unsigned long long>(row));
}

template <int N>
__device__ __forceinline__ void store_streaming(Pack<int8_t, N>* dst, const Pack<int8_t, N>& v) {
  if constexpr (N == 8) {
    __stcs(reinterpret_cast<uint2*>(dst), *reinterpret_cast<const uint2*>(&v));
  } else if constexpr (N == 4) {
    __stcs(reinterpret_cast<unsigned int*>(dst), *reinterpret_cast<const unsigned int*>(&v));
  } else {
    *dst = v;
  }
}

template <typename T, bool COMPAT>
__device__ __forceinline__ float row_scale(float amax) {
  if constexpr (COMPAT) {
    return round_to<T>(round_to<T>(amax) / kInt8Max);
  } else {
    return amax / kInt8Max;
  }
}

// round_half_even(w / s) clamped, equal to quantize_weight_value, but with a multiply by the
// reciprocal: w * inv is within 2 ulp of w / s, so it rounds the same way unless it lies within
// 1e-4 of a tie (x.5); only then (or when inv overflowed) is the exact quotient computed.
__device__ __forceinline__ int8_t quantize_fast(float w, float s, float inv) {
  if (s == 0.0f) return 0;
  float y = w * inv;
  const float frac = fabsf(y - truncf(y));
  if (!(fabsf(frac - 0.5f) >= 1e-4f)) y = w / s;  // near a tie, or NaN from inv = inf
  return static_cast<int8_t>(fminf(fmaxf(rintf(y), -kInt8Max), kInt8Max));
}

template <typename T, bool COMPAT>
__device__ __forceinline__ int8_t quantize_elem(float w, float s, float inv) {
  if constexpr (COMPAT) {
    if (s == 0.0f) return 0;
    const float v = rintf(round_to<T>(w / s));
    return static_cast<int8_t>(fminf(fmaxf(v, -kInt8Max), kInt8Max));
  } else {
    return quantize_fast(w, s, inv);
  }
}

// Register-resident path: THREADS per block, TPR threads per row, VPT 16-byte loads per thread.
// Needs K % VEC == 0 and 16-byte aligned rows (VEC-byte aligned q rows).
template <typename T, int THREADS, int TPR, int VPT, bool COMPAT>
__global__ void __launch_bounds__(THREADS) quantize_rows_regs_kernel(
    const T* __restrict__ w, const float* __restrict__ amax_in, int8_t* __restrict__ q,
    float* __restrict__ scale, int64_t rows, int64_t K, unsigned long long* bad) {
  constexpr int VEC = 16 / sizeof(T);
  const int lane = threadIdx.x % TPR;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (THREADS / TPR) + threadIdx.x / TPR;
  const bool active = row < rows;  // inactive threads still join the reduction
  const int64_t nvec = K / VEC;
  const Pack<T, VEC>* wr = reinterpret_cast<const Pack<T, VEC>*>(w + row * K);

  Pack<T, VEC> buf[VPT];
  uint32_t mbits = 0;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int64_t v = static_cast<int64_t>(i) * TPR + lane;
    // Streaming loads: every byte is used once, so keep it out of the caches' way.
    if (active && v < nvec)
      *reinterpret_cast<uint4*>(&buf[i]) = __ldcs(reinterpret_cast<const uint4*>(&wr[v]));
  }
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int64_t v = static_cast<int64_t>(i) * TPR + lane;
    if (active && v < nvec) mbits = pack_abs_bits_max<T>(buf[i], mbits);
  }
  mbits = row_max<TPR, THREADS>(mbits);
  if (!active) return;
  if (lane == 0) {
    if (mbits >= AbsBits<T>::kInf) report(&bad[0], row);
    if (amax_in != nullptr && !amax_override_ok(amax_in[row])) report(&bad[1], row);
  }
  const float amax = amax_in != nullptr ? amax_in[row] : AbsBits<T>::to_float(mbits);
  const float s = row_scale<T, COMPAT>(amax);
  const float inv = 1.0f / s;
  if (lane == 0) scale[row] = s;
  Pack<int8_t, VEC>* qr = reinterpret_cast<Pack<int8_t, VEC>*>(q + row * K);
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int64_t v = static_cast<int64_t>(i) * TPR + lane;
    if (v < nvec) {
      Pack<int8_t, VEC> out;
#pragma unroll
      for (int j = 0; j < VEC; ++j)
        out.v[j] = quantize_elem<T, COMPAT>(Elem<T>::to_float(buf[i].v[j]), s, inv);
      store_streaming(&qr[v], out);
    }
  }
}

// Looped path: any K, any alignment; one block of 256 threads per row, two reads of the row.
template <typename T, bool COMPAT>
__global__ void __launch_bounds__(256) quantize_rows_looped_kernel(
    const T* __restrict__ w, const float* __restrict__ amax_in, int8_t* __restrict__ q,
    float* __restrict__ scale, int64_t K, unsigned long long* bad) {
  const int64_t row = blockIdx.x;
  const T* wr = w + row * K;
  uint32_t mbits = 0;
  for (int64_t i = threadIdx.x; i < K; i += 256) mbits = max(mbits, elem_abs_bits(wr[i]));
  mbits = row_max<256, 256>(mbits);
  if (threadIdx.x == 0) {
    if (mbits >= AbsBits<T>::kInf) report(&bad[0], row);
    if (amax_in != nullptr && !amax_override_ok(amax_in[row])) report(&bad[1], row);
  }
  const float amax = amax_in != nullptr ? amax_in[row] : AbsBits<T>::to_float(mbits);
  const float s = row_scale<T, COMPAT>(amax);
  const float inv = 1.0f / s;
  if (threadIdx.x == 0) scale[row] = s;
  int8_t* qr = q + row * K;
  for (int64_t i = threadIdx.x; i < K; i += 256)
    qr[i] = quantize_elem<T, COMPAT>(Elem<T>::to_float(wr[i]), s, inv);
}

// Row amax (NaN propagates: NaN bits sort above inf): TPR threads per row.
template <typename T, int TPR, bool VECTOR>
__global__ void __launch_bounds__(256) row_amax_kernel(const T* __restrict__ w,
                                                       float* __restrict__ amax, int64_t rows,
                                                       int64_t K) {
  const int lane = threadIdx.x % TPR;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (256 / TPR) + threadIdx.x / TPR;
  const bool active = row < rows;
  uint32_t mbits = 0;
  if (active) {
    const T* wr = w + row * K;
    if constexpr (VECTOR) {
      constexpr int VEC = 16 / sizeof(T);
      const Pack<T, VEC>* wv = reinterpret_cast<const Pack<T, VEC>*>(wr);
      for (int64_t v = lane; v < K / VEC; v += TPR) mbits = pack_abs_bits_max<T>(wv[v], mbits);
    } else {
      for (int64_t i = lane; i < K; i += TPR) mbits = max(mbits, elem_abs_bits(wr[i]));
    }
  }
  mbits = row_max<TPR, 256>(mbits);
  if (active && lane == 0) amax[row] = AbsBits<T>::to_float(mbits);
}

// ---- launchers ---------------------------------------------------------------------------

template <typename T, int THREADS, int TPR, int VPT, bool COMPAT>
void launch_regs(const T* w, const float* amax_in, int8_t* q, float* scale, int64_t rows,
                 int64_t K, unsigned long long* bad, cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>(ceil_div(rows, THREADS / TPR));
  quantize_rows_regs_kernel<T, THREADS, TPR, VPT, COMPAT>
      <<<grid, THREADS, 0, stream>>>(w, amax_in, q, scale, rows, K, bad);
}

template <typename T, bool COMPAT>
void launch_quantize_rows(const T* w, const float* amax_in, int8_t* q, float* scale, int64_t rows,
                          int64_t K, unsigned long long* bad, cudaStream_t stream) {
  constexpr int VEC = 16 / sizeof(T);
  const bool vector_ok = K % VEC == 0 && is_aligned(w, 16) && is_aligned(q, VEC);
  const int64_t nvec = K / VEC;
  // Fewest threads per row that keep <= 4 loads per thread (8 beyond 4096 loads per row): more
  // threads per row with fewer loads each measured faster than 8 loads per thread (Mixtral w13
  // 92.8% -> 99.1% of the copy floor, Qwen3 w13 90.7% -> 97.9%; benchmarks/NOTES.md,
  // quantization variant 6), and fewer than 4 slower (93.5% at 2, 74% at 1).
  const auto args = std::make_tuple(w, amax_in, q, scale, rows, K, bad, stream);
  auto go = [&](auto launcher) { std::apply(launcher, args); };
  if (!vector_ok || nvec > 1024 * 8) {
    if (rows > 0)
      quantize_rows_looped_kernel<T, COMPAT>
          <<<static_cast<unsigned>(rows), 256, 0, stream>>>(w, amax_in, q, scale, K, bad);
  } else if (nvec <= 32 * 1) {
    go(launch_regs<T, 256, 32, 1, COMPAT>);
  } else if (nvec <= 32 * 2) {
    go(launch_regs<T, 256, 32, 2, COMPAT>);
  } else if (nvec <= 32 * 4) {
    go(launch_regs<T, 256, 32, 4, COMPAT>);
  } else if (nvec <= 64 * 4) {
    go(launch_regs<T, 256, 64, 4, COMPAT>);
  } else if (nvec <= 128 * 4) {
    go(launch_regs<T, 256, 128, 4, COMPAT>);
  } else if (nvec <= 256 * 4) {
    go(launch_regs<T, 256, 256, 4, COMPAT>);
  } else if (nvec <= 512 * 4) {
    go(launch_regs<T, 512, 512, 4, COMPAT>);
  } else if (nvec <= 1024 * 4) {
    go(launch_regs<T, 1024, 1024, 4, COMPAT>);
  } else {
    go(launch_regs<T, 1024, 1024, 8, COMPAT>);
  }
}

template <typename T>
void launch_row_amax(const T* w, float* amax, int64_t rows, int64_t K, cudaStream_t stream) {
  constexpr int VEC = 16 / sizeof(T);
  const bool vector_ok = K % VEC == 0 && is_aligned(w, 16);
  const bool small = K <= 32 * VEC * 8;  // a warp per row up to 8 loads per lane
  const unsigned grid_small = static_cast<unsigned>(ceil_div(rows, 8));
  const unsigned grid_large = static_cast<unsigned>(rows);
  if (vector_ok && small) {
    row_amax_kernel<T, 32, true><<<grid_small, 256, 0, stream>>>(w, amax, rows, K);
  } else if (vector_ok) {
    row_amax_kernel<T, 256, true><<<grid_large, 256, 0, stream>>>(w, amax, rows, K);
  } else if (small) {
    row_amax_kernel<T, 32, false><<<grid_small, 256, 0, stream>>>(w, amax, rows, K);
  } else {
    row_amax_kernel<T, 256, false><<<grid_large, 256, 0, stream>>>(w, amax, rows, K);
  }
}

}  // namespace int8_moe
