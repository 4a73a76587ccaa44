// Grouped expert GEMMs on Hopper (sm_90a) wgmma: W8A8 (int8 x int8, int32 accumulation) and
// W8A16 (bf16/fp16 activations, int8 weights widened in registers, fp32 accumulation).
// The mma.sync kernels (moe_gemm_tiled.cuh) feed the tensor cores from registers and reach about
// 430 TOP/s (W8A8) and 150-210 TFLOP/s (W8A16); wgmma issues a 64 x BN x k product per
// warpgroup with its B operand (and W8A8's A) straight from shared memory.
//
// Same "swap AB" roles as the other kernels: weight rows are wgmma's M side (A, 64 per
// warpgroup), the expert's sorted routes its N side (B, BN per CTA), both K-major as they lie in
// memory (weights [E, N, K], activations [rows, K]); 8-bit operands take no other layout.
//
// CTA: WG warpgroups (128 WG threads) over 64 WG weight rows x BN routes of one expert: 2 (128
// rows), or 4 (256 rows: each activation byte brought from L2 feeds twice the products; one CTA
// per SM) for W8A8 at BN = 128 on very long route lists (wgmma_warpgroups()). K goes in chunks of
// 128 bytes of activation row (128 int8 or 64 bf16) through a cp.async ring of wgmma_stages()
// slots; with 2 warpgroups small enough for 2 CTAs per SM up to BN = 128 (one CTA's epilogue and
// prologue overlap the other's products). Operand rows of a chunk sit in shared memory in the
// 128-byte swizzle wgmma expects (16-byte piece c of row r at piece c ^ (r % 8); 8-row groups
// 1024 bytes apart); each k step advances the descriptors' start address by 32 bytes inside the
// swizzle atom. W8A8: cp.async writes both operands swizzled; wgmma reads both from shared
// memory. W8A16: cp.async stages the int8 weight rows (64 bytes each, their own swizzle), each
// thread loads its A fragment from them and widens it (exact) in registers, and wgmma takes A
// from registers (benchmarks/NOTES.md, variant 16: 3-19% faster than widening into a shared
// bf16 tile, with one barrier per chunk instead of three). A warpgroup waits for its chunk's
// products before it builds the next fragments (ptxas serializes wgmmas whose A registers are
// written while earlier ones are in flight); the SM's other warpgroups fill the gap.
// By default (moe_gemm_wgmma_tma_kernel, where built) the weight tile comes as one TMA box instead
// of the cp.async pieces, and so does the activation tile where its rows are sorted positions
// (benchmarks/NOTES.md, variants 50 and 51): the same shared-memory layout, filled by the TMA
// unit in the same swizzles, so the products and the output are the same bits.
// Zero-filled pieces beyond N, K and for padding routes (no bytes read). Shared memory written by
// cp.async is read by wgmma through the async proxy: each writing thread fences
// (fence.proxy.async) before the barrier that publishes it. A slot is refilled only after
// wgmma.wait_group shows the products that read it retired, in both warpgroups (a barrier after
// the wait).
//
// Epilogue from the accumulators as mma.sync lays them out per warp (rows grp / grp + 8, routes
// 2q / 2q + 1 of each 8-route group), through the shared store_pair_values: acc (* a_scale) *
// w_scale (+ bias); GEMM1 (GATED) pairs gate row r with up row r + 8 as the tiled kernel does and
// writes the intermediate in the activation dtype (W8A8 quantizes it per token next); GEMM2
// writes each route's row times its router weight. Both by default through shared memory
// (MoeGemmArgs::stage_out: stmatrix into a tile of whole route rows, then 16- or 32-byte pieces
// out). No split-K: deterministic.
// Needs H % 16 == 0, I % 16 == 0 and 16-byte aligned operands.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "moe_gemm_tiled.cuh"
#include "perm16.cuh"
#include "tma.cuh"
#include "wgmma_instructions.cuh"

namespace int8_moe {

constexpr int kWgmmaBK = 128;  // bytes of activation row per chunk: one 128-byte swizzle row

// Bytes per ring slot: the weight tile (W8A8: swizzled int8 rows of 128; W8A16: staged int8 rows
// of 64, widened in registers) and the activation tile (BN swizzled rows of 128 bytes).
template <typename AT, int BN, int WG>
constexpr int wgmma_stage_bytes() {
  return 64 * WG * (sizeof(AT) == 1 ? kWgmmaBK : kWgmmaBK / 2) + BN * kWgmmaBK;
}
// W8A16: 4 slots (24 KB at BN = 128: still 2 CTAs per SM). W8A8: 3 (2 CTAs per SM up to BN = 128
// with 2 warpgroups; 48 KB slots with 4), 4 for BN = 256 (one CTA per SM anyway).
template <typename AT, int BN>
constexpr int wgmma_stages() {
  return sizeof(AT) == 2 || BN == 256 ? 4 : 3;
}
// After the slots: 64 bytes of mbarriers (one per slot, TMA; the cp.async kernels leave them
// unused), then the epilogue's tables: BN routes' RouteFactors and 64 WG weight rows' scale and
// bias (wgmma_gemm_body). W8A8 at 64 routes still fits 3 CTAs per SM: 74.8 KB each, and 1 KB
// the driver reserves per CTA, of the 76 KB a third.
constexpr int kWgmmaBarrierBytes = 64;
template <int BN, int WG>
constexpr int wgmma_table_bytes() {
  return BN * static_cast<int>(sizeof(RouteFactors)) + 64 * WG * static_cast<int>(sizeof(float2));
}
template <typename AT, int BN, int WG>
constexpr int wgmma_smem_bytes() {
  return wgmma_stages<AT, BN>() * wgmma_stage_bytes<AT, BN, WG>() + 1024 +  // + alignment
         kWgmmaBarrierBytes + wgmma_table_bytes<BN, WG>();
}
// The CTAs per SM the tile widths are tuned for (wgmma_min_ctas) in sm_90's 228 KB, 1 KB of it
// reserved per CTA: 3 at 64 routes per tile, 2 at 128 with 2 warpgroups (uint16_t: W8A16's
// 2-byte activations; only the size matters).
constexpr bool wgmma_ctas_fit(int smem, int ctas) { return ctas * (smem + 1024) <= 228 * 1024; }
static_assert(wgmma_ctas_fit(wgmma_smem_bytes<int8_t, 64, 2>(), 3) &&
                  wgmma_ctas_fit(wgmma_smem_bytes<uint16_t, 64, 2>(), 3) &&
                  wgmma_ctas_fit(wgmma_smem_bytes<int8_t, 128, 2>(), 2) &&
                  wgmma_ctas_fit(wgmma_smem_bytes<uint16_t, 128, 2>(), 2),
              "the epilogue's tables cost a CTA per SM");

// Shared-memory matrix descriptor of a K-major operand in the 128-byte swizzle: start address,
// leading offset unused for swizzled K-major (1 by convention), 1024 bytes between 8-row groups.
__device__ __forceinline__ uint64_t wgmma_desc_sw128(uint32_t smem_addr) {
  uint64_t d = static_cast<uint64_t>((smem_addr & 0x3FFFF) >> 4);
  d |= static_cast<uint64_t>(1) << 16;
  d |= static_cast<uint64_t>(1024 >> 4) << 32;
  d |= static_cast<uint64_t>(1) << 62;
  return d;
}

__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
__device__ __forceinline__ void fence_proxy_async_shared() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Keeps registers the asynchronous products read or write (accumulators, W8A16's A fragments)
// ordered around them.
template <typename U, int R>
__device__ __forceinline__ void wgmma_fence_operands(U (&d)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) {
    if constexpr (std::is_same_v<U, float>)
      asm volatile("" : "+f"(d[i])::"memory");
    else
      asm volatile("" : "+r"(d[i])::"memory");
  }
}

// W8A16 staged weight rows: 64 bytes each, 16-byte piece s of row r at piece s ^ ((r / 2) % 4),
// so that a warp's fragment loads (8 rows x 2 words) hit 16 distinct banks.
__device__ __forceinline__ int wgmma_staged_offset(int row, int piece) {
  return row * (kWgmmaBK / 2) + ((piece ^ ((row >> 1) & 3)) * 16);
}

// A 32-bit load from a shared-window address (through a generic pointer the compiler rebuilt
// the window's base every chunk).
__device__ __forceinline__ uint32_t lds_u32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(addr));
  return v;
}

// W8A16: the A fragment of k16 step s (mma.m16n8k16's layout: thread (grp, q) holds k = 2q, 2q + 1
// in a[0] (row grp) and a[1] (row grp + 8), k = 2q + 8, 2q + 9 in a[2] and a[3]), loaded from the
// staged int8 rows and widened (exact). The bytes are half q % 2 of words q / 2 and q / 2 + 2 of
// piece s; lanes q and q ^ 1 read the same words (a broadcast). staged: the slot's staged rows
// as a shared-window address (lds_u32); row: this thread's first row.
template <typename T>
__device__ __forceinline__ void wgmma_weight_fragment(uint32_t staged, int row, int q, int s,
                                                      uint32_t (&a)[4]) {
  const uint32_t p = staged + wgmma_staged_offset(row, s) + (q / 2) * 4;
  const int row8 = 8 * (kWgmmaBK / 2);  // row + 8: the same swizzle
  const int half = q % 2;
  a[0] = widen_pair<T>(lds_u32(p), half);
  a[1] = widen_pair<T>(lds_u32(p + row8), half);
  a[2] = widen_pair<T>(lds_u32(p + 8), half);
  a[3] = widen_pair<T>(lds_u32(p + row8 + 8), half);
}

// W8A16 with LDSM (wgmma_gemm_body): the A fragment of k16 step s by one ldmatrix (two 8 x 8
// matrices of 16-bit elements: the warp's 16 staged rows, 16 bytes of step s each), in place of
// 4 half-used 32-bit loads. Thread (grp, q) receives bytes 4q .. 4q + 3 of its rows grp and
// grp + 8 and uses all four, over activation rows permuted per 16 elements (perm16.cuh: the
// gather, the token rows' permuted copy and GEMM1's epilogue write them so). addr: the
// shared-window address of this lane's row of step s (wgmma_ldsm_row_offset).
__device__ __forceinline__ void ldsm_x2(uint32_t addr, uint32_t& r0, uint32_t& r1) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r0), "=r"(r1)
               : "r"(addr));
#endif
}
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t (&r)[4]) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
#endif
}
// Four 8 x 8 matrices of 16-bit elements stored transposed (stmatrix .trans, sm_90): register m
// holds thread (grp, q)'s pair (row grp, columns 2q, 2q + 1) of matrix m in the mma fragment
// layout, and lanes 8m .. 8m + 7 give the shared-window addresses where matrix m's columns 0-7
// go, 16 bytes each (its 8 rows). GEMM2's staged output (wgmma_gemm_body): a fragment's columns
// are routes, its rows weight rows, so each route's 8 rows land as one 16-byte piece.
__device__ __forceinline__ void stsm_x4_trans(uint32_t addr, const uint32_t (&r)[4]) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n"
               :
               : "r"(addr), "r"(r[0]), "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
#endif
}
// Two values rounded to T (each as Elem<T>::from_float) in one 32-bit word, a in the low half.
template <typename T>
__device__ __forceinline__ uint32_t pack_pair(float a, float b) {
  static_assert(sizeof(T) == 2, "16-bit activations");
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    const __half2 v = __floats2half2_rn(a, b);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
}
// The fragment from the words of rows grp (lo) and grp + 8 (hi).
template <typename T>
__device__ __forceinline__ void widen_fragment(uint32_t lo, uint32_t hi, uint32_t (&a)[4]) {
  a[0] = widen_pair<T>(lo, 0);
  a[1] = widen_pair<T>(hi, 0);
  a[2] = widen_pair<T>(lo, 1);
  a[3] = widen_pair<T>(hi, 1);
}
// Step s's fragment (two matrices: lanes 0-15's addresses).
template <typename T>
__device__ __forceinline__ void wgmma_weight_fragment_ldsm(uint32_t addr, uint32_t (&a)[4]) {
  uint32_t lo, hi;
  ldsm_x2(addr, lo, hi);
  widen_fragment<T>(lo, hi, a);
}
// Steps s and s + 1's fragments (s even; four matrices: lanes 16-31 address step s + 1's rows).
template <typename T>
__device__ __forceinline__ void wgmma_weight_fragments_ldsm(uint32_t addr, uint32_t (&a0)[4],
                                                            uint32_t (&a1)[4]) {
  uint32_t r[4];
  ldsm_x4(addr, r);
  widen_fragment<T>(r[0], r[1], a0);
  widen_fragment<T>(r[2], r[3], a1);
}
// Lane l's row of the ldmatrix (matrix l / 8: lanes 0-7 the warp's rows 0-7 and 8-15 its rows
// 8-15 of step 0, lanes 16-31 the same rows of step 1) as an offset into a slot's staged rows;
// step s's (s even) is this XOR (s << 4): the staged swizzle XORs the 16-byte piece index with
// (row / 2) % 4, and a slot base is 1024-byte aligned, so base + offset has the piece index in
// bits 4-5.
__device__ __forceinline__ uint32_t wgmma_ldsm_row_offset(int warp_row0, int lane) {
  const int row = warp_row0 + (lane & 7) + ((lane >> 3) & 1) * 8;
  return static_cast<uint32_t>(wgmma_staged_offset(row, lane >> 4));
}

// CTAs per SM that shared memory allows with 2 warpgroups, to which the register budget is held:
// 3 at 64 routes per tile, 2 at 128, 1 at 256 and with 4 warpgroups. (Unbounded, ptxas gave the
// non-gated W8A16 kernel 94 registers at 64 routes, one CTA per SM fewer.) 0 (no bound) for the
// pipelined W8A16 loop, which keeps the 128 registers it has unbounded (held to them it ran
// 1.03-1.04x slower in session 29's code: benchmarks/NOTES.md, variant 49;
// tests/test_cuda_compile.py checks every instance's count).
template <int BN, int WG, bool PIPELINED>
constexpr int wgmma_min_ctas() {
  return PIPELINED ? 0 : WG == 4 || BN == 256 ? 1 : BN == 128 ? 2 : 3;
}

// T: the activation dtype (output, bias); AT: what the activation rows hold, int8_t (W8A8,
// a_scale per row) or T (W8A16).
// TMA (moe_gemm_wgmma_tma_kernel): the weight tile of a chunk comes as one TMA box (wmap) instead
// of every thread's cp.async pieces, and with TMA_A the activation tile too (amap), where the
// activation rows are the sorted positions (GEMM2; GEMM1 on rows gathered per position: one box
// per chunk; GEMM1 reading token rows keeps cp.async for them). Thread 0 issues the boxes of a
// chunk, which complete on the slot's mbarrier; every thread waits on it.
// LDSM (W8A16's chunk-at-a-time loop at 64 routes per tile: wgmma_ldsm_exists): the weight
// fragments by ldmatrix over activation rows permuted per 16 elements (perm16.cuh), and GATED
// writes its intermediate permuted alike for GEMM2.
template <typename T, typename AT, int BN, bool GATED, int WG, bool PIPELINED, bool TMA,
          bool TMA_A, bool LDSM>
__device__ __forceinline__ void wgmma_gemm_body(const MoeGemmArgs& g, const CUtensorMap* wmap,
                                                const CUtensorMap* amap) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr bool INT8 = std::is_same_v<AT, int8_t>;
  using Acc = std::conditional_t<INT8, int, float>;
  constexpr int THREADS = 128 * WG;
  constexpr int ROWS = 64 * WG;  // weight rows per CTA (GATED: half gate, half up)
  constexpr int STAGES = wgmma_stages<AT, BN>();
  constexpr int STAGE_BYTES = wgmma_stage_bytes<AT, BN, WG>();
  constexpr int W_ROW = INT8 ? kWgmmaBK : kWgmmaBK / 2;  // weight bytes per row per chunk
  constexpr int A_BYTES = ROWS * W_ROW;                  // the weight part of a slot
  constexpr int KC = kWgmmaBK / static_cast<int>(sizeof(AT));  // K elements per chunk
  constexpr int PIECES = kWgmmaBK / 16;                        // 16-byte pieces per 128 bytes
  constexpr int W_PIECES = W_ROW / 16;
  constexpr int A_PER_THREAD = ROWS * W_PIECES / THREADS;      // 4 (W8A8) or 2
  constexpr int B_PER_THREAD = BN * PIECES / THREADS;          // BN / (16 WG)
  static_assert((WG == 2 || WG == 4) && BN % (16 * WG) == 0 && BN <= 256 / (WG / 2),
                "WG: 2 or 4 warpgroups; BN: a multiple of 16 WG, at most 512 / WG");
  static_assert(!LDSM || (!INT8 && BN == 64 && !PIPELINED), "LDSM: wgmma_ldsm_exists only");
  static_assert(BN <= THREADS && ROWS <= THREADS, "fill_epilogue_tables: an entry a thread");
  extern __shared__ unsigned char wgmma_smem_raw[];

  const RowTile rt = row_tile_of_cta(g.raster_group);
  const int e = g.block_expert[rt.block];
  if (e < 0) return;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wg = warp / 4, wq = warp % 4;  // warpgroup, warp within it
  const int grp = lane / 4, q = lane % 4;
  const int64_t pos0 = rt.block * BN;
  const int64_t inter = g.N / 2;
  const int64_t tile0 = rt.tile * (GATED ? ROWS / 2 : ROWS);
  const int8_t* W = g.w + static_cast<int64_t>(e) * g.N * g.K;
  const AT* A = static_cast<const AT*>(g.a);

  auto weight_row = [&](int r) { return row_tile_weight_row<GATED>(g, tile0, inter, r); };

  // Loaders: weight piece tid % W_PIECES of rows tid / W_PIECES + (128 WG / W_PIECES) i;
  // activation piece tid % 8 of rows tid / 8 + 16 WG i. (K % 16 == 0: a piece is all valid or
  // none.) Rows beyond N and padding routes are zero-filled (no bytes read: at 16 routes per
  // expert a 64-route tile is three quarters padding; their sources point into row 0), their
  // zero-fill predicates set once here, so that a chunk wholly inside K loads without a check.
  const int wpiece = tid % W_PIECES, bpiece = tid % PIECES;
  const int8_t* wsrc[A_PER_THREAD];
  bool wzero[A_PER_THREAD];  // load_chunk's zero-fill predicates
#pragma unroll
  for (int i = 0; i < A_PER_THREAD; ++i) {
    const int64_t row = weight_row(tid / W_PIECES + (THREADS / W_PIECES) * i);
    wsrc[i] = W + (row < 0 ? 0 : row) * g.K + wpiece * 16;
    wzero[i] = row < 0;
  }
  const AT* bsrc[B_PER_THREAD];
  bool bzero[B_PER_THREAD];
#pragma unroll
  for (int i = 0; i < B_PER_THREAD; ++i) {
    const int64_t p = pos0 + tid / PIECES + (THREADS / PIECES) * i;
    const int32_t route = g.sorted_routes[p];
    const int64_t r = route < 0 ? 0 : g.a_rows_are_tokens ? route / g.topk : p;
    bsrc[i] = A + r * g.K + bpiece * (KC / 8);
    bzero[i] = route < 0;
  }
  const uint32_t raw = shared_address(wgmma_smem_raw);
  const uint32_t smem = (raw + 1023u) & ~1023u;
  static_assert(TMA || !TMA_A, "the activation tile by TMA comes with the weight tile's");
  constexpr uint32_t TMA_BYTES = A_BYTES + (TMA_A ? BN * kWgmmaBK : 0);
  const uint32_t bars = smem + STAGES * STAGE_BYTES;  // TMA: slot s's mbarrier at bars + 8 s
  // The epilogue's tables past the barriers: the route block's factors, the tile's row scales
  // and biases (fill_epilogue_tables).
  auto* route_tab = reinterpret_cast<RouteFactors*>(wgmma_smem_raw + (smem - raw) +
                                                    STAGES * STAGE_BYTES + kWgmmaBarrierBytes);
  auto* row_tab = reinterpret_cast<float2*>(route_tab + BN);
  if constexpr (TMA) {
    if (tid == 0) {
#pragma unroll
      for (int s = 0; s < STAGES; ++s) mbarrier_init(bars + 8 * s, 1);
      mbarrier_init_fence();
    }
    __syncthreads();
  }
  // TMA: thread 0's copies of chunk `chunk` into ring slot `slot` (outside the tensor: zeros).
  // W8A16's fragments were read from the slot by the generic proxy; the fence orders those reads
  // (finished: the barrier before this) before the TMA unit's writes.
  auto tma_chunk = [&](int slot, int64_t chunk) {
    const uint32_t base = smem + slot * STAGE_BYTES, bar = bars + 8 * slot;
    const int32_t k0 = static_cast<int32_t>(chunk * KC);
    if constexpr (!INT8) fence_proxy_async_shared();
    mbarrier_arrive_expect_tx(bar, TMA_BYTES);
    if constexpr (GATED)
      tma_load_5d(base, wmap, k0, 0, 0, static_cast<int32_t>(tile0 / 8), e, bar);
    else
      tma_load_3d(base, wmap, k0, static_cast<int32_t>(tile0), e, bar);
    if constexpr (TMA_A) tma_load_2d(base + A_BYTES, amap, k0, static_cast<int32_t>(pos0), bar);
  };
  // TMA: every thread waits for chunk c's boxes (the slot's (c / STAGES)-th use).
  auto tma_wait = [&](int slot, int64_t c) {
    if constexpr (TMA) mbarrier_wait(bars + 8 * slot, static_cast<uint32_t>(c / STAGES) & 1u);
  };
  // Swizzled destination of this thread's pieces: the row's low 3 bits (W8A16 weights: bits 1-2)
  // are fixed across i (rows step by a multiple of 32).
  auto swz = [](int row, int piece) { return row * kWgmmaBK + ((piece ^ (row % 8)) * 16); };
  const uint32_t w_off =
      INT8 ? swz(tid / PIECES, wpiece) : wgmma_staged_offset(tid / W_PIECES, wpiece);
  const uint32_t b_off = A_BYTES + swz(tid / PIECES, bpiece);
  // Chunk `chunk` into ring slot `slot`. A chunk wholly inside K costs each piece its address
  // and the copy (the zero-fill a predicate set above); the partial last one (K % KC != 0), on
  // its own path, also zero-fills this thread's pieces beyond K, their sources back at the row's
  // chunk 0 (an address inside the row). (Selects of sizes and sources on every chunk, as
  // every wgmma loop had until variants 49 and 87, cost ~25-40 instructions per chunk: without
  // them the loops took 0.96-0.99x the time; benchmarks/NOTES.md.)
  const int64_t full64 = g.K / KC;
  const bool w_tail_ok = full64 * KC + wpiece * 16 < g.K;  // weight bytes = elements
  const bool b_tail_ok = full64 * KC + bpiece * (KC / 8) < g.K;
  const int full_chunks = static_cast<int>(full64);
  auto load_chunk = [&](int slot, int chunk) {
    if constexpr (TMA) {
      if (tid == 0) tma_chunk(slot, chunk);
    }
    const uint32_t base = smem + slot * STAGE_BYTES;
    const int64_t from = static_cast<int64_t>(chunk) * KC;
    if (chunk < full_chunks) {
      if constexpr (!TMA) {
#pragma unroll
        for (int i = 0; i < A_PER_THREAD; ++i)
          cp_async_16_zfill(base + w_off + i * (THREADS / W_PIECES) * W_ROW, wsrc[i] + from,
                            wzero[i]);
      }
      if constexpr (!TMA_A) {
#pragma unroll
        for (int i = 0; i < B_PER_THREAD; ++i)
          cp_async_16_zfill(base + b_off + i * (THREADS / PIECES) * kWgmmaBK, bsrc[i] + from,
                            bzero[i]);
      }
    } else {
      const int64_t w_from = w_tail_ok ? from : 0, b_from = b_tail_ok ? from : 0;
      if constexpr (!TMA) {
#pragma unroll
        for (int i = 0; i < A_PER_THREAD; ++i)
          cp_async_16_zfill(base + w_off + i * (THREADS / W_PIECES) * W_ROW, wsrc[i] + w_from,
                            wzero[i] || !w_tail_ok);
      }
      if constexpr (!TMA_A) {
#pragma unroll
        for (int i = 0; i < B_PER_THREAD; ++i)
          cp_async_16_zfill(base + b_off + i * (THREADS / PIECES) * kWgmmaBK, bsrc[i] + b_from,
                            bzero[i] || !b_tail_ok);
      }
    }
  };
  // The epilogue's per-route factors (routes, router weights, W8A8's a_scale: a chain of two
  // dependent loads) and per-row scales and biases, looked up while the first chunks are in
  // flight (after the prologue's loads are issued) instead of after the main loop, where ncu
  // found W8A8's GEMM2 at Qwen3-30B-A3B stalled on them half the time (benchmarks/NOTES.md,
  // variant 66). Read after the main loop's barriers.
  auto fill_epilogue_tables = [&]() {
    if (tid < BN) route_tab[tid] = route_factors<INT8>(g, pos0 + tid);
    if (tid < ROWS) row_tab[tid] = row_scale_bias<T>(g, e, weight_row(tid));
  };
  Acc acc[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) acc[i] = 0;
  const int chunks = static_cast<int>((g.K + KC - 1) / KC);
  // The ring slots of the chunk being multiplied and of the one being loaded, stepped with a
  // wrap instead of a 64-bit remainder per chunk (a division with W8A8's 3 slots).
  auto next_slot = [](int slot) { return slot + 1 == STAGES ? 0 : slot + 1; };
  const int frag_row = wg * 64 + wq * 16 + grp;  // W8A16: this thread's A fragment rows
  const uint32_t ldsm_off = wgmma_ldsm_row_offset(wg * 64 + wq * 16, lane);  // (LDSM)
  // Runs loop(width) with width an integral_constant NN: the products over the tile's first NN
  // routes. Narrow (g.narrow_tail): an expert's last route block holds its remaining routes
  // first and padding after (align fills positions in order), so the products run over the
  // first quarter, half or three quarters of the tile's routes where the rest are padding
  // (W8A8 at 64-route tiles: m64n16k32 reads the weight operand as m64n64k32 does but a quarter
  // of the activation rows and tensor-core work; W8A16 takes its weights from registers).
  // Accumulators past NN stay 0 and belong to padding routes, which the epilogue skips. W8A8's
  // int32 sums are the same bits as the full width's; W8A16's fp32 products of each route are
  // the same instructions' over fewer columns. Every warp finds the last route held by ballot
  // (the same answer CTA-wide). Each width's loop retires its products before returning: the
  // widths' accumulators meet after the choice (register moves there while products run would
  // serialize every wgmma: ptxas C7515).
  // Routes of the block up to its last real one where narrow_tail counts them (else BN): the
  // staged epilogues stage no group of routes wholly past it.
  int held = BN;
  auto with_width = [&](auto&& loop) {
    if (g.narrow_tail) {
      int last = -1;
#pragma unroll
      for (int j = 0; j < BN / 32; ++j) {
        const unsigned m = __ballot_sync(0xffffffffu, g.sorted_routes[pos0 + 32 * j + lane] >= 0);
        if (m != 0u) last = 32 * j + 31 - __clz(static_cast<int>(m));
      }
      held = last + 1;
    }
    if (held <= BN / 4)
      loop(std::integral_constant<int, BN / 4>{});
    else if (held <= BN / 2)
      loop(std::integral_constant<int, BN / 2>{});
    else if (held <= 3 * BN / 4)
      loop(std::integral_constant<int, 3 * BN / 4>{});
    else
      loop(std::integral_constant<int, BN>{});
  };
  if constexpr (!INT8 && PIPELINED) {
    // W8A16 pipelined inside the warpgroup: the fragments of k16 step s + 1 are loaded and
    // widened while the products of steps s, s - 1 and s - 2 run, each step's fragments in
    // registers of their own (a[s % 4]; step s - 3 has retired before a[(s + 1) % 4] is
    // rewritten). Products stay in flight across chunks, so at chunk c's start the slot of
    // chunk c - 1 may still be read: loads run STAGES - 2 chunks ahead (the slot of c - 2 is
    // free). The same products in the same order as below: the same sums bit for bit.
    // Its loads are load_chunk's (no per-chunk selects of sizes and sources: ~25 instructions
    // fewer per full chunk; 0.975-0.995x the wgmma kernels' time at Qwen3-30B-A3B M = 1024-16384,
    // NOTES variant 87), its chunk counter 64-bit and its slots by remainder, unbounded (128
    // registers; bounded in session 29's code the selects' removal measured 1.03-1.04x slower,
    // unbounded 1.2-1.4x at 138: variant 49).
    const int64_t chunks64 = (g.K + KC - 1) / KC;
    constexpr int AHEAD = STAGES - 2;
#pragma unroll
    for (int s = 0; s < AHEAD; ++s) {
      if (s < chunks64) load_chunk(s, s);
      cp_async_commit();
    }
    fill_epilogue_tables();
    with_width([&](auto width) {
      constexpr int NN = decltype(width)::value;
      uint32_t a[4][4];
      for (int64_t c = 0; c < chunks64; ++c) {
        cp_async_wait<AHEAD - 1>();  // this thread's pieces of chunk c have landed
        if constexpr (!TMA_A) fence_proxy_async_shared();  // ... visible to the async proxy (wgmma)
        tma_wait(static_cast<int>(c % STAGES), c);  // TMA: chunk c's boxes have landed
        __syncthreads();             // ... for every thread; chunk c - 2's products have retired
        const int64_t next = c + AHEAD;
        if (next < chunks64) load_chunk(static_cast<int>(next % STAGES), static_cast<int>(next));
        cp_async_commit();
        const uint32_t base = smem + static_cast<int>(c % STAGES) * STAGE_BYTES;
        const uint64_t db = wgmma_desc_sw128(base + A_BYTES);
        wgmma_weight_fragment<T>(base, frag_row, q, 0, a[0]);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          wgmma_fence();
          wgmma_f16_rs<T, NN>(acc, a[k], db + 2 * k);  // +32 bytes a k16
          wgmma_commit();
          wgmma_fence_operands(acc);
          wgmma_wait<3>();  // step s - 3 has retired
          wgmma_fence_operands(acc);
          if (k < 3) wgmma_weight_fragment<T>(base, frag_row, q, k + 1, a[k + 1]);
        }
      }
      wgmma_fence_operands(acc);
      wgmma_wait<0>();  // (with_width)
      wgmma_fence_operands(acc);
    });
  } else {
    // Loads run STAGES - 1 chunks ahead.
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < chunks) load_chunk(s, s);
      cp_async_commit();
    }
    fill_epilogue_tables();
    // The chunk loop with products over the tile's first NN routes (with_width).
    auto chunk_loop = [&](auto width) {
      constexpr int NN = decltype(width)::value;
      int slot = 0, fill = STAGES - 1;  // c % STAGES, (c + STAGES - 1) % STAGES
      for (int c = 0; c < chunks; ++c) {
        cp_async_wait<STAGES - 2>();  // this thread's pieces of chunk c have landed
        if constexpr (!TMA_A) fence_proxy_async_shared();  // ... visible to the async proxy (wgmma)
        tma_wait(slot, c);            // TMA: chunk c's boxes have landed
        // ... for every thread. (W8A8 with both tiles by TMA needs no barrier here: each thread
        // waited on the boxes itself, and the barrier below frees the slots.)
        if constexpr (!(INT8 && TMA_A)) __syncthreads();
        const uint32_t base = smem + slot * STAGE_BYTES;
        const uint64_t db = wgmma_desc_sw128(base + A_BYTES);
        const int next = c + STAGES - 1, fill_slot = fill;
        slot = next_slot(slot);
        fill = next_slot(fill);
        if constexpr (INT8) {
          // Iteration c refills the slot of chunk c - 1 once its products have retired in both
          // warpgroups, while chunk c's products run.
          const uint64_t da = wgmma_desc_sw128(base + wg * 64 * kWgmmaBK);
          wgmma_fence();
#pragma unroll
          for (int k = 0; k < 4; ++k)
            wgmma_s8<NN>(acc, da + 2 * k, db + 2 * k);  // +32 bytes a k32
          wgmma_commit();
          wgmma_fence_operands(acc);
          wgmma_wait<1>();  // chunk c - 1's products have retired in this warpgroup
          wgmma_fence_operands(acc);
          __syncthreads();  // ... and in the other: its slot is free
          if (next < chunks) load_chunk(fill_slot, next);
          cp_async_commit();
        } else {
          // Each warpgroup waited for its chunk c - 1 products before the barrier above, so the
          // slot of chunk c - 1 is free now; the other warpgroups of the SM keep the tensor cores
          // busy while this one builds its next fragments.
          if (next < chunks) load_chunk(fill_slot, next);
          cp_async_commit();
          uint32_t a[4][4];
#pragma unroll
          for (int k = 0; k < 4; k += 2) {
            // LDSM: two steps per ldmatrix on the TMA feed; the cp.async one, whose loaders hold
            // ~8 registers more, spilled 36-44 bytes so (4-12 with one step per ldmatrix).
            [[maybe_unused]] const uint32_t at = (base + ldsm_off) ^ static_cast<uint32_t>(k << 4);
            if constexpr (LDSM && TMA) {
              wgmma_weight_fragments_ldsm<T>(at, a[k], a[k + 1]);
            } else if constexpr (LDSM) {
              wgmma_weight_fragment_ldsm<T>(at, a[k]);
              wgmma_weight_fragment_ldsm<T>(at ^ 16u, a[k + 1]);
            } else {
              wgmma_weight_fragment<T>(base, frag_row, q, k, a[k]);
              wgmma_weight_fragment<T>(base, frag_row, q, k + 1, a[k + 1]);
            }
          }
          wgmma_fence();
#pragma unroll
          for (int k = 0; k < 4; ++k)
            wgmma_f16_rs<T, NN>(acc, a[k], db + 2 * k);  // +32 bytes a k16
          wgmma_commit();
          wgmma_fence_operands(acc);
          wgmma_wait<0>();
          wgmma_fence_operands(acc);
          // The products read a[] asynchronously: keep those registers untouched until now.
#pragma unroll
          for (int k = 0; k < 4; ++k) wgmma_fence_operands(a[k]);
        }
      }
      wgmma_fence_operands(acc);
      wgmma_wait<0>();
      wgmma_fence_operands(acc);
    };
    with_width(chunk_loop);
  }
  wgmma_fence_operands(acc);
  wgmma_wait<0>();
  wgmma_fence_operands(acc);
  cp_async_wait<0>();  // nothing may be in flight into shared memory when the CTA exits
  // Both warpgroups' products have retired (the ring is free for the staged output), and every
  // thread's table entries are visible.
  __syncthreads();

  // Accumulator d[4n + i] is (row grp, route 8n + 2q + i) and d[4n + 2 + i] (row grp + 8, same
  // route) of warp wq's 16 rows of this warpgroup's 64.
  const int r = wg * 64 + wq * 16 + grp;
  const int64_t row[2] = {weight_row(r), weight_row(r + 8)};
  const float2 sb0 = row_tab[r], sb1 = row_tab[r + 8];
  const float s[2] = {sb0.x, sb1.x}, bv[2] = {sb0.y, sb1.y};
  int64_t j = tile0 + (r / 16) * 8 + r % 8;  // GATED: intermediate column
  if constexpr (LDSM && GATED) j = (j & ~int64_t{15}) | perm16_position(static_cast<int>(j & 15));
  // This thread's value pairs (its two rows of each route) scaled, acc * in_mul * w_scale + bias,
  // each handed to emit(rl, its route's factors, v0, v1); padding routes skipped.
  auto each_scaled_pair = [&](auto&& emit) {
#pragma unroll
    for (int n = 0; n < BN / 8; ++n) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int rl = n * 8 + 2 * q + i;
        const RouteFactors f = route_tab[rl];
        if (f.route < 0) continue;
        float v0, v1;
        scale_row_pair(static_cast<float>(acc[4 * n + i]),
                       static_cast<float>(acc[4 * n + 2 + i]), f.in_mul, s, bv, v0, v1);
        emit(rl, f, v0, v1);
      }
    }
  };
  if constexpr (GATED) {
    if (g.stage_out) {
      // GEMM1's intermediate tile through shared memory, as GEMM2's output below: thread (grp, q)
      // holds one intermediate column (its gate row grp paired with up row grp + 8) of 32
      // routes, and its 2-byte stores (8 columns x 4 routes a warp store) half-fill 32-byte
      // sectors. Each 8 columns x 8 routes of a warp go to a [route][column] tile by one
      // matrix of stmatrix .trans (the mma fragment's rows are the columns here), then the CTA
      // writes each route's COLS contiguous values as 32-byte pieces (16 columns: LDSM's
      // permutation per 16 applied on the way, perm16_words). The same values rounded the same
      // way as store_pair_values'.
      constexpr int COLS = ROWS / 2;  // intermediate columns of the tile
      constexpr int SROW = COLS + 8;  // a staged route (16 bytes over: stmatrix conflict-free)
      static_assert(BN * SROW * static_cast<int>(sizeof(T)) <= STAGES * STAGE_BYTES,
                    "the staged tile fits the ring");
      static_assert(BN % 32 == 0 && COLS % 16 == 0,
                    "whole stmatrix x4 groups and 16-column pieces");
      T* stage = reinterpret_cast<T*>(wgmma_smem_raw + (smem - raw));
      const uint32_t stage_addr = shared_address(stage);
      const int c0 = (wg * 4 + wq) * 8;  // the warp's first column of the tile
      // act(gate, up) chosen once for the tile: silu (SPEC's default) without the per-value
      // switch, whose jump table split the 32 values' math into blocks run one after another.
      auto stage_tile = [&](auto&& act) {
#pragma unroll
        for (int t = 0; t < BN / 32; ++t) {  // matrices u = 0 .. 3: routes 8 (4t + u) .. + 7
          // Groups wholly past the block's last real route hold padding only, which the
          // copy-out skips: neither activated nor staged (held is the same CTA-wide).
          if (t > 0 && 32 * t >= held) break;
          uint32_t reg[4];
#pragma unroll
          for (int u = 0; u < 4; ++u) {
            const int n = 4 * t + u;
            float a[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
              float v0, v1;
              scale_row_pair(static_cast<float>(acc[4 * n + i]),
                             static_cast<float>(acc[4 * n + 2 + i]),
                             route_tab[n * 8 + 2 * q + i].in_mul, s, bv, v0, v1);
              a[i] = act(v0, v1);
            }
            reg[u] = pack_pair<T>(a[0], a[1]);
          }
          const int rl = (4 * t + lane / 8) * 8 + lane % 8;  // this lane: matrix lane / 8
          stsm_x4_trans(stage_addr + static_cast<uint32_t>((rl * SROW + c0) * sizeof(T)), reg);
        }
      };
      if (g.act == Activation::kSilu)
        stage_tile([](float gate, float up) { return silu_and_mul(gate, up); });
      else
        stage_tile([&](float gate, float up) {
          return gated_activation(g.act, gate, up, g.alpha, g.limit);
        });
      __syncthreads();
      constexpr int ROW_PIECES = COLS / 16;  // 32-byte pieces of a staged route row
      // I % 16 == 0: a piece is all inside I or all beyond it.
      for (int idx = tid; idx < BN * ROW_PIECES; idx += THREADS) {
        const int rl = idx / ROW_PIECES, piece = idx % ROW_PIECES;
        const int64_t col = tile0 + piece * 16;
        if (route_tab[rl].route < 0 || col >= inter) continue;
        const uint4* src = reinterpret_cast<const uint4*>(stage + rl * SROW + piece * 16);
        uint4 lo = src[0], hi = src[1];
        if constexpr (LDSM) perm16_words(lo, hi);
        uint4* dst = reinterpret_cast<uint4*>(static_cast<T*>(g.out) + (pos0 + rl) * inter + col);
        dst[0] = lo;
        dst[1] = hi;
      }
      return;
    }
  } else {
    if (g.stage_out) {
      // GEMM2's tile through shared memory: each thread's values (2 bytes apart by 8 rows, 4 routes
      // a warp store: half-written 32-byte sectors) staged as [route][row], then written as
      // 16-byte pieces of whole route rows (a route's ROWS values are contiguous in its output
      // row). The ring is free (the barrier above).
      // SROW: ROWS + 8 elements a staged route (16 bytes over: the 8 routes of a warp's staging
      // stores land 8 banks apart, and a row stays 16-byte aligned).
      constexpr int SROW = ROWS + 8;
      static_assert(BN * SROW * static_cast<int>(sizeof(T)) <= STAGES * STAGE_BYTES,
                    "the staged tile fits the ring");
      T* stage = reinterpret_cast<T*>(wgmma_smem_raw + (smem - raw));
      // Each 8 routes x 8 rows of this warp's fragment by stmatrix .trans (4 matrices an
      // instruction, two values a register) instead of a 2-byte store per value; padding routes
      // before `held` are staged too (factors 1: finite values the copy below skips), so no
      // branch per route.
      // Matrix 2n + h: routes 8n .. 8n + 7, rows r0 + 8h .. + 7 (r0: the warp's first row).
      static_assert(BN % 16 == 0, "whole stmatrix x4 groups");
      const int r0 = wg * 64 + wq * 16;
      const uint32_t stage_addr = shared_address(stage);
#pragma unroll
      for (int t = 0; t < BN / 16; ++t) {  // matrices 4t .. 4t + 3: n = 2t, 2t + 1
        if (t > 0 && 16 * t >= held) break;  // padding only past here (the copy skips it)
        uint32_t reg[4];
#pragma unroll
        for (int u = 0; u < 2; ++u) {
          const int n = 2 * t + u;
          float v[2][2];  // [h][i]: row r + 8h, route 8n + 2q + i
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            const RouteFactors f = route_tab[n * 8 + 2 * q + i];
            scale_row_pair(static_cast<float>(acc[4 * n + i]),
                           static_cast<float>(acc[4 * n + 2 + i]), f.in_mul, s, bv, v[0][i],
                           v[1][i]);
            v[0][i] *= f.out_mul;
            v[1][i] *= f.out_mul;
          }
          reg[2 * u] = pack_pair<T>(v[0][0], v[0][1]);
          reg[2 * u + 1] = pack_pair<T>(v[1][0], v[1][1]);
        }
        const int m = lane / 8, j = lane % 8;  // this lane addresses matrix m's column j
        const int rl = (2 * t + m / 2) * 8 + j, row = r0 + 8 * (m % 2);
        stsm_x4_trans(stage_addr + static_cast<uint32_t>((rl * SROW + row) * sizeof(T)), reg);
      }
      __syncthreads();
      constexpr int ROW_PIECES = ROWS / 8;  // 16-byte pieces of a staged route row
      // N % 8 == 0 (H % 16): a piece is all inside N or all beyond it.
      for (int idx = tid; idx < BN * ROW_PIECES; idx += THREADS) {
        const int rl = idx / ROW_PIECES, piece = idx % ROW_PIECES;
        const int32_t route = route_tab[rl].route;
        const int64_t col = tile0 + piece * 8;
        if (route < 0 || col >= g.N) continue;
        *reinterpret_cast<uint4*>(static_cast<T*>(g.out) + static_cast<int64_t>(route) * g.N +
                                  col) = *reinterpret_cast<const uint4*>(stage + rl * SROW +
                                                                         piece * 8);
      }
      return;
    }
  }
  each_scaled_pair([&](int rl, const RouteFactors& f, float v0, float v1) {
    store_pair_values<T, GATED>(
        g, pos0 + rl, f.route, v0, v1, [&] { return f.out_mul; }, row, j);
  });
#else
  __trap();  // launched only where wgmma_supported() (an sm_90a build on a 9.0 device)
#endif
}

template <typename T, typename AT, int BN, bool GATED, int WG, bool PIPELINED = false,
          bool LDSM = false>
__global__ void __launch_bounds__(128 * WG, (wgmma_min_ctas<BN, WG, PIPELINED>()))
    moe_gemm_wgmma_kernel(MoeGemmArgs g) {
  wgmma_gemm_body<T, AT, BN, GATED, WG, PIPELINED, false, false, LDSM>(g, nullptr, nullptr);
}
// The tensor maps: wgmma_weight_map(), wgmma_activation_map() (unused without TMA_A).
template <typename T, typename AT, int BN, bool GATED, int WG, bool PIPELINED, bool TMA_A,
          bool LDSM = false>
__global__ void __launch_bounds__(128 * WG, (wgmma_min_ctas<BN, WG, PIPELINED>()))
    moe_gemm_wgmma_tma_kernel(MoeGemmArgs g, const __grid_constant__ CUtensorMap wmap,
                              const __grid_constant__ CUtensorMap amap) {
  wgmma_gemm_body<T, AT, BN, GATED, WG, PIPELINED, true, TMA_A, LDSM>(g, &wmap, &amap);
}

// Routes per tile for a given average number of routes per expert, the routes in all, the two
// reductions (H for GEMM1, I for GEMM2) and the mode (benchmarks/NOTES.md, variants 9 and 10).
// W8A16: 64 up to 48 routes per expert, else 128 (0.79-0.97x the time of 64 at 64-256 per
// expert; at 48 per expert, where a 128-route tile is mostly padding, 64 took 0.86-0.91x the
// time of 128 on Mixtral at TP 1 and 8, `benchmarks/results/tune_moe_tp_w8a16_check_h100.log`);
// but 64 up to 64 per expert where I <= 1024 and up to 128 where I <= 256: against the pipelined
// 128-route loop (`benchmarks/results/tune_moe_tiles_pipelined_h100.log`, two rounds) 64 took
// 0.90-0.95x the time at I = 96-192 (Qwen3s, OLMoE, DeepSeek-V2-Lite TP 8) at 64 and 128 per
// expert, 0.94-0.96x at Qwen3-30B-A3B's 768 and 0.99x at OLMoE's 1024 at 64 per expert, and
// 1.01-1.25x from I = 1408 (at 128 per expert from I = 768). On an H200 with today's kernels
// (`benchmarks/results/knob_ab_w8a16_bn_h200.log`) 128 took 0.961x / 0.955x the time at 64 per
// expert at Qwen3-30B-A3B's 768 / OLMoE's 1024 (and 1.21-1.32x at 32-48 per expert): above
// I = 256, 64 only up to 48 per expert.
// W8A8 (narrow last tiles on, an H200: `benchmarks/results/knob_ab_w8a8_bn_h200.log`, 64 / 128
// forced over SPEC's shapes and TP splits at 512-16384 tokens, best of two rounds): 128 from 192
// routes per expert on every shape (0.79-1.00x the time of 64; Qwen3-30B-A3B 0.97x / 0.92x at
// M = 4096 / 16384), and from above 64 where K is long (min(H, I) >= 2048, or >= 1536 with
// >= 8192 routes) or GEMM1's is (H >= 4096: Qwen3-235B-A22B, DeepSeek-V3 at TP 1-8, Mixtral;
// 0.88-1.00x at 128 per expert), from 64 with long K and >= 16384 routes (DeepSeek-V3 M = 2048:
// 0.94x). Below, 64 (3 CTAs per SM) wins: 1.03-1.22x at 32-64 per expert, 1.01-1.04x at OLMoE's
// and Qwen1.5-MoE's 128-137 (H = 2048). Over the sweep's 90 rows the rule's choice is within
// 0.8% of the faster width (Qwen3-30B-A3B at 128 per expert: 128 took 0.99x).
inline int wgmma_block_n(int64_t per_expert, int64_t n_routes, int64_t H, int64_t I,
                         bool int8_act) {
  if (!int8_act) return per_expert <= (I <= 256 ? 128 : 48) ? 64 : 128;
  const int64_t k_min = std::min(H, I);
  const bool long_k = k_min >= 2048 || (k_min >= 1536 && n_routes >= 8192);
  if (per_expert >= 192 || (per_expert > 64 && (long_k || H >= 4096))) return 128;
  return per_expert >= 64 && long_k && n_routes >= 16384 ? 128 : 64;
}

// W8A16's pipelined main loop (PIPELINED: a warpgroup widens the next k16 step's fragments while
// its products run, up to 3 steps in flight) is built at 128 routes per tile, where it took
// 0.95-0.98x the time of the chunk-at-a-time loop at 256-4096 routes per expert on an H100
// (Mixtral-8x7B M = 4096 / 16384 and Qwen3-30B-A3B M = 4096 / 16384, forced, two rounds) and
// 0.97-1.01x at 64-256 (M = 1024 of both); at 64 routes per tile it was 1.07-1.12x slower
// (benchmarks/NOTES.md, variant 45), and 1.005-1.07x even in a kernel held to 3 CTAs per SM, as
// many as the chunk-at-a-time loop gets there (variant 47).
constexpr bool wgmma_pipeline_exists(int BN) { return BN == 128; }

// Warpgroups per CTA (2: 128 weight rows; 4: 256). W8A8 at BN = 128 takes 4 from
// kWgmmaWideMinPerExpert routes per expert (Mixtral-8x7B at 4096 per expert 18.7 vs 21.0 ms on
// the cp.async feed; benchmarks/NOTES.md, variant 17), and wherever routes per expert x I (GEMM2's
// K; GEMM1's weight tiles per route block grow with it too) reach kWgmmaWideMinRoutesTimesI: on
// the TMA feed (`benchmarks/results/knob_ab_wg_rule_h100.log`, 4 / 2 warpgroups) Mixtral's I =
// 14336 took 0.968x / 0.936x / 0.929x the time at 512 / 1024 / 1536 per expert (and 1.05x at
// 256, `knob_ab_wg_h100.log`), TP 2's 7168 1.009x / 0.985x / 0.996x, TP 4's 3584 1.019x / 1.004x /
// 1.002x (variant 56). The other SPEC shapes (I <= 3584) reach the product only past 2048.
// W8A16's pipelined loop with 4 took 1.02-1.08x the time in 12 of 17 rows on the TMA feed too
// (variant 57): W8A16 keeps 2.
constexpr int64_t kWgmmaWideMinPerExpert = 2048;
constexpr int64_t kWgmmaWideMinRoutesTimesI = 512 * 14336;  // = 1024 x 7168
// Where the 4-warpgroup kernel is built: the one definition the rule, the knob and the launcher
// share.
constexpr bool wgmma_wide_exists(int BN, bool int8_act) { return int8_act && BN == 128; }
inline int wgmma_warpgroups(int BN, int64_t per_expert, int64_t I, bool int8_act) {
  const bool wide =
      per_expert >= kWgmmaWideMinPerExpert || per_expert * I >= kWgmmaWideMinRoutesTimesI;
  return wgmma_wide_exists(BN, int8_act) && wide ? 4 : 2;
}

// The weight tensor map of a wgmma GEMM: a box of the CTA's 64 WG weight rows x one chunk
// (W8A8 128 bytes, 128-byte swizzle; W8A16 64, 64-byte swizzle: the staged layout) at
// coordinates (k, ..., tile row, expert). GATED: w13 [E, 2I, K] seen as 5 dimensions (k, row i of
// an 8-row group, gate / up, group, expert), so that one box holds, per group, 8 gate rows then
// the 8 matching up rows, the order row_tile_weight_row gives (gate and up rows j and I + j, or
// 2j and 2j + 1 for swigluoai's interleaved layout). Rows past N (groups past I / 8) and K are
// zero-filled, as the cp.async loads zero-fill them.
template <typename AT, int WG, bool GATED>
bool wgmma_weight_map(CUtensorMap* map, const MoeGemmArgs& g) {
  constexpr int ROWS = 64 * WG;
  const uint64_t K = g.K, N = g.N, row = K;  // bytes per weight row
  const uint32_t chunk = sizeof(AT) == 1 ? kWgmmaBK : kWgmmaBK / 2;
  if constexpr (GATED) {
    const bool oai = g.act == Activation::kSwigluOai;
    const uint64_t inter = N / 2;
    const uint64_t dims[5] = {K, 8, 2, inter / 8, static_cast<uint64_t>(g.E)};
    const uint64_t strides[4] = {oai ? 2 * row : row, oai ? row : inter * row,
                                 oai ? 16 * row : 8 * row, N * row};
    const uint32_t box[5] = {chunk, 8, 2, ROWS / 16, 1};
    return encode_tensor_map(map, g.w, 1, 5, dims, strides, box, static_cast<int>(chunk));
  } else {
    const uint64_t dims[3] = {K, N, static_cast<uint64_t>(g.E)};
    const uint64_t strides[2] = {row, N * row};
    const uint32_t box[3] = {chunk, ROWS, 1};
    return encode_tensor_map(map, g.w, 1, 3, dims, strides, box, static_cast<int>(chunk));
  }
}
// The activation tensor map where the rows are the sorted positions (GEMM2's intermediate, or
// GEMM1's gathered rows) [rows, K]: a box of BN rows x one 128-byte chunk, 128-byte swizzle.
template <typename AT, int BN>
bool wgmma_activation_map(CUtensorMap* map, const MoeGemmArgs& g, int64_t rows) {
  const uint64_t dims[2] = {static_cast<uint64_t>(g.K), static_cast<uint64_t>(rows)};
  const uint64_t strides[1] = {g.K * sizeof(AT)};
  const uint32_t box[2] = {kWgmmaBK / sizeof(AT), BN};
  return encode_tensor_map(map, g.a, sizeof(AT), 2, dims, strides, box, kWgmmaBK);
}

template <typename T, typename AT, int BN, bool GATED, int WG, bool PIPELINED = false,
          bool LDSM = false>
cudaError_t launch_wgmma_gemm_bn(const MoeGemmArgs& g, int64_t max_blocks, cudaStream_t stream) {
  return launch_row_tiles<GATED>(&moe_gemm_wgmma_kernel<T, AT, BN, GATED, WG, PIPELINED, LDSM>, g,
                                 max_blocks, 128 * WG, wgmma_smem_bytes<AT, BN, WG>(),
                                 BN * g.K * static_cast<int64_t>(sizeof(AT)), stream, 64 * WG);
}
// The TMA-fed kernel where its tensor maps encode (g.E: experts of g.w), else the cp.async one;
// the activation tile by TMA too where the activation rows are the sorted positions.
template <typename T, typename AT, int BN, bool GATED, int WG, bool PIPELINED = false,
          bool LDSM = false>
cudaError_t launch_wgmma_gemm_tma(const MoeGemmArgs& g, int64_t max_blocks,
                                  cudaStream_t stream) {
  alignas(64) CUtensorMap wmap{}, amap{};
  const bool by_position = !GATED || !g.a_rows_are_tokens;  // (GEMM2's rows always are)
  const bool ok = wgmma_weight_map<AT, WG, GATED>(&wmap, g) &&
                  (!by_position || wgmma_activation_map<AT, BN>(&amap, g, max_blocks * BN));
  if (!ok)
    return launch_wgmma_gemm_bn<T, AT, BN, GATED, WG, PIPELINED, LDSM>(g, max_blocks, stream);
  auto launch = [&](auto* kernel) {
    return launch_row_tiles<GATED>(kernel, g, max_blocks, 128 * WG,
                                   wgmma_smem_bytes<AT, BN, WG>(),
                                   BN * g.K * static_cast<int64_t>(sizeof(AT)), stream, 64 * WG,
                                   wmap, amap);
  };
  if constexpr (GATED) {
    if (!by_position)
      return launch(&moe_gemm_wgmma_tma_kernel<T, AT, BN, GATED, WG, PIPELINED, false, LDSM>);
  }
  return launch(&moe_gemm_wgmma_tma_kernel<T, AT, BN, GATED, WG, PIPELINED, true, LDSM>);
}

// W8A16's fragments by ldmatrix (LDSM) exist in the chunk-at-a-time loop at 64 routes per tile:
// there the fragments of a chunk are built before its products, and one ldmatrix a k16 step
// instead of four 32-bit loads took 0.973x the time at Qwen3-30B-A3B M = 256 / 1024; in the
// pipelined loop (128 routes), which builds them under the previous step's products, the
// forward took 1.00-1.06x the time on seven models (benchmarks/NOTES.md, variant 61).
constexpr bool wgmma_ldsm_exists(int BN) { return BN == 64; }

// AT = int8_t: W8A8 (g.a int8 rows, g.a_scale per row); AT = T: W8A16. BN: wgmma_block_n();
// the routing must be aligned to the same BN. wg: wgmma_warpgroups() (4 exists for W8A8 at
// BN = 128; 2 elsewhere). tma: the TMA-fed kernel where it is built (64 and 128 routes per tile
// as the default rules reach them: W8A16's pipelined loop at 128), with g.E the experts of g.w.
// ldsm (W8A16 where wgmma_ldsm_exists): the fragments by ldmatrix, g.a's rows permuted per 16
// elements (perm16.cuh) and GATED's intermediate written so.
template <typename T, typename AT, bool GATED>
cudaError_t launch_wgmma_gemm(const MoeGemmArgs& g, int64_t max_blocks, int BN, int wg,
                              cudaStream_t stream, bool pipelined = false, bool tma = false,
                              bool ldsm = false) {
  constexpr bool INT8 = std::is_same_v<AT, int8_t>;
  if constexpr (!INT8) {
    if (ldsm && wgmma_ldsm_exists(BN))
      return tma ? launch_wgmma_gemm_tma<T, AT, 64, GATED, 2, false, true>(g, max_blocks, stream)
                 : launch_wgmma_gemm_bn<T, AT, 64, GATED, 2, false, true>(g, max_blocks, stream);
  }
  if (tma && BN == 64)  // (the unpipelined loop: 2 warpgroups)
    return launch_wgmma_gemm_tma<T, AT, 64, GATED, 2>(g, max_blocks, stream);
  if constexpr (INT8) {
    if (tma && BN == 128)
      return wg == 4 ? launch_wgmma_gemm_tma<T, AT, 128, GATED, 4>(g, max_blocks, stream)
                     : launch_wgmma_gemm_tma<T, AT, 128, GATED, 2>(g, max_blocks, stream);
  } else {
    if (tma && BN == 128 && pipelined)
      return launch_wgmma_gemm_tma<T, AT, 128, GATED, 2, true>(g, max_blocks, stream);
  }
  if constexpr (INT8) {  // instantiated where wgmma_wide_exists only
    if (wg == 4 && wgmma_wide_exists(BN, true))
      return launch_wgmma_gemm_bn<T, AT, 128, GATED, 4>(g, max_blocks, stream);
  } else {
    if (pipelined && wgmma_pipeline_exists(BN))
      return launch_wgmma_gemm_bn<T, AT, 128, GATED, 2, true>(g, max_blocks, stream);
  }
  if (BN == 64) return launch_wgmma_gemm_bn<T, AT, 64, GATED, 2>(g, max_blocks, stream);
  if (BN == 128) return launch_wgmma_gemm_bn<T, AT, 128, GATED, 2>(g, max_blocks, stream);
  return launch_wgmma_gemm_bn<T, AT, 256, GATED, 2>(g, max_blocks, stream);
}

}  // namespace int8_moe
