// Grouped expert GEMMs for few tokens per expert (decode): bound by streaming the int8 weights.
//
// "Swap AB": the weights are the 16-row A operand of mma.m16n8k16 and the (<= 8 per n-tile)
// tokens the B operand, so no MMA row is wasted on padding. Each thread loads 16 contiguous int8
// of two weight rows per 64-wide K chunk and widens them in registers; the K order inside a
// chunk is permuted identically for A and B (thread q of a quad owns bytes q*16 .. q*16+15, and
// k16 step b takes bytes b*4 .. b*4+3 of each), which keeps every load 16 bytes wide and needs
// no shared memory. The 4 warps of a CTA split K round-robin and combine their partial sums in
// a fixed order (deterministic).
//
// GEMM1 tile: 8 intermediate columns; MMA rows 0..7 are their gate rows and 8..15 their up
// rows, so each thread holds gate and up of the same (column, token) and applies act() in
// registers. GEMM2 tile: 16 output rows.
//
// AHEAD weight chunks in flight per warp: 2, or 4 for long rows (K >= 8192) when few CTAs hold
// routes (at most 4 per SM: GEMM2 of Mixtral at M = 1), so that each warp keeps more bytes in
// flight; with more CTAs, 4 costs occupancy (~80 registers instead of 64) and loses.
//
// Launched with PDL (pdl.cuh), a CTA may ask L2 for the start of its weight rows before it
// waits on the previous kernel (prefetch_row_bytes), then reads the routing. Up to 32 routes the
// routing may be direct (MoeGemmArgs::direct_ids): each CTA derives its block's expert and
// routes from the router ids itself (decode_block), so the chain needs no align kernel in front
// of GEMM1.
//
// W8A8 (AT = int8_t): int8 activation rows (a_scale per row), mma.m16n8k32.s8 with int32
// accumulation and no widening; a token's 16 bytes of a chunk feed both k32 steps (step s:
// bytes 8s .. 8s+3 and 8s+4 .. 8s+7, the same permutation for A and B). GEMM1 writes the
// intermediate in the activation dtype, which a pass quantizes per token before GEMM2.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "int8_widen.cuh"
#include "moe_gemm_simt.cuh"
#include "route_lookup.cuh"
#include "pdl.cuh"

namespace int8_moe {

constexpr int kDecodeThreads = 128;
constexpr int kDecodeWarps = kDecodeThreads / 32;
constexpr int kDecodeBK = 64;

// 16 bytes of a weight row, read once: evict-first (as __ldcs), and on an L2 miss the whole
// 128-byte line fetched from DRAM (the L2::128B prefetch size), not only the sectors asked for.
// A warp's load touches 64 bytes of each of 16 rows and the CTA's other warps the neighbouring
// 64 bytes a moment later; fetched as whole lines, the W8A16 decode chains ran 1.5-5% faster
// end to end (NOTES, variant 44; 256 bytes measured the same as 128).
__device__ __forceinline__ uint4 load_weight_piece(const int8_t* p) {
  uint4 v;
  asm volatile("ld.global.cs.L2::128B.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ void mma_16832_s8(int (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// One k32 step of an int8 MMA tile (the decode and tiled kernels): A from this thread's two
// 16-byte weight pieces r0, r1 (MMA rows grp and grp + 8), B from its token's 16-byte piece x;
// step s takes bytes 8s .. 8s + 3 and 8s + 4 .. 8s + 7 of each, the same permutation of K for
// both operands.
__device__ __forceinline__ void mma_s8_step(int (&d)[4], const uint4& r0, const uint4& r1,
                                            const uint4& x, int step) {
  const uint32_t a[4] = {word(r0, 2 * step), word(r1, 2 * step), word(r0, 2 * step + 1),
                         word(r1, 2 * step + 1)};
  mma_16832_s8(d, a, word(x, 2 * step), word(x, 2 * step + 1));
}

template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Shared by the decode, tiled and wgmma kernels' epilogues.
// Scale and bias of weight row `row` of expert e (-1: beyond N; both 0).
template <typename T>
__device__ __forceinline__ float2 row_scale_bias(const MoeGemmArgs& g, int e, int64_t row) {
  const T* bias = static_cast<const T*>(g.bias);
  const int64_t base = static_cast<int64_t>(e) * g.N;
  return make_float2(row >= 0 ? g.w_scale[base + row] : 0.0f,
                     (row >= 0 && bias) ? Elem<T>::to_float(bias[base + row]) : 0.0f);
}
// ... of a thread's two weight rows (MMA rows grp and grp + 8).
template <typename T>
__device__ __forceinline__ void load_row_scale_bias(const MoeGemmArgs& g, int e,
                                                    const int64_t (&row)[2], float (&s)[2],
                                                    float (&bv)[2]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float2 sb = row_scale_bias<T>(g, e, row[h]);
    s[h] = sb.x;
    bv[h] = sb.y;
  }
}

// The per-route factors of a route's values at sorted position p: in_mul multiplies the
// accumulators before w_scale (the input-side router weight, and W8A8's a_scale of the B row),
// out_mul GEMM2's output rows (the output-side router weight).
template <bool INT8>
__device__ __forceinline__ float route_in_mul(const MoeGemmArgs& g, int64_t p, int32_t route) {
  float in_mul = g.weight_on_a ? g.topk_weights[route] : 1.0f;
  if constexpr (INT8) in_mul *= g.a_scale[g.a_rows_are_tokens ? route / g.topk : p];
  return in_mul;
}
__device__ __forceinline__ float route_out_mul(const MoeGemmArgs& g, int32_t route) {
  return g.weight_on_out ? g.topk_weights[route] : 1.0f;
}
// A route block's entry: the route at a sorted position (-1: padding) and its two factors (1
// for padding), looked up once per CTA (the wgmma kernels keep them in shared memory).
struct RouteFactors {
  int32_t route;
  float in_mul, out_mul;
};
template <bool INT8>
__device__ __forceinline__ RouteFactors route_factors(const MoeGemmArgs& g, int64_t p) {
  const int32_t route = g.sorted_routes[p];
  if (route < 0) return {route, 1.0f, 1.0f};
  return {route, route_in_mul<INT8>(g, p, route), route_out_mul(g, route)};
}

// The two rows' values before the activation (GATED) or the router weight:
// acc * in_mul * w_scale + bias.
__device__ __forceinline__ void scale_row_pair(float acc0, float acc1, float in_mul,
                                               const float (&s)[2], const float (&bv)[2],
                                               float& v0, float& v1) {
  v0 = acc0 * in_mul * s[0] + bv[0];
  v1 = acc1 * in_mul * s[1] + bv[1];
}
// The two rows' values to their destination. GATED: act(gate, up) at the route's sorted
// position p, intermediate column j, rounded to T in both modes (W8A8 quantizes it per token
// next: half the bytes of an fp32 round trip, as vLLM's; benchmarks/NOTES.md, variant 55); else
// the two output rows of the route times out_mul(), rounded to T (the per-route rows the top-k
// sum reads, in the activation dtype as vLLM's are; out_offset: elements to the rows of this
// CTA's K slice when GEMM2 is split over K). out_mul: a callable, evaluated where a row is
// written (the decode kernels' register counts, at their bounds, depend on where that load sits).
template <typename T, bool GATED, typename OutMul>
__device__ __forceinline__ void store_pair_values(const MoeGemmArgs& g, int64_t p, int32_t route,
                                                  float v0, float v1, OutMul out_mul,
                                                  const int64_t (&row)[2], int64_t j,
                                                  int64_t out_offset = 0) {
  if constexpr (GATED) {
    if (row[0] < 0) return;
    const float a = gated_activation(g.act, v0, v1, g.alpha, g.limit);
    static_cast<T*>(g.out)[p * (g.N / 2) + j] = Elem<T>::from_float(a);
  } else {
    T* out = static_cast<T*>(g.out) + out_offset + static_cast<int64_t>(route) * g.N;
    if (row[0] >= 0) out[row[0]] = Elem<T>::from_float(v0 * out_mul());
    if (row[1] >= 0) out[row[1]] = Elem<T>::from_float(v1 * out_mul());
  }
}
// One token's accumulators for the two rows to their destination, its factors looked up here.
// B is x itself, and (x * w) . W == w * (x . W), so the input-side router weight (and W8A8's
// B-row scale) is applied here.
template <typename T, bool INT8, bool GATED>
__device__ __forceinline__ void store_row_pair(const MoeGemmArgs& g, int64_t p, int32_t route,
                                               float acc0, float acc1, const int64_t (&row)[2],
                                               const float (&s)[2], const float (&bv)[2],
                                               int64_t j, int64_t out_offset = 0) {
  float v0, v1;
  scale_row_pair(acc0, acc1, route_in_mul<INT8>(g, p, route), s, bv, v0, v1);
  store_pair_values<T, GATED>(
      g, p, route, v0, v1, [&] { return route_out_mul(g, route); }, row, j, out_offset);
}

// Direct routing (MoeGemmArgs::direct_ids) takes at most this many routes: one per lane.
constexpr int kDirectMaxRoutes = 32;

// The local expert of route block b (-1: no work): the align kernel's block_expert, or with
// direct routing derived here from the router ids by every warp alike (warp-collective: every
// thread of the CTA calls it), with the block's routes by slot into `slots` (this warp's BM
// entries; -1: padding). Lane i resolves route i's expert; the routes of one expert, in route
// order, fill BM-route blocks, so a route whose rank among its expert's routes is a multiple of
// BM leads a block, and block b is the b-th leader in route order (moe_max_blocks bounds the
// leaders, as it bounds align's blocks). A few instructions of ballots and counts, no loops: a
// CTA's first weight loads wait on them. Through L2 (ld.global.cg): before its PDL wait a CTA
// may read what was written two or more launches back, and this SM's L1 may hold a previous
// call's lines.
__device__ __forceinline__ int decode_block(const MoeGemmArgs& g, int64_t b, int BM,
                                            int32_t* slots) {
  if (g.direct_ids == nullptr) return __ldcg(g.block_expert + b);
  const int lane = threadIdx.x % 32;
  int e = -1;
  if (lane < g.direct_routes) {
    const int64_t id = g.direct_ids64
                           ? __ldcg(static_cast<const int64_t*>(g.direct_ids) + lane)
                           : __ldcg(static_cast<const int32_t*>(g.direct_ids) + lane);
    e = resolve_expert(id, g.expert_map, g.E_global, g.E);
  }
  const LaneRoute lr = group_lanes_by_expert(e, BM);
  const uint32_t mine =
      __ballot_sync(0xffffffffu, lr.leads && __popc(lr.leaders & ((1u << lane) - 1u)) == b);
  if (mine == 0u) return -1;
  const int lead = __ffs(mine) - 1;
  const int be = __shfl_sync(0xffffffffu, e, lead);
  const int first = __shfl_sync(0xffffffffu, lr.rank, lead);
  if (lane < BM) slots[lane] = -1;
  __syncwarp();
  if (e == be && lr.rank >= first && lr.rank < first + BM) slots[lr.rank - first] = lane;
  __syncwarp();
  return be;
}

// The route in slot s (0 .. BM - 1) of this CTA's block, at sorted position p (-1: padding);
// slots: decode_block's, with direct routing.
__device__ __forceinline__ int32_t decode_route_at(const MoeGemmArgs& g, const int32_t* slots,
                                                   int64_t p, int s) {
  return g.direct_ids == nullptr ? g.sorted_routes[p] : slots[s];
}

// CTAs per SM the register budget must allow with 2 chunks in flight: 8 at 8 routes per block
// (<= 64 registers), 6 at 16 (<= 80: 84 would cost a sixth of the CTAs), 4 at 32. AHEAD = 4
// runs with few CTAs and is left unbounded; MT = 2 (twice the rows per thread) gets 4 (<= 128
// registers: the gated kernel at 16 routes took 130 unbounded with the 4-instruction bf16
// widening, 3 CTAs per SM, and Mixtral M = 64 went from 0.60 to 0.65 ms).
template <int NT, int AHEAD, int MT>
constexpr int kDecodeMinBlocks = AHEAD > 2 ? 1 : MT == 2 ? 4 : NT == 1 ? 8 : NT == 2 ? 6 : 4;

// T: the activation dtype (output, bias); AT: what the B operand holds, T or int8_t (W8A8).
// AHEAD: weight chunks in flight per warp while it multiplies the current one. MT: 16-row MMA
// tiles per CTA (1 or 2); with 2, each activation chunk loaded feeds two weight tiles, which
// halves the activation bytes read per weight byte (the L1/L2 traffic that, with 16 bf16
// routes per block, is twice the weights').
// SPLIT (GEMM2 only): grid z splits K into slices (see the K slice below); a compile-time flag so
// that the unsplit kernels carry none of its code.
template <typename T, typename AT, int NT, bool GATED, int AHEAD, int MT = 1, bool SPLIT = false>
__global__ void __launch_bounds__(kDecodeThreads, kDecodeMinBlocks<NT, AHEAD, MT>)
    moe_gemm_decode_kernel(MoeGemmArgs g) {
  static_assert(!(SPLIT && GATED), "act() needs whole sums: GEMM1 is never split");
  constexpr bool INT8 = std::is_same_v<AT, int8_t>;
  using Acc = std::conditional_t<INT8, int, float>;
  constexpr int BM = 8 * NT;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int grp = lane / 4, q = lane % 4;
  const int64_t pos0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int64_t inter = g.N / 2;
  // This CTA's 64-byte K chunks: c_begin .. c_end - 1. SPLIT: slice blockIdx.z of gridDim.z,
  // known here (its prefetch starts at c_begin); else all of K, set after the PDL wait.
  int64_t c_begin = 0, c_end = 0;
  if constexpr (SPLIT) {
    const int64_t chunks = (g.K + kDecodeBK - 1) / kDecodeBK;
    const int64_t per_slice = (chunks + gridDim.z - 1) / gridDim.z;
    c_begin = min(chunks, static_cast<int64_t>(blockIdx.z) * per_slice);
    c_end = min(chunks, c_begin + per_slice);
  }

  // The two weight rows of this thread in each MMA tile m (MMA rows grp and grp + 8), -1 beyond
  // N; GATED: tile m holds intermediate columns (blockIdx.y * MT + m) * 8 .. + 7.
  int64_t row[MT][2];
#pragma unroll
  for (int m = 0; m < MT; ++m) {
    const int64_t tile = static_cast<int64_t>(blockIdx.y) * MT + m;
    if constexpr (GATED) {
      const int64_t j = tile * 8 + grp;
      row[m][0] = j < inter ? gate_row(g.act, j, inter) : -1;
      row[m][1] = j < inter ? up_row(g.act, j, inter) : -1;
    } else {
      const int64_t n = tile * 16 + grp;
      row[m][0] = n < g.N ? n : -1;
      row[m][1] = n + 8 < g.N ? n + 8 : -1;
    }
  }

  // Before the PDL wait: ask L2 for the first prefetch_row_bytes of this CTA's weight rows,
  // so they arrive while the previous kernel finishes. The routing is two or more launches old
  // when prefetch_row_bytes is set, so it may be read here (by every thread: decode_block is
  // warp-collective), else after the wait. (SPLIT: within this CTA's K slice; the last one may
  // be short.)
  const bool early = g.prefetch_row_bytes > 0;
  __shared__ int32_t direct_slots[kDecodeWarps][32];  // decode_block's, per warp
  int32_t* slots = direct_slots[warp];
  int e = -1;
  if (early) e = decode_block(g, blockIdx.x, BM, slots);
  int64_t pf_bytes = g.prefetch_row_bytes;
  if constexpr (SPLIT) pf_bytes = min(pf_bytes, min(c_end * kDecodeBK, g.K) - c_begin * kDecodeBK);
  if (pf_bytes > 0 && warp == 0 && q == 0 && e >= 0) {
    const int8_t* Wp = g.w + static_cast<int64_t>(e) * g.N * g.K;
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        if (row[m][h] >= 0)
          prefetch_l2(Wp + row[m][h] * g.K + c_begin * kDecodeBK,
                      static_cast<uint32_t>(pf_bytes));
  }
  pdl_wait();  // every CTA, even an empty one: this grid must not complete before the previous
  pdl_launch_dependents();
  if (!early) e = decode_block(g, blockIdx.x, BM, slots);
  if (g.record_routes != nullptr && blockIdx.y == 0 && threadIdx.x < BM)  // warp 0
    g.record_routes[pos0 + threadIdx.x] =
        e >= 0 ? decode_route_at(g, slots, pos0 + threadIdx.x, threadIdx.x) : -1;
  if (e < 0) return;
  const int8_t* W = g.w + static_cast<int64_t>(e) * g.N * g.K;
  const AT* A = static_cast<const AT*>(g.a);
  if constexpr (!SPLIT) c_end = (g.K + kDecodeBK - 1) / kDecodeBK;
  // Chunks c_begin .. c_full - 1 lie wholly inside K; c_full .. c_end - 1 is at most the one
  // partial chunk (K % 64 != 0), multiplied after the loop with its pieces checked.
  const int c_full = static_cast<int>(min(c_end, g.K / kDecodeBK));
  const int first = static_cast<int>(c_begin) + warp;  // this warp's chunks: first + 4 i
  constexpr int kStride = kDecodeWarps * kDecodeBK;    // elements between a warp's chunks
  // Operand pointers at this thread's 16-element piece (thread q: k 16q .. 16q + 15 of each
  // chunk) of chunk `first`, advanced a warp stride per iteration, so that a load costs no
  // address arithmetic and no check. Rows beyond N and padding routes point at row 0 (valid
  // memory): their products land in accumulators that are never stored.
  const int8_t* wp[MT][2];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      wp[m][h] = W + max(row[m][h], int64_t{0}) * g.K + first * kDecodeBK + q * 16;
  // B operand: token (column) grp of each n-tile.
  const AT* xp[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const int64_t p = pos0 + t * 8 + grp;
    const int32_t route = decode_route_at(g, slots, p, t * 8 + grp);
    const int64_t r = route < 0 ? 0 : g.a_rows_are_tokens ? route / g.topk : p;
    xp[t] = A + r * g.K + first * kDecodeBK + q * 16;
  }

  Acc acc[MT][NT][4] = {};
  // A token's piece of a chunk: 16 bytes (W8A8) or 32 (two 16-byte loads: four 8-byte ones
  // made the L1 wavefronts, not the weight stream, the limit at 32 routes).
  constexpr int XV = INT8 ? 1 : 2;
  using Chunk = uint4[MT][2];
  using XChunk = uint4[NT][XV];
  // The weights of chunk `first + 4 (i + iterations so far)` (the pointers' chunk plus i).
  auto load_w = [&](int i, Chunk& w) {
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        w[m][h] = load_weight_piece(wp[m][h] + i * kStride);
  };
  auto load_x = [&](XChunk& xb) {
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
      for (int v = 0; v < XV; ++v) xb[t][v] = __ldg(reinterpret_cast<const uint4*>(xp[t]) + v);
  };
  auto multiply = [&](const Chunk& w, const XChunk& xb) {
    if constexpr (INT8) {
#pragma unroll
      for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int step = 0; step < 2; ++step)
#pragma unroll
          for (int t = 0; t < NT; ++t) mma_s8_step(acc[m][t], w[m][0], w[m][1], xb[t][0], step);
    } else {
#pragma unroll
      for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int b = 0; b < 4; ++b) {
          // k16 step b: bytes b*4 .. b*4+3 of each row; pairs (0,1) -> logical k (2q, 2q+1),
          // pairs (2,3) -> logical k (2q+8, 2q+9); the token's elements 4b .. 4b+3 likewise.
          const uint32_t a[4] = {
              widen_pair<T>(word(w[m][0], b), 0), widen_pair<T>(word(w[m][1], b), 0),
              widen_pair<T>(word(w[m][0], b), 1), widen_pair<T>(word(w[m][1], b), 1)};
#pragma unroll
          for (int t = 0; t < NT; ++t)
            mma_16816<T>(acc[m][t], a, word(xb[t][b / 2], 2 * (b % 2)),
                         word(xb[t][b / 2], 2 * (b % 2) + 1));
        }
    }
  };
  // AHEAD chunks in flight per warp while it multiplies the current one (one was not enough
  // bytes in flight per SM for GEMM2's long rows). (A ring unrolled over its slots instead of
  // this shifting queue measured no faster and took more registers: 96 instead of 82 at 16
  // routes per block, one CTA per SM less.)
  Chunk ahead[AHEAD];
#pragma unroll
  for (int i = 0; i < AHEAD; ++i)
    if (first + i * kDecodeWarps < c_full) load_w(i, ahead[i]);
  int c = first;
  // Not unrolled: left to the compiler, the W8A8 loop was unrolled 4 times and spilled under the
  // register bounds. W8A8 with 4 chunks in flight (GEMM2 of one token on long rows, registers
  // unbounded) is unrolled 4 times: its queue's shifts become renames (29 instead of 51
  // instructions per chunk).
#pragma unroll(INT8 && AHEAD > 2 ? 4 : 1)
  for (; c < c_full; c += kDecodeWarps) {
    Chunk w;
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      w[m][0] = ahead[0][m][0];
      w[m][1] = ahead[0][m][1];
    }
#pragma unroll
    for (int i = 0; i + 1 < AHEAD; ++i)
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        ahead[i][m][0] = ahead[i + 1][m][0];
        ahead[i][m][1] = ahead[i + 1][m][1];
      }
    if (c + AHEAD * kDecodeWarps < c_full) load_w(AHEAD, ahead[AHEAD - 1]);
    XChunk xb;
    load_x(xb);
    multiply(w, xb);
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) wp[m][h] += kStride;
#pragma unroll
    for (int t = 0; t < NT; ++t) xp[t] += kStride;
  }
  // The partial chunk, if this warp's: pieces beyond K are zeros in both operands (K % 16 == 0:
  // a piece is all valid or none).
  if (c < c_end) {
    Chunk w;
    XChunk xb;
    const bool k_ok = static_cast<int64_t>(c) * kDecodeBK + q * 16 < g.K;
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) w[m][h] = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
      for (int v = 0; v < XV; ++v) xb[t][v] = make_uint4(0, 0, 0, 0);
    if (k_ok) {
      load_w(0, w);
      load_x(xb);
    }
    multiply(w, xb);
  }
  // Fixed-order sum of the 4 warps' partials.
  __shared__ Acc part[kDecodeWarps][MT][NT][4][32];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
      for (int i = 0; i < 4; ++i) part[warp][m][t][i][lane] = acc[m][t][i];
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        Acc s = part[0][m][t][i][lane];
#pragma unroll
        for (int w = 1; w < kDecodeWarps; ++w) s += part[w][m][t][i][lane];
        acc[m][t][i] = s;
      }

#pragma unroll
  for (int m = 0; m < MT; ++m) {
    float s[2], bv[2];
    load_row_scale_bias<T>(g, e, row[m], s, bv);
    if (SPLIT && blockIdx.z > 0) bv[0] = bv[1] = 0.0f;  // the bias once, in K slice 0
    // GATED: intermediate column
    const int64_t j = (static_cast<int64_t>(blockIdx.y) * MT + m) * 8 + grp;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {  // tokens 2q, 2q + 1 of n-tile t
        const int64_t p = pos0 + t * 8 + 2 * q + i;
        const int32_t route = decode_route_at(g, slots, p, t * 8 + 2 * q + i);
        if (route < 0) continue;
        store_row_pair<T, INT8, GATED>(g, p, route, static_cast<float>(acc[m][t][i]),
                                       static_cast<float>(acc[m][t][2 + i]), row[m], s, bv, j,
                                       SPLIT ? blockIdx.z * g.split_stride : 0);
      }
    }
  }
}

// Weight tiles of a decode GEMM: 8 intermediate columns (16 gate and up rows) per GATED tile,
// 16 rows otherwise. The grid's height is that over MT, the tiles per CTA.
inline int64_t decode_weight_tiles(const MoeGemmArgs& g, bool gated) {
  return gated ? ceil_div(g.N / 2, 8) : ceil_div(g.N, 16);
}

// Weight chunks in flight per warp (see the top of this file); busy_per_sm: CTAs holding routes
// per SM. ahead_knob (0: this rule; 2 or 4) overrides it where 4 exists (one MMA tile per CTA,
// mt = 1; GEMM1: 8-route blocks; GEMM2: 8 and 16).
constexpr int64_t kDecodeLongK = 8192;
// CTAs holding routes per SM up to which a decode GEMM counts as having few (Mixtral's GEMM2 at
// M = 1: 512 for 132 SMs); with few, each CTA needs more bytes in flight (here, and the K split
// of GEMM2 in fused_moe_cuda.cu's decode_splits).
constexpr double kDecodeFewBusyPerSm = 4.0;
template <bool GATED>
int decode_ahead(int64_t K, int BM, int mt, double busy_per_sm, int ahead_knob) {
  if (mt > 1 || BM > (GATED ? 8 : 16)) return 2;
  if (ahead_knob != 0) return ahead_knob;
  return !GATED && K >= kDecodeLongK && busy_per_sm <= kDecodeFewBusyPerSm ? 4 : 2;
}

// AT = T: W8A16; AT = int8_t: W8A8 (g.a int8 rows, g.a_scale per row). mt: MMA tiles per CTA
// (2 exists with 2 chunks in flight and 8 or 16 routes per block). pdl: launch with
// programmatic stream serialization (pdl.cuh).
// splits: K slices (grid z; GEMM2 only, with 2 chunks in flight whatever `ahead` says), each
// writing its partial per-route rows g.split_stride elements after the previous slice's,
// summed in order by the top-k sum.
template <typename T, typename AT, bool GATED>
cudaError_t launch_decode_gemm(const MoeGemmArgs& g, int64_t max_blocks, int BM, int ahead,
                               int mt, int splits, bool pdl, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(max_blocks),
                  static_cast<unsigned>(ceil_div(decode_weight_tiles(g, GATED), mt)),
                  static_cast<unsigned>(splits));
  auto go = [&](void (*kernel)(MoeGemmArgs)) {
    return launch_kernel(kernel, grid, dim3(kDecodeThreads), 0, stream, pdl, g);
  };
  if constexpr (GATED) {
    if (splits != 1) return cudaErrorInvalidValue;  // act() needs whole sums
  } else if (splits > 1) {
    if (mt == 2 && BM == 8) return go(&moe_gemm_decode_kernel<T, AT, 1, false, 2, 2, true>);
    if (mt == 2 && BM == 16) return go(&moe_gemm_decode_kernel<T, AT, 2, false, 2, 2, true>);
    if (BM == 8) return go(&moe_gemm_decode_kernel<T, AT, 1, false, 2, 1, true>);
    if (BM == 16) return go(&moe_gemm_decode_kernel<T, AT, 2, false, 2, 1, true>);
    return go(&moe_gemm_decode_kernel<T, AT, 4, false, 2, 1, true>);
  }
  if (mt == 2 && BM == 8) return go(&moe_gemm_decode_kernel<T, AT, 1, GATED, 2, 2>);
  if (mt == 2 && BM == 16) return go(&moe_gemm_decode_kernel<T, AT, 2, GATED, 2, 2>);
  if (ahead == 4 && BM == 8) return go(&moe_gemm_decode_kernel<T, AT, 1, GATED, 4>);
  if constexpr (!GATED) {
    if (ahead == 4 && BM == 16) return go(&moe_gemm_decode_kernel<T, AT, 2, GATED, 4>);
  }
  if (BM == 8) return go(&moe_gemm_decode_kernel<T, AT, 1, GATED, 2>);
  if (BM == 16) return go(&moe_gemm_decode_kernel<T, AT, 2, GATED, 2>);
  return go(&moe_gemm_decode_kernel<T, AT, 4, GATED, 2>);
}

}  // namespace int8_moe
