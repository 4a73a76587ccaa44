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

}  // namespace int8_moe
