// Grouped expert GEMMs on CUDA cores: the general path. Every dtype, any K and N (no alignment
// needed), W8A16 (fp32 accumulation) and W8A8 (int32 accumulation of int8 products). Aligned
// bf16/fp16 W8A16 takes the tensor-core paths instead (moe_gemm_decode.cuh, moe_gemm_tiled.cuh,
// moe_prefill.cuh). MoeGemmArgs, shared by all of them, is defined here.
//
// A CTA computes a tile of BM sorted routes (one expert) x 64 weight rows. GEMM1 (GATED) pairs
// 32 gate rows with the 32 matching up rows and writes act(g, u) for 32 intermediate columns
// in the activation dtype (W8A8: to be quantized per token);
// GEMM2 writes (acc * scale + bias) * router weight into the route's own output row.
#pragma once

#include <cuda_runtime.h>

#include <type_traits>

#include "../common/moe_math.h"
#include "cuda_types.cuh"

namespace int8_moe {

constexpr int kSimtBM = 16;       // routes per tile
constexpr int kSimtRows = 64;     // weight rows per tile
constexpr int kSimtBK = 32;       // K step
constexpr int kSimtThreads = 256;

struct MoeGemmArgs {
  const void* a;              // GEMM1: x [M, K] (or its int8 copy); GEMM2: inter [capacity, K]
  const float* a_scale;       // per A row (W8A8), else null
  bool a_rows_are_tokens;     // GEMM1: A row = route / topk; GEMM2: A row = sorted position
  int64_t topk;
  const float* topk_weights;  // [n_routes]
  bool weight_on_a;           // multiply A rows by the router weight (apply_router_weight_on_input)
  bool weight_on_out;         // multiply output rows by the router weight (GEMM2, the default)
  const int8_t* w;            // [E, N, K]
  const float* w_scale;       // [E, N]
  const void* bias;           // [E, N] in the activation dtype, or null
  int64_t N, K;
  const int32_t* sorted_routes;
  const int32_t* block_expert;
  void* out;  // GEMM1: inter [capacity, N / 2]; GEMM2: route_out [n_routes, N] (activation dtype)
  Activation act;
  float alpha, limit;
  // Decode kernel launched with PDL: bytes of each of its weight rows a CTA asks L2 for before
  // it waits on the previous kernel (a multiple of 16, <= K; 0: none). Only set when the routing
  // was written two or more launches earlier (pdl.cuh).
  int64_t prefetch_row_bytes;
  // Row-tile GEMMs (tiled, wgmma): L2 bytes of activation rows a group of route blocks may hold
  // while it walks the weight tiles together (tile_order.cuh; 0: launch order), and the route
  // blocks per group launch_row_tiles derives from it.
  int64_t raster_bytes;
  int64_t raster_group;
  // Direct routing (decode kernel, at most kDirectMaxRoutes routes: no align kernel before it;
  // direct_ids non-null): each CTA derives its route block from the direct_routes router ids
  // (direct_ids, int64 when direct_ids64; expert_map may be null; decode_block), the blocks'
  // routes at sorted positions b * BM .. b * BM + BM - 1 as align would place them. record_routes
  // (GEMM1): where the weight tile 0 CTAs write that sorted routing for the kernels after it
  // (W8A8's intermediate quantization reads it); null in GEMM2.
  const void* direct_ids;
  bool direct_ids64;
  int64_t direct_routes;
  const int32_t* expert_map;
  int64_t E_global;
  int64_t E;  // experts of w (always set: the wgmma kernels' weight tensor maps read it too)
  int32_t* record_routes;
  // Decode GEMM2 split over K (grid z > 1): elements from one K slice's per-route rows in out
  // to the next slice's.
  int64_t split_stride;
  // wgmma GEMM2: the output tile staged in shared memory and written as 16-byte pieces of whole
  // route rows (moe_gemm_wgmma.cuh) instead of each thread's 2-byte values; the same bits.
  bool stage_out;
  // wgmma GEMMs: a route block's products over only the first quarter, half or three quarters
  // of its routes where the rest are padding (moe_gemm_wgmma.cuh); the same bits.
  bool narrow_tail;
};

// Weight row of virtual column v of a tile starting at n0. GATED: 0..31 gate, 32..63 up of
// intermediate columns n0 .. n0 + 31.
__device__ __forceinline__ int64_t tile_weight_row(bool gated, Activation act, int64_t n0, int v,
                                                   int64_t inter) {
  if (!gated) return n0 + v;
  const int64_t j = n0 + (v % 32);
  return v < 32 ? gate_row(act, j, inter) : up_row(act, j, inter);
}

template <typename AT, typename BiasT, bool GATED, bool INT8>
__global__ void __launch_bounds__(kSimtThreads) moe_gemm_simt_kernel(MoeGemmArgs g) {
  using Acc = std::conditional_t<INT8, int32_t, float>;
  __shared__ Acc As[kSimtBM][kSimtBK];
  __shared__ Acc Bs[kSimtRows][kSimtBK + 1];
  __shared__ float Cs[kSimtBM][kSimtRows];

  // grid.x: blocks of sorted routes (may exceed 65535), grid.y: tiles of weight rows.
  const int e = g.block_expert[blockIdx.x];
  if (e < 0) return;
  const int64_t pos0 = static_cast<int64_t>(blockIdx.x) * kSimtBM;
  const int64_t inter = g.N / 2;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * (GATED ? 32 : kSimtRows);
  const int tid = threadIdx.x;
  const int col = tid % kSimtRows, row0 = (tid / kSimtRows) * 4;

  // Per-thread A-row bookkeeping for the loads: thread t loads A elements (t / 32, t % 32) and
  // (t / 32 + 8, t % 32) of each K step.
  int64_t a_row[2];
  float a_mul[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = tid / kSimtBK + 8 * i;
    const int32_t route = g.sorted_routes[pos0 + r];
    a_row[i] = route < 0 ? -1 : (g.a_rows_are_tokens ? route / g.topk : pos0 + r);
    a_mul[i] = (route >= 0 && g.weight_on_a) ? g.topk_weights[route] : 1.0f;
  }
  const AT* A = static_cast<const AT*>(g.a);
  const int8_t* W = g.w + static_cast<int64_t>(e) * g.N * g.K;

  Acc acc[4] = {0, 0, 0, 0};
  for (int64_t k0 = 0; k0 < g.K; k0 += kSimtBK) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int r = tid / kSimtBK + 8 * i, kk = tid % kSimtBK;
      Acc v = 0;
      if (a_row[i] >= 0 && k0 + kk < g.K) {
        if constexpr (INT8) {
          v = A[a_row[i] * g.K + k0 + kk];
        } else {
          v = Elem<AT>::to_float(A[a_row[i] * g.K + k0 + kk]) * a_mul[i];
        }
      }
      As[r][kk] = v;
    }
#pragma unroll
    for (int i = 0; i < kSimtRows * kSimtBK / kSimtThreads; ++i) {
      const int idx = tid + i * kSimtThreads;
      const int v = idx / kSimtBK, kk = idx % kSimtBK;
      const int64_t wrow = tile_weight_row(GATED, g.act, n0, v, inter);
      const bool ok = (GATED ? (n0 + v % 32 < inter) : (wrow < g.N)) && k0 + kk < g.K;
      Bs[v][kk] = ok ? static_cast<Acc>(W[wrow * g.K + k0 + kk]) : Acc(0);
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kSimtBK; ++kk) {
      const Acc b = Bs[col][kk];
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[r] += As[row0 + r][kk] * b;
    }
    __syncthreads();
  }

  // Epilogue 1: scale (and bias) per weight row into Cs.
  {
    const int64_t wrow = tile_weight_row(GATED, g.act, n0, col, inter);
    const bool ok = GATED ? (n0 + col % 32 < inter) : (wrow < g.N);
    const float s = ok ? g.w_scale[static_cast<int64_t>(e) * g.N + wrow] : 0.0f;
    const float b = (ok && g.bias) ? Elem<BiasT>::to_float(static_cast<const BiasT*>(
                                         g.bias)[static_cast<int64_t>(e) * g.N + wrow])
                                   : 0.0f;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      float v = static_cast<float>(acc[r]);
      if constexpr (INT8) {
        const int32_t route = g.sorted_routes[pos0 + row0 + r];
        const int64_t arow = route < 0 ? 0 : (g.a_rows_are_tokens ? route / g.topk : pos0 + row0 + r);
        v = route < 0 ? 0.0f : v * g.a_scale[arow];
      }
      Cs[row0 + r][col] = v * s + b;
    }
  }
  __syncthreads();

  // Epilogue 2: activation (GEMM1) or router weight (GEMM2), then the store.
  if constexpr (GATED) {
    for (int i = tid; i < kSimtBM * 32; i += kSimtThreads) {
      const int r = i / 32, j = i % 32;
      if (n0 + j >= inter || g.sorted_routes[pos0 + r] < 0) continue;
      const float v = gated_activation(g.act, Cs[r][j], Cs[r][32 + j], g.alpha, g.limit);
      // The intermediate in the activation dtype, as every path writes it (vLLM's too).
      static_cast<BiasT*>(g.out)[(pos0 + r) * inter + n0 + j] = Elem<BiasT>::from_float(v);
    }
  } else {
    for (int i = tid; i < kSimtBM * kSimtRows; i += kSimtThreads) {
      const int r = i / kSimtRows, c = i % kSimtRows;
      const int32_t route = g.sorted_routes[pos0 + r];
      if (n0 + c >= g.N || route < 0) continue;
      const float w = g.weight_on_out ? g.topk_weights[route] : 1.0f;
      static_cast<BiasT*>(g.out)[static_cast<int64_t>(route) * g.N + n0 + c] =
          Elem<BiasT>::from_float(Cs[r][c] * w);
    }
  }
}

}  // namespace int8_moe
