// Grouped expert GEMMs for more than a few tokens per expert (bf16/fp16 W8A16): a tiled
// tensor-core GEMM that reads the int8 weights once per tile and widens them in registers, so
// no bf16 copy of the weights ever exists.
//
// Same "swap AB" MMA as the decode kernel (moe_gemm_decode.cuh): weight rows are the 16-row A
// operand of mma.m16n8k16, tokens the 8-column B operand, and the K order inside each 64-wide
// chunk is permuted identically for A and B (thread q of a quad owns bytes q*16 .. q*16+15 of a
// weight row; k16 step b takes bytes b*4 .. b*4+3), so every shared-memory read is 16 bytes.
//
// CTA tile: 128 weight rows x BN sorted routes of one expert, 8 warps as 4 (rows) x 2 (tokens),
// each warp 32 rows x BN/2 tokens. A 3-stage cp.async pipeline brings 64-wide K chunks of both
// operands to shared memory (zero-filled beyond N, K and for padding routes). Token rows are
// padded by 16 bytes so the quad reads hit distinct banks. GEMM1 (GATED): MMA rows 0..7 of each
// 16-row tile are gate rows and 8..15 the matching up rows, so act() is applied in registers
// and the tile writes act(g, u) for 64 intermediate columns. GEMM2: 128 output rows, written as
// (acc * scale + bias) * router weight into each route's row. No split-K: deterministic.
// Needs H % 16 == 0, I % 16 == 0 and 16-byte aligned x / weights (tensor_core_supported).
//
// W8A8 (AT = int8_t): the A operand is the per-token int8 activation (a_scale per A row) and the
// MMA is mma.m16n8k32.s8 with int32 accumulation: no widening. Thread q's 16 bytes of a 64-wide
// chunk feed both k32 steps (step s: bytes 8s .. 8s+3 -> logical k 4q..4q+3, bytes 8s+4 .. 8s+7
// -> logical k 16+4q..), so a token's 64 int8 are read as one 16-byte load. The epilogue is
// float(acc) * a_scale * w_scale; GEMM1 writes the intermediate in the activation dtype
// (quantized per token next).
#pragma once

#include <cuda_runtime.h>

#include <type_traits>

#include "cp_async.cuh"
#include "moe_gemm_decode.cuh"
#include "tile_order.cuh"

namespace int8_moe {

constexpr int kTiledThreads = 256;
constexpr int kTiledRows = 128;  // weight rows per CTA (GATED: 64 gate + 64 up)
constexpr int kTiledBK = 64;     // K chunk per pipeline stage
constexpr int kTiledStages = 3;
// One token's chunk in shared memory: bf16/fp16 rows padded by 16 bytes (conflict-free quad
// reads at a 144-byte stride); 64-byte int8 rows are conflict-free unpadded.
template <typename AT>
constexpr int tiled_token_bytes() {
  return sizeof(AT) == 1 ? kTiledBK : kTiledBK * 2 + 16;
}

inline bool tensor_core_supported(int64_t H, int64_t I, const void* x, const void* w13,
                                  const void* w2) {
  return H % 16 == 0 && I % 16 == 0 && is_aligned(x, 16) && is_aligned(w13, 16) &&
         is_aligned(w2, 16);
}

template <typename AT, int BN>
constexpr int tiled_smem_bytes() {
  return kTiledStages * (kTiledRows * kTiledBK + BN * tiled_token_bytes<AT>());
}

// Row r of a weight tile of the row-tile kernels (tiled: 128 rows; wgmma: 128 or 256) starting
// at tile0 -> weight row, or -1 beyond N. GATED: tile0 counts intermediate columns, and rows
// 16m .. 16m+7 are the gate rows and 16m+8 .. 16m+15 the up rows of columns tile0 + 8m ..
// tile0 + 8m + 7. inter = g.N / 2.
template <bool GATED>
__device__ __forceinline__ int64_t row_tile_weight_row(const MoeGemmArgs& g, int64_t tile0,
                                                       int64_t inter, int r) {
  if constexpr (GATED) {
    const int64_t j = tile0 + (r / 16) * 8 + r % 8;
    if (j >= inter) return -1;
    return (r / 8) % 2 ? up_row(g.act, j, inter) : gate_row(g.act, j, inter);
  } else {
    const int64_t n = tile0 + r;
    return n < g.N ? n : -1;
  }
}

// T: the activation dtype (output, bias); AT: what the A operand holds, T or int8_t (W8A8).
template <typename T, typename AT, int BN, bool GATED>
__global__ void __launch_bounds__(kTiledThreads) moe_gemm_tiled_kernel(MoeGemmArgs g) {
  constexpr bool INT8 = std::is_same_v<AT, int8_t>;
  using Acc = std::conditional_t<INT8, int, float>;
  constexpr int NT = BN / 16;  // n8 tiles per warp
  constexpr int A_BYTES = kTiledRows * kTiledBK;
  constexpr int TOKEN_BYTES = tiled_token_bytes<AT>();
  constexpr int STAGE_BYTES = A_BYTES + BN * TOKEN_BYTES;
  constexpr int PIECES_PER_TOKEN = kTiledBK * static_cast<int>(sizeof(AT)) / 16;  // 16 bytes each
  constexpr int ELEMS_PER_PIECE = 16 / static_cast<int>(sizeof(AT));
  constexpr int B_PIECES = (BN * PIECES_PER_TOKEN + kTiledThreads - 1) / kTiledThreads;
  static_assert(BN % 32 == 0, "BN must be a multiple of 32");
  extern __shared__ __align__(16) unsigned char tiled_smem[];

  const RowTile rt = row_tile_of_cta(g.raster_group);
  const int e = g.block_expert[rt.block];
  if (e < 0) return;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int grp = lane / 4, q = lane % 4;
  const int wr = warp % 4, wt = warp / 4;
  const int64_t pos0 = rt.block * BN;
  const int64_t inter = g.N / 2;
  const int64_t tile0 = rt.tile * (GATED ? kTiledRows / 2 : kTiledRows);
  const int8_t* W = g.w + static_cast<int64_t>(e) * g.N * g.K;
  const AT* A = static_cast<const AT*>(g.a);

  auto weight_row = [&](int r) { return row_tile_weight_row<GATED>(g, tile0, inter, r); };

  // Loader: each thread copies 2 weight pieces (rows tid/4 and tid/4 + 64, bytes (tid%4)*16)
  // and up to B_PIECES token pieces (piece tid + 256i: token / PIECES_PER_TOKEN) per stage.
  const int wpiece = tid % 4;
  const int8_t* wsrc[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int64_t row = weight_row(tid / 4 + 64 * i);
    wsrc[i] = row < 0 ? nullptr : W + row * g.K + wpiece * 16;
  }
  const int bpiece = tid % PIECES_PER_TOKEN;
  const AT* bsrc[B_PIECES];
#pragma unroll
  for (int i = 0; i < B_PIECES; ++i) {
    const int idx = tid + kTiledThreads * i;
    bsrc[i] = nullptr;
    if (idx < BN * PIECES_PER_TOKEN) {
      const int64_t p = pos0 + idx / PIECES_PER_TOKEN;
      const int32_t route = g.sorted_routes[p];
      if (route >= 0)
        bsrc[i] = A + (g.a_rows_are_tokens ? route / g.topk : p) * g.K + bpiece * ELEMS_PER_PIECE;
    }
  }
  const uint32_t smem_base = shared_address(tiled_smem);
  auto load_stage = [&](int slot, int64_t chunk) {
    const int64_t k0 = chunk * kTiledBK;
    const uint32_t sa = smem_base + slot * STAGE_BYTES;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const bool ok = wsrc[i] != nullptr && k0 + wpiece * 16 < g.K;
      cp_async_16(sa + (tid / 4 + 64 * i) * kTiledBK + wpiece * 16, ok ? wsrc[i] + k0 : g.w, ok);
    }
    const uint32_t sb = sa + A_BYTES;
#pragma unroll
    for (int i = 0; i < B_PIECES; ++i) {
      const int idx = tid + kTiledThreads * i;
      if (idx >= BN * PIECES_PER_TOKEN) continue;
      const bool ok = bsrc[i] != nullptr && k0 + bpiece * ELEMS_PER_PIECE < g.K;
      cp_async_16(sb + (idx / PIECES_PER_TOKEN) * TOKEN_BYTES + bpiece * 16,
                  ok ? static_cast<const void*>(bsrc[i] + k0) : g.a, ok);
    }
  };

  Acc acc[2][NT][4] = {};
  const int64_t chunks = (g.K + kTiledBK - 1) / kTiledBK;
#pragma unroll
  for (int s = 0; s < kTiledStages - 1; ++s) {
    if (s < chunks) load_stage(s, s);
    cp_async_commit();
  }
  for (int64_t c = 0; c < chunks; ++c) {
    cp_async_wait<kTiledStages - 2>();
    __syncthreads();  // chunk c has landed for every thread; slot (c - 1) % S is free again
    {
      const int64_t next = c + kTiledStages - 1;
      if (next < chunks) load_stage(static_cast<int>(next % kTiledStages), next);
      cp_async_commit();
    }
    const unsigned char* st = tiled_smem + (c % kTiledStages) * STAGE_BYTES;
    uint4 wa[2][2];  // [m16 tile][MMA rows grp, grp + 8]
#pragma unroll
    for (int m = 0; m < 2; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        wa[m][h] = *reinterpret_cast<const uint4*>(
            st + (wr * 32 + m * 16 + h * 8 + grp) * kTiledBK + q * 16);
    if constexpr (INT8) {
      const unsigned char* sb = st + A_BYTES + (wt * (BN / 2) + grp) * TOKEN_BYTES + q * 16;
      uint4 xb[NT];
#pragma unroll
      for (int n = 0; n < NT; ++n)
        xb[n] = *reinterpret_cast<const uint4*>(sb + n * 8 * TOKEN_BYTES);
#pragma unroll
      for (int step = 0; step < 2; ++step) {  // k32 steps: bytes 8*step .. 8*step + 7
#pragma unroll
        for (int m = 0; m < 2; ++m)
#pragma unroll
          for (int n = 0; n < NT; ++n) mma_s8_step(acc[m][n], wa[m][0], wa[m][1], xb[n], step);
      }
    } else {
      const unsigned char* sb = st + A_BYTES + (wt * (BN / 2) + grp) * TOKEN_BYTES + q * 32;
#pragma unroll
      for (int half = 0; half < 2; ++half) {  // k16 steps 2*half and 2*half + 1
        uint4 xb[NT];
#pragma unroll
        for (int n = 0; n < NT; ++n)
          xb[n] = *reinterpret_cast<const uint4*>(sb + n * 8 * TOKEN_BYTES + half * 16);
#pragma unroll
        for (int bb = 0; bb < 2; ++bb) {
          const int b = 2 * half + bb;
#pragma unroll
          for (int m = 0; m < 2; ++m) {
            const uint32_t r0 = word(wa[m][0], b), r1 = word(wa[m][1], b);
            const uint32_t a[4] = {widen_pair<T>(r0, 0), widen_pair<T>(r1, 0),
                                   widen_pair<T>(r0, 1), widen_pair<T>(r1, 1)};
#pragma unroll
            for (int n = 0; n < NT; ++n)
              mma_16816<T>(acc[m][n], a, word(xb[n], 2 * bb), word(xb[n], 2 * bb + 1));
          }
        }
      }
    }
  }
  cp_async_wait<0>();  // nothing may be in flight into shared memory when the CTA exits

#pragma unroll
  for (int m = 0; m < 2; ++m) {
    const int r = wr * 32 + m * 16 + grp;  // shared row of MMA row grp; grp + 8 is r + 8
    const int64_t row[2] = {weight_row(r), weight_row(r + 8)};
    float s[2], bv[2];
    load_row_scale_bias<T>(g, e, row, s, bv);
    const int64_t j = tile0 + (r / 16) * 8 + r % 8;  // GATED: intermediate column
#pragma unroll
    for (int n = 0; n < NT; ++n) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {  // tokens 2q, 2q + 1 of n-tile n
        const int64_t p = pos0 + wt * (BN / 2) + n * 8 + 2 * q + i;
        const int32_t route = g.sorted_routes[p];
        if (route < 0) continue;
        store_row_pair<T, INT8, GATED>(g, p, route, static_cast<float>(acc[m][n][i]),
                                       static_cast<float>(acc[m][n][2 + i]), row, s, bv, j);
      }
    }
  }
}

// Routes per tile for a given average number of routes per expert.
inline int tiled_block_n(int64_t per_expert) {
  return per_expert <= 32 ? 32 : (per_expert <= 64 ? 64 : 128);
}

// Launches a kernel whose CTAs each cover one route block x `rows` weight rows (GATED: rows / 2
// gate and rows / 2 up rows), over max_blocks x the weight tiles, with `smem` bytes of dynamic
// shared memory. Above 48 KB that needs an opt-in (per function, not a stream operation).
// block_bytes: the activation bytes of one route block (BN rows of K), for g.raster_bytes.
// extra: the kernel's parameters after g (the wgmma kernel's tensor maps).
template <bool GATED, typename... Extra>
cudaError_t launch_row_tiles(void (*kernel)(MoeGemmArgs, Extra...), MoeGemmArgs g,
                             int64_t max_blocks, int threads, int smem, int64_t block_bytes,
                             cudaStream_t stream, int rows = kTiledRows, const Extra&... extra) {
  const cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  const int64_t n_tiles = GATED ? ceil_div(g.N / 2, rows / 2) : ceil_div(g.N, rows);
  const dim3 grid(static_cast<unsigned>(max_blocks), static_cast<unsigned>(n_tiles));
  g.raster_group = row_tile_group(g.raster_bytes, block_bytes);
  kernel<<<grid, threads, smem, stream>>>(g, extra...);
  return cudaGetLastError();
}

template <typename T, typename AT, int BN, bool GATED>
cudaError_t launch_tiled_gemm_bn(const MoeGemmArgs& g, int64_t max_blocks, cudaStream_t stream) {
  return launch_row_tiles<GATED>(&moe_gemm_tiled_kernel<T, AT, BN, GATED>, g, max_blocks,
                                 kTiledThreads, tiled_smem_bytes<AT, BN>(),
                                 BN * g.K * static_cast<int64_t>(sizeof(AT)), stream);
}

// BN: routes per tile, tiled_block_n(); the routing must be aligned to the same BN.
// AT = T: W8A16; AT = int8_t: W8A8 (g.a int8 rows, g.a_scale per row).
template <typename T, typename AT, bool GATED>
cudaError_t launch_tiled_gemm(const MoeGemmArgs& g, int64_t max_blocks, int BN,
                              cudaStream_t stream) {
  if (BN == 32) return launch_tiled_gemm_bn<T, AT, 32, GATED>(g, max_blocks, stream);
  if (BN == 64) return launch_tiled_gemm_bn<T, AT, 64, GATED>(g, max_blocks, stream);
  return launch_tiled_gemm_bn<T, AT, 128, GATED>(g, max_blocks, stream);
}

}  // namespace int8_moe
