// Routing on the device, no host sync: (token, slot) routes are grouped by local expert into
// blocks of BM rows, each expert's segment padded to a multiple of BM. Sizes are upper bounds
// known on the host, so the launches that follow can be captured in a CUDA graph.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "pdl.cuh"

namespace int8_moe {

// Upper bound on the number of BM-row blocks. An expert with c >= 1 routes takes
// ceil(c / BM) = 1 + floor((c - 1) / BM) blocks, so k non-empty experts take at most
// k + floor((n_routes - k) / BM), which grows with k: the bound is that at k = min(E, n_routes).
// (The looser ceil(n_routes / BM) + min(E, n_routes) launched a whole row of empty CTAs at M = 1.)
inline int64_t moe_max_blocks(int64_t n_routes, int64_t E, int64_t BM) {
  const int64_t k = E < n_routes ? E : n_routes;
  return k + (n_routes - k) / BM;
}

// Local expert of a global id, or -1 (out of range, or mapped away by expert_map).
template <typename IdT>
__device__ __forceinline__ int resolve_expert(IdT id, const int32_t* expert_map, int64_t E_global,
                                              int64_t E) {
  if (id < 0 || static_cast<int64_t>(id) >= E_global) return -1;
  const int64_t e = expert_map ? expert_map[id] : static_cast<int64_t>(id);
  return (e >= 0 && e < E) ? static_cast<int>(e) : -1;
}

// One route per warp lane (lane i: route i's local expert e, -1 for none) grouped by expert, as
// the one-warp align kernel and the decode kernel's direct routing both place them: rank is the
// route's place among its expert's routes in route order, a route leads a BM-route block where
// that rank is a multiple of BM, and leaders has a bit per leading lane. Warp-collective.
struct LaneRoute {
  int rank;
  bool leads;
  uint32_t leaders;
};
__device__ __forceinline__ LaneRoute group_lanes_by_expert(int e, int BM) {
  const int lane = threadIdx.x % 32;
  const uint32_t same = __match_any_sync(0xffffffffu, e);
  LaneRoute r;
  r.rank = __popc(same & ((1u << lane) - 1u));
  r.leads = e >= 0 && r.rank % BM == 0;
  r.leaders = __ballot_sync(0xffffffffu, r.leads);
  return r;
}

// One block. Dynamic shared memory: 2 * E + 1 ints.
// sorted_routes[capacity]: route index (t * k + slot) or -1 for padding.
// block_expert[max_blocks]: the local expert of each block, or -1 for unused blocks.
// expert_end[E] (optional): end of each expert's padded segment (grouped-GEMM offsets).
template <typename IdT>
__global__ void __launch_bounds__(1024)
    moe_align_kernel(const IdT* __restrict__ ids, int64_t n_routes, const int32_t* expert_map,
                     int64_t E_global, int E, int BM, int32_t* __restrict__ sorted_routes,
                     int32_t* __restrict__ block_expert, int64_t max_blocks,
                     int32_t* __restrict__ expert_end) {
  // The first kernel of the chain (pdl.cuh): the GEMM after it may launch at once and wait.
  pdl_wait();
  pdl_launch_dependents();
  extern __shared__ int smem[];
  int* counts = smem;          // [E], later the fill cursors
  int* offsets = smem + E;     // [E + 1]
  for (int e = threadIdx.x; e < E; e += blockDim.x) counts[e] = 0;
  __syncthreads();
  for (int64_t r = threadIdx.x; r < n_routes; r += blockDim.x) {
    const int e = resolve_expert(ids[r], expert_map, E_global, E);
    if (e >= 0) atomicAdd(&counts[e], 1);
  }
  __syncthreads();
  // offsets = exclusive scan of the padded counts: each thread sums a contiguous run of experts,
  // the runs' totals are scanned across the block (warp shuffles, then one warp over the warp
  // totals), and each thread writes its run's offsets.
  {
    __shared__ int warp_total[32];
    const int per = (E + blockDim.x - 1) / blockDim.x;
    const int first = threadIdx.x * per, last = min(first + per, E);
    int run = 0;
    for (int e = first; e < last; ++e) run += (counts[e] + BM - 1) / BM * BM;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int incl = run;
#pragma unroll
    for (int o = 1; o < 32; o *= 2) {
      const int v = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += v;
    }
    if (lane == 31) warp_total[warp] = incl;
    __syncthreads();
    if (warp == 0) {
      const int nwarps = (blockDim.x + 31) / 32;
      int t = lane < nwarps ? warp_total[lane] : 0;
#pragma unroll
      for (int o = 1; o < 32; o *= 2) {
        const int v = __shfl_up_sync(0xffffffffu, t, o);
        if (lane >= o) t += v;
      }
      warp_total[lane] = t;  // inclusive scan of the warp totals
    }
    __syncthreads();
    int off = incl - run + (warp > 0 ? warp_total[warp - 1] : 0);
    for (int e = first; e < last; ++e) {
      offsets[e] = off;
      off += (counts[e] + BM - 1) / BM * BM;
    }
    if (threadIdx.x == blockDim.x - 1) offsets[E] = warp_total[(blockDim.x - 1) / 32];
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < max_blocks * BM; i += blockDim.x) sorted_routes[i] = -1;
  if (expert_end != nullptr)
    for (int e = threadIdx.x; e < E; e += blockDim.x) expert_end[e] = offsets[e + 1];
  for (int64_t b = threadIdx.x; b < max_blocks; b += blockDim.x) {
    const int64_t row = b * BM;
    int e = -1;
    if (row < offsets[E]) {  // binary search for the segment holding this block
      int lo = 0, hi = E - 1;
      while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (offsets[mid] <= row) lo = mid; else hi = mid - 1;
      }
      e = lo;
    }
    block_expert[b] = e;
  }
  for (int e = threadIdx.x; e < E; e += blockDim.x) counts[e] = 0;
  __syncthreads();
  for (int64_t r = threadIdx.x; r < n_routes; r += blockDim.x) {
    const int e = resolve_expert(ids[r], expert_map, E_global, E);
    if (e >= 0) sorted_routes[offsets[e] + atomicAdd(&counts[e], 1)] = static_cast<int32_t>(r);
  }
}

// Routes up to which the warp kernel below can align (one per lane).
constexpr int64_t kAlignWarpMaxRoutes = 32;

// moe_align_kernel's result (without expert_end) for up to kAlignWarpMaxRoutes routes, by one
// warp with no shared memory, atomics or block barriers: lane i resolves route i's expert and
// __match_any_sync groups the lanes by expert; a route's rank among its expert's routes gives
// its block and slot within the expert's segment, and a route whose rank is a multiple of BM
// starts a block (leads), so the expert's first block is the number of leaders of lower
// experts. The same blocks, experts and padding as moe_align_kernel; within an expert the
// routes go in route order (moe_align_kernel's order there is its atomics'). The block kernel
// took ~3 us at the head of Qwen3-30B-A3B's decode chain at M = 4; with this one (and align
// launched with PDL) the chain took 0.98x the time at M = 3 and 4 (benchmarks/NOTES.md,
// variant 43).
template <typename IdT>
__global__ void __launch_bounds__(32)
    moe_align_warp_kernel(const IdT* __restrict__ ids, int64_t n_routes,
                          const int32_t* expert_map, int64_t E_global, int E, int BM,
                          int32_t* __restrict__ sorted_routes, int32_t* __restrict__ block_expert,
                          int64_t max_blocks) {
  pdl_wait();  // in a PDL chain (pdl.cuh)
  pdl_launch_dependents();
  const int lane = threadIdx.x;
  const int e = lane < n_routes ? resolve_expert(ids[lane], expert_map, E_global, E) : -1;
  const LaneRoute lr = group_lanes_by_expert(e, BM);
  int lower = 0;  // leaders (blocks) of the experts below e
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    const int ej = __shfl_sync(0xffffffffu, e, j);
    lower += ((lr.leaders >> j) & 1u) != 0u && ej < e;
  }
  for (int64_t i = lane; i < max_blocks * BM; i += 32) sorted_routes[i] = -1;
  for (int64_t b = lane; b < max_blocks; b += 32) block_expert[b] = -1;
  __syncwarp();  // orders the fills before the writes below (other lanes' addresses)
  if (e >= 0) {
    const int64_t block = lower + lr.rank / BM;
    sorted_routes[block * BM + lr.rank % BM] = lane;
    if (lr.leads) block_expert[block] = e;
  }
}

}  // namespace int8_moe
