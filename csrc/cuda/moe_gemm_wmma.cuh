// Grouped expert GEMMs on tensor cores (bf16/fp16 W8A16): int8 weight tiles arrive in shared
// memory through a cp.async pipeline, are widened to the activation type there, and feed
// 16x16x16 MMAs with fp32 accumulation; the per-row weight scale is applied in the epilogue.
//
// Tile: BM sorted routes of one expert x 64 weight rows, 4 warps, each warp 16 weight rows x
// all BM routes. GEMM1 pairs 32 gate rows with their 32 up rows and writes act(g, u) (in the
// activation dtype) for 32 intermediate columns at the routes' sorted positions; GEMM2 reads
// those rows and writes (acc * scale + bias) * router weight into each route's fp32 row.
// Needs H % 16 == 0, I % 16 == 0 and 16-byte aligned x / weights (wmma_supported); tails of
// K and N within that are zero-filled.
#pragma once

#include <cuda_pipeline.h>
#include <cuda_runtime.h>
#include <mma.h>

#include "moe_gemm_simt.cuh"

namespace int8_moe {

constexpr int kWmmaRows = 64;   // weight rows per tile
constexpr int kWmmaBK = 64;     // K step
constexpr int kWmmaStages = 4;  // cp.async pipeline depth
constexpr int kWmmaThreads = 128;
constexpr int kWmmaPad = 8;     // elements of padding per shared row (bank conflicts)

inline bool wmma_supported(int64_t H, int64_t I, const void* x, const void* w13, const void* w2) {
  return H % 16 == 0 && I % 16 == 0 && is_aligned(x, 16) && is_aligned(w13, 16) &&
         is_aligned(w2, 16);
}

// Routes per tile: enough rows to amortize the weight tile, no more than an expert typically has.
inline int wmma_block_m(int64_t n_routes, int64_t E) {
  const int64_t per_expert = E > 0 ? (n_routes + E - 1) / E : n_routes;
  return per_expert <= 16 ? 16 : (per_expert <= 32 ? 32 : 64);
}

template <typename T, int BM>
struct WmmaSmem {
  struct Stage {
    T a[BM][kWmmaBK + kWmmaPad];
    int8_t b[kWmmaRows][kWmmaBK];
  };
  union {
    struct {
      Stage stage[kWmmaStages];
      T b_wide[kWmmaRows][kWmmaBK + kWmmaPad];
    } main;
    float c[BM][kWmmaRows + 4];
  };
};

template <typename T>
struct WmmaType;
template <>
struct WmmaType<__nv_bfloat16> {
  using type = __nv_bfloat16;
};
template <>
struct WmmaType<__half> {
  using type = __half;
};

template <typename T, int BM, bool GATED>
__global__ void __launch_bounds__(kWmmaThreads) moe_gemm_wmma_kernel(MoeGemmArgs g) {
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  auto& sm = *reinterpret_cast<WmmaSmem<T, BM>*>(smem_raw);

  const int e = g.block_expert[blockIdx.x];
  if (e < 0) return;
  const int64_t pos0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int64_t inter = g.N / 2;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * (GATED ? 32 : kWmmaRows);
  const int tid = threadIdx.x, warp = tid / 32;
  const T* A = static_cast<const T*>(g.a);
  const int8_t* W = g.w + static_cast<int64_t>(e) * g.N * g.K;

  // A rows of this tile (-1: padding) and weight rows (-1: beyond N).
  __shared__ int64_t a_row[BM];
  __shared__ int64_t w_row[kWmmaRows];
  for (int r = tid; r < BM; r += kWmmaThreads) {
    const int32_t route = g.sorted_routes[pos0 + r];
    a_row[r] = route < 0 ? -1 : (g.a_rows_are_tokens ? route / g.topk : pos0 + r);
  }
  for (int v = tid; v < kWmmaRows; v += kWmmaThreads) {
    const bool ok = GATED ? (n0 + v % 32 < inter) : (n0 + v < g.N);
    w_row[v] = ok ? tile_weight_row(GATED, g.act, n0, v, inter) : -1;
  }
  __syncthreads();

  const int64_t k_steps = (g.K + kWmmaBK - 1) / kWmmaBK;
  auto load_stage = [&](int64_t ks) {
    auto& st = sm.main.stage[ks % kWmmaStages];
    const int64_t k0 = ks * kWmmaBK;
    constexpr int kAChunks = BM * (kWmmaBK / 8);  // 16-byte chunks of 8 elements
    for (int c = tid; c < kAChunks; c += kWmmaThreads) {
      const int r = c / (kWmmaBK / 8), kc = (c % (kWmmaBK / 8)) * 8;
      const bool ok = a_row[r] >= 0 && k0 + kc < g.K;
      const T* src = ok ? A + a_row[r] * g.K + k0 + kc : A;
      __pipeline_memcpy_async(&st.a[r][kc], src, 16, ok ? 0 : 16);
    }
    constexpr int kBChunks = kWmmaRows * (kWmmaBK / 16);  // 16 int8 per chunk
    for (int c = tid; c < kBChunks; c += kWmmaThreads) {
      const int v = c / (kWmmaBK / 16), kc = (c % (kWmmaBK / 16)) * 16;
      const bool ok = w_row[v] >= 0 && k0 + kc < g.K;
      const int8_t* src = ok ? W + w_row[v] * g.K + k0 + kc : W;
      __pipeline_memcpy_async(&st.b[v][kc], src, 16, ok ? 0 : 16);
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[BM / 16];
#pragma unroll
  for (int i = 0; i < BM / 16; ++i) wmma::fill_fragment(acc[i], 0.0f);

  for (int s = 0; s < kWmmaStages - 1; ++s) {
    if (s < k_steps) load_stage(s);
    __pipeline_commit();
  }
  for (int64_t ks = 0; ks < k_steps; ++ks) {
    __pipeline_wait_prior(kWmmaStages - 2);
    __syncthreads();  // stage ks landed for every thread; b_wide is free
    auto& st = sm.main.stage[ks % kWmmaStages];
    // Widen the int8 weight tile to T (exact: |q| <= 127).
    for (int i = tid; i < kWmmaRows * kWmmaBK / 4; i += kWmmaThreads) {
      const int v = i / (kWmmaBK / 4), k = (i % (kWmmaBK / 4)) * 4;
      const char4 q = *reinterpret_cast<const char4*>(&st.b[v][k]);
      sm.main.b_wide[v][k + 0] = Elem<T>::from_float(q.x);
      sm.main.b_wide[v][k + 1] = Elem<T>::from_float(q.y);
      sm.main.b_wide[v][k + 2] = Elem<T>::from_float(q.z);
      sm.main.b_wide[v][k + 3] = Elem<T>::from_float(q.w);
    }
    // Refill the slot freed one step ago while this one computes.
    if (ks + kWmmaStages - 1 < k_steps) load_stage(ks + kWmmaStages - 1);
    __pipeline_commit();
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kWmmaBK; kk += 16) {
      wmma::fragment<wmma::matrix_b, 16, 16, 16, typename WmmaType<T>::type, wmma::col_major> bf;
      wmma::load_matrix_sync(bf, &sm.main.b_wide[warp * 16][kk], kWmmaBK + kWmmaPad);
#pragma unroll
      for (int i = 0; i < BM / 16; ++i) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, typename WmmaType<T>::type, wmma::row_major> af;
        wmma::load_matrix_sync(af, &st.a[i * 16][kk], kWmmaBK + kWmmaPad);
        wmma::mma_sync(acc[i], af, bf, acc[i]);
      }
    }
  }
  __pipeline_wait_prior(0);
  __syncthreads();  // the stages are dead: reuse the memory for the output tile
#pragma unroll
  for (int i = 0; i < BM / 16; ++i)
    wmma::store_matrix_sync(&sm.c[i * 16][warp * 16], acc[i], kWmmaRows + 4, wmma::mem_row_major);
  __syncthreads();

  // Scale (and bias) per weight row.
  const T* bias = static_cast<const T*>(g.bias);
  for (int i = tid; i < BM * kWmmaRows; i += kWmmaThreads) {
    const int r = i / kWmmaRows, v = i % kWmmaRows;
    if (w_row[v] < 0) continue;
    const int64_t idx = static_cast<int64_t>(e) * g.N + w_row[v];
    sm.c[r][v] = sm.c[r][v] * g.w_scale[idx] + (bias ? Elem<T>::to_float(bias[idx]) : 0.0f);
  }
  __syncthreads();
  if constexpr (GATED) {
    T* out = static_cast<T*>(g.out);
    for (int i = tid; i < BM * 32; i += kWmmaThreads) {
      const int r = i / 32, j = i % 32;
      if (w_row[j] < 0 || a_row[r] < 0) continue;
      const float v = gated_activation(g.act, sm.c[r][j], sm.c[r][32 + j], g.alpha, g.limit);
      out[(pos0 + r) * inter + n0 + j] = Elem<T>::from_float(v);
    }
  } else {
    float* out = static_cast<float*>(g.out);
    for (int i = tid; i < BM * kWmmaRows; i += kWmmaThreads) {
      const int r = i / kWmmaRows, c = i % kWmmaRows;
      if (w_row[c] < 0 || a_row[r] < 0) continue;
      const int32_t route = g.sorted_routes[pos0 + r];
      const float w = g.weight_on_out ? g.topk_weights[route] : 1.0f;
      out[static_cast<int64_t>(route) * g.N + n0 + c] = sm.c[r][c] * w;
    }
  }
}

template <typename T, int BM, bool GATED>
void launch_wmma(const MoeGemmArgs& g, int64_t max_blocks, cudaStream_t stream) {
  const int64_t n_tiles = GATED ? ceil_div(g.N / 2, 32) : ceil_div(g.N, kWmmaRows);
  const size_t smem = sizeof(WmmaSmem<T, BM>);
  auto kernel = moe_gemm_wmma_kernel<T, BM, GATED>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  const dim3 grid(static_cast<unsigned>(max_blocks), static_cast<unsigned>(n_tiles));
  kernel<<<grid, kWmmaThreads, smem, stream>>>(g);
}

template <typename T, bool GATED>
void launch_wmma_gemm(const MoeGemmArgs& g, int64_t max_blocks, int BM, cudaStream_t stream) {
  if (BM == 16)
    launch_wmma<T, 16, GATED>(g, max_blocks, stream);
  else if (BM == 32)
    launch_wmma<T, 32, GATED>(g, max_blocks, stream);
  else
    launch_wmma<T, 64, GATED>(g, max_blocks, stream);
}

template <typename T>
void launch_wmma_gemm1(const MoeGemmArgs& g, int64_t max_blocks, int BM, cudaStream_t stream) {
  launch_wmma_gemm<T, true>(g, max_blocks, BM, stream);
}
template <typename T>
void launch_wmma_gemm2(const MoeGemmArgs& g, int64_t max_blocks, int BM, cudaStream_t stream) {
  launch_wmma_gemm<T, false>(g, max_blocks, BM, stream);
}

}  // namespace int8_moe
