// Per-row int8 quantization and row amax on CUDA. Framework-free: raw pointers, sizes, a stream.
//
// quantize: a row is read once into registers (16-byte loads), reduced to its amax (warp
// shuffles or a CUB block reduction), then quantized from the registers and written as packed
// int8: 2 bytes read and 1 written per weight. Rows too long for registers, or whose length or
// pointers do not allow 16-byte access, take a looped path that reads the row twice (the second
// read mostly hits L2).
#pragma once

#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>
#include <cuda/functional>

#include "../common/moe_math.h"
#include "cuda_types.cuh"

namespace int8_moe {

// Device-side error slots: [0] first row with a non-finite weight, [1] first row whose amax
// override is negative or non-finite. Initialized to kNoBadRow.
constexpr unsigned long long kNoBadRow = ~0ull;

struct NanMax {  // max that propagates NaN (row_amax)
  __device__ __forceinline__ float operator()(float a, float b) const {
    return (a > b || a != a) ? a : b;
  }
};

template <int TPR, typename Op>
__device__ __forceinline__ float row_reduce(float v, Op op) {
  // TPR threads of consecutive lanes share a row: TPR == 32 -> warp, TPR == blockDim -> block.
  if constexpr (TPR <= 32) {
#pragma unroll
    for (int o = TPR / 2; o > 0; o /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
  } else {
    using Reduce = cub::BlockReduce<float, TPR>;
    __shared__ typename Reduce::TempStorage tmp;
    __shared__ float result;
    __syncthreads();  // the shared slots may still be in use by a previous reduction
    const float r = Reduce(tmp).Reduce(v, op);
    if (threadIdx.x == 0) result = r;
    __syncthreads();
    return result;
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

template <typename T, bool COMPAT>
__device__ __forceinline__ int8_t quantize_elem(float w, float s) {
  if constexpr (COMPAT) {
    if (s == 0.0f) return 0;
    const float v = rintf(round_to<T>(w / s));
    return static_cast<int8_t>(fminf(fmaxf(v, -kInt8Max), kInt8Max));
  } else {
    return quantize_weight_value(w, s);
  }
}

// |v|, or +inf for inf and NaN: a row's max is then +inf exactly when it holds a non-finite value.
__device__ __forceinline__ float finite_abs(float v) {
  const float a = fabsf(v);
  return a <= 3.402823466e38f ? a : __int_as_float(0x7f800000);
}

// Records the row in the error slots when its weights or its amax override are unusable.
__device__ __forceinline__ void check_row(float row_max, const float* amax_in, int64_t row,
                                          unsigned long long* bad) {
  if (!(row_max <= 3.402823466e38f)) atomicMin(&bad[0], static_cast<unsigned long long>(row));
  if (amax_in != nullptr && !(amax_in[row] >= 0.0f && amax_in[row] <= 3.402823466e38f))
    atomicMin(&bad[1], static_cast<unsigned long long>(row));
}

// Register-resident path: VEC elements per 16-byte load, VPT loads per thread, TPR threads per
// row, 256 / TPR rows per block. Needs K % VEC == 0 and 16-byte aligned rows.
template <typename T, int TPR, int VPT, bool COMPAT>
__global__ void __launch_bounds__(256) quantize_rows_regs_kernel(
    const T* __restrict__ w, const float* __restrict__ amax_in, int8_t* __restrict__ q,
    float* __restrict__ scale, int64_t rows, int64_t K, unsigned long long* bad) {
  constexpr int VEC = 16 / sizeof(T);
  const int lane = threadIdx.x % TPR;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (256 / TPR) + threadIdx.x / TPR;
  const bool active = row < rows;  // inactive threads still join the reductions
  const int64_t nvec = K / VEC;
  const Pack<T, VEC>* wr = reinterpret_cast<const Pack<T, VEC>*>(w + row * K);

  Pack<T, VEC> buf[VPT];
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int64_t v = static_cast<int64_t>(i) * TPR + lane;
    if (active && v < nvec) {
      buf[i] = wr[v];
#pragma unroll
      for (int j = 0; j < VEC; ++j) amax = fmaxf(amax, finite_abs(Elem<T>::to_float(buf[i].v[j])));
    }
  }
  amax = row_reduce<TPR>(amax, cuda::maximum<float>{});
  if (!active) return;
  if (lane == 0) check_row(amax, amax_in, row, bad);
  if (amax_in != nullptr) amax = amax_in[row];
  const float s = row_scale<T, COMPAT>(amax);
  if (lane == 0) scale[row] = s;
  Pack<int8_t, VEC>* qr = reinterpret_cast<Pack<int8_t, VEC>*>(q + row * K);
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int64_t v = static_cast<int64_t>(i) * TPR + lane;
    if (v < nvec) {
      Pack<int8_t, VEC> out;
#pragma unroll
      for (int j = 0; j < VEC; ++j)
        out.v[j] = quantize_elem<T, COMPAT>(Elem<T>::to_float(buf[i].v[j]), s);
      qr[v] = out;
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
  float amax = 0.0f;
  for (int64_t i = threadIdx.x; i < K; i += 256)
    amax = fmaxf(amax, finite_abs(Elem<T>::to_float(wr[i])));
  amax = row_reduce<256>(amax, cuda::maximum<float>{});
  if (threadIdx.x == 0) check_row(amax, amax_in, row, bad);
  if (amax_in != nullptr) amax = amax_in[row];
  const float s = row_scale<T, COMPAT>(amax);
  if (threadIdx.x == 0) scale[row] = s;
  int8_t* qr = q + row * K;
  for (int64_t i = threadIdx.x; i < K; i += 256)
    qr[i] = quantize_elem<T, COMPAT>(Elem<T>::to_float(wr[i]), s);
}

// Row amax with NaN propagation: TPR threads per row, 16-byte loads when allowed.
template <typename T, int TPR, bool VECTOR>
__global__ void __launch_bounds__(256) row_amax_kernel(const T* __restrict__ w,
                                                       float* __restrict__ amax, int64_t rows,
                                                       int64_t K) {
  constexpr int VEC = VECTOR ? 16 / sizeof(T) : 1;
  const int lane = threadIdx.x % TPR;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (256 / TPR) + threadIdx.x / TPR;
  const bool active = row < rows;
  float m = 0.0f;
  if (active) {
    const Pack<T, VEC>* wr = reinterpret_cast<const Pack<T, VEC>*>(w + row * K);
    for (int64_t v = lane; v < K / VEC; v += TPR) {
      const Pack<T, VEC> p = wr[v];
#pragma unroll
      for (int j = 0; j < VEC; ++j) m = NanMax{}(fabsf(Elem<T>::to_float(p.v[j])), m);
    }
  }
  m = row_reduce<TPR>(m, NanMax{});
  if (active && lane == 0) amax[row] = m;
}

// ---- launchers ---------------------------------------------------------------------------

template <typename T, bool COMPAT>
void launch_quantize_rows(const T* w, const float* amax_in, int8_t* q, float* scale, int64_t rows,
                          int64_t K, unsigned long long* bad, cudaStream_t stream) {
  constexpr int VEC = 16 / sizeof(T);
  const bool vector_ok = K % VEC == 0 && is_aligned(w, 16) && is_aligned(q, VEC);
  const int64_t nvec = K / VEC;
#define INT8_MOE_QUANT_REGS(TPR, VPT)                                                     \
  quantize_rows_regs_kernel<T, TPR, VPT, COMPAT>                                          \
      <<<static_cast<unsigned>(ceil_div(rows, 256 / TPR)), 256, 0, stream>>>(w, amax_in, q, \
                                                                             scale, rows, K, bad)
  if (vector_ok && nvec <= 32 * 1) {
    INT8_MOE_QUANT_REGS(32, 1);
  } else if (vector_ok && nvec <= 32 * 2) {
    INT8_MOE_QUANT_REGS(32, 2);
  } else if (vector_ok && nvec <= 32 * 4) {
    INT8_MOE_QUANT_REGS(32, 4);
  } else if (vector_ok && nvec <= 256 * 1) {
    INT8_MOE_QUANT_REGS(256, 1);
  } else if (vector_ok && nvec <= 256 * 2) {
    INT8_MOE_QUANT_REGS(256, 2);
  } else if (vector_ok && nvec <= 256 * 4) {
    INT8_MOE_QUANT_REGS(256, 4);
  } else if (vector_ok && nvec <= 256 * 8) {
    INT8_MOE_QUANT_REGS(256, 8);
  } else {
    quantize_rows_looped_kernel<T, COMPAT>
        <<<static_cast<unsigned>(rows), 256, 0, stream>>>(w, amax_in, q, scale, K, bad);
  }
#undef INT8_MOE_QUANT_REGS
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
