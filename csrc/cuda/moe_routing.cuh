// Routing on the device, no host sync: (token, slot) routes are grouped by local expert into
// blocks of BM rows, each expert's segment padded to a multiple of BM. Sizes are upper bounds
// known on the host, so the launches that follow can be captured in a CUDA graph.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "pdl.cuh"
#include "route_lookup.cuh"

namespace int8_moe {

// Inclusive prefix sum of v over the warp's lanes (every lane calls it).
__device__ __forceinline__ int warp_inclusive_sum(int v) {
#pragma unroll
  for (int o = 1; o < 32; o *= 2) {
    const int u = __shfl_up_sync(0xffffffffu, v, o);
    if (threadIdx.x % 32 >= o) v += u;
  }
  return v;
}

// offsets[0..E] = exclusive scan of the counts padded to multiples of BM (offsets[E]: the
// padded total), by the whole block: each thread sums a contiguous run of experts, the runs'
// totals are scanned across the block (warp shuffles, then one warp over the warp totals), and
// each thread writes its run's offsets. Block-collective; ends with a barrier.
__device__ __forceinline__ void padded_exclusive_scan(const int* counts, int* offsets, int E,
                                                      int BM) {
  __shared__ int warp_total[32];
  const int per = (E + blockDim.x - 1) / blockDim.x;
  const int first = threadIdx.x * per, last = min(first + per, E);
  int run = 0;
  for (int e = first; e < last; ++e) run += (counts[e] + BM - 1) / BM * BM;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int incl = warp_inclusive_sum(run);
  if (lane == 31) warp_total[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int nwarps = (blockDim.x + 31) / 32;
    // inclusive scan of the warp totals
    warp_total[lane] = warp_inclusive_sum(lane < nwarps ? warp_total[lane] : 0);
  }
  __syncthreads();
  int off = incl - run + (warp > 0 ? warp_total[warp - 1] : 0);
  for (int e = first; e < last; ++e) {
    offsets[e] = off;
    off += (counts[e] + BM - 1) / BM * BM;
  }
  if (threadIdx.x == blockDim.x - 1) offsets[E] = warp_total[(blockDim.x - 1) / 32];
  __syncthreads();
}

// block_expert[b] = the expert whose padded segment (offsets, E + 1 entries) holds block b's
// first row, -1 past the last segment; and expert_end (optional) = each segment's end.
// Block-strided, no barrier.
__device__ __forceinline__ void write_block_experts(const int* offsets, int E, int BM,
                                                    int32_t* block_expert, int64_t max_blocks,
                                                    int32_t* expert_end) {
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
  padded_exclusive_scan(counts, offsets, E, BM);
  for (int64_t i = threadIdx.x; i < max_blocks * BM; i += blockDim.x) sorted_routes[i] = -1;
  write_block_experts(offsets, E, BM, block_expert, max_blocks, expert_end);
  for (int e = threadIdx.x; e < E; e += blockDim.x) counts[e] = 0;
  __syncthreads();
  for (int64_t r = threadIdx.x; r < n_routes; r += blockDim.x) {
    const int e = resolve_expert(ids[r], expert_map, E_global, E);
    if (e >= 0) sorted_routes[offsets[e] + atomicAdd(&counts[e], 1)] = static_cast<int32_t>(r);
  }
}

// The same result from many SMs, for many routes (the block kernel above is one SM's loop over
// every route twice: ~5.6 ns a route, 49 us at Qwen3-30B-A3B M = 4096). The routes are cut into
// `slices` runs of slice_routes (a multiple of 32, at most kAlignMaxSlices runs), one warp each,
// walked 32 at a time in route order (the ids of kAlignBatch steps loaded at once);
// __match_any_sync groups a step's lanes by expert. Three kernels, in stream order:
//   count:   each slice's routes per expert -> slice_counts[e * slices + s]; and every
//            sorted_routes entry set to -1 (padding) by the whole grid;
//   offsets: one block: slice_counts turned in place into each slice's first place within its
//            expert's routes (an exclusive scan over the slices), the experts' padded offsets
//            -> expert_start[e], block_expert and expert_end as the block kernel writes them;
//   scatter: each slice's routes written from expert_start[e] + its slice's place, in order.
// Within an expert the routes go in route order (the block kernel's order there is its atomics');
// every GEMM computes each route's row on its own, so the output is the same either way.
// Dynamic shared memory of count and scatter: E ints per warp (align_parallel_fits).
constexpr int kAlignMaxSlices = 256;
constexpr int kAlignSliceWarps = 4;  // warps (slices) per block of count and scatter
constexpr int kAlignBatch = 8;       // 32-route steps whose ids a lane loads at once
static_assert(kAlignMaxSlices % 32 == 0, "the offsets kernel's lanes hold 32 slices a step");

// Whether E experts' counters fit the count and scatter kernels' shared memory (48 KB).
inline bool align_parallel_fits(int64_t E) {
  return E >= 1 && kAlignSliceWarps * E * static_cast<int64_t>(sizeof(int)) <= 48 * 1024;
}

// Routes per slice: at most kAlignMaxSlices slices, 32 routes at least.
inline int64_t align_slice_routes(int64_t n_routes) {
  const int64_t per = (n_routes + kAlignMaxSlices - 1) / kAlignMaxSlices;
  return std::max<int64_t>(32, (per + 31) / 32 * 32);
}

// The local experts of routes r0 + 32 j + lane (j < kAlignBatch; -1 at or past `last`): every
// id loaded, then every expert_map entry, before any is used (one memory latency per batch, not
// one per step).
template <typename IdT>
__device__ __forceinline__ void resolve_batch(const IdT* __restrict__ ids, int64_t r0,
                                              int64_t last, const int32_t* expert_map,
                                              int64_t E_global, int E, int (&e)[kAlignBatch]) {
  const int lane = threadIdx.x % 32;
  IdT id[kAlignBatch];
#pragma unroll
  for (int j = 0; j < kAlignBatch; ++j) {
    const int64_t r = r0 + 32 * j + lane;
    id[j] = r < last ? ids[r] : static_cast<IdT>(-1);
  }
#pragma unroll
  for (int j = 0; j < kAlignBatch; ++j) e[j] = resolve_expert(id[j], expert_map, E_global, E);
}

// Slice s's routes in route order, 32 a step: step(e, same, r) on every lane, e its route r's
// local expert (-1: none), same the lanes of this step with the same e (__match_any_sync).
template <typename IdT, typename Step>
__device__ __forceinline__ void walk_slice(const IdT* __restrict__ ids, int64_t n_routes,
                                           const int32_t* expert_map, int64_t E_global, int E,
                                           int64_t slice_routes, int s, Step step) {
  const int lane = threadIdx.x % 32;
  const int64_t first = s * slice_routes, last = min(first + slice_routes, n_routes);
  for (int64_t r0 = first; r0 < last; r0 += 32 * kAlignBatch) {
    int e[kAlignBatch];
    resolve_batch(ids, r0, last, expert_map, E_global, E, e);
#pragma unroll
    for (int j = 0; j < kAlignBatch; ++j)
      step(e[j], __match_any_sync(0xffffffffu, e[j]), r0 + 32 * j + lane);
  }
}

template <typename IdT>
__global__ void __launch_bounds__(32 * kAlignSliceWarps)
    moe_align_count_kernel(const IdT* __restrict__ ids, int64_t n_routes,
                           const int32_t* expert_map, int64_t E_global, int E,
                           int64_t slice_routes, int slices, int32_t* __restrict__ slice_counts,
                           int32_t* __restrict__ sorted_routes, int64_t capacity) {
  pdl_wait();  // launched with PDL only where align starts a PDL chain (pdl.cuh)
  pdl_launch_dependents();
  extern __shared__ int smem[];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < capacity;
       i += stride)
    sorted_routes[i] = -1;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int s = blockIdx.x * kAlignSliceWarps + warp;
  if (s >= slices) return;
  int* count = smem + warp * E;
  for (int e = lane; e < E; e += 32) count[e] = 0;
  __syncwarp();
  walk_slice(ids, n_routes, expert_map, E_global, E, slice_routes, s,
             [&](int e, uint32_t same, int64_t) {
               if (e >= 0 && lane == __ffs(same) - 1) count[e] += __popc(same);
               __syncwarp();  // the leaders' updates before the next step reads them
             });
  for (int e = lane; e < E; e += 32) slice_counts[static_cast<int64_t>(e) * slices + s] = count[e];
}

// One block. Dynamic shared memory: 2 * E + 1 ints.
__global__ void __launch_bounds__(1024)
    moe_align_offsets_kernel(int32_t* __restrict__ slice_counts, int slices, int E, int BM,
                             int32_t* __restrict__ expert_start,
                             int32_t* __restrict__ block_expert, int64_t max_blocks,
                             int32_t* __restrict__ expert_end) {
  // Lane l holds slices j * 32 + l, all loaded at once: whole lines loaded and stored, the scan
  // in registers 32 slices at a time (benchmarks/NOTES.md, variant 46).
  constexpr int PER = kAlignMaxSlices / 32;
  extern __shared__ int smem[];
  int* counts = smem;       // [E]: each expert's routes
  int* offsets = smem + E;  // [E + 1]
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int e = warp; e < E; e += blockDim.x / 32) {  // one warp per expert
    int32_t* row = slice_counts + static_cast<int64_t>(e) * slices;
    int c[PER];
#pragma unroll
    for (int j = 0; j < PER; ++j) c[j] = j * 32 + lane < slices ? row[j * 32 + lane] : 0;
    int carry = 0;
#pragma unroll
    for (int j = 0; j < PER; ++j) {
      const int incl = warp_inclusive_sum(c[j]);
      if (j * 32 + lane < slices) row[j * 32 + lane] = carry + incl - c[j];
      carry += __shfl_sync(0xffffffffu, incl, 31);
    }
    if (lane == 0) counts[e] = carry;
  }
  __syncthreads();
  padded_exclusive_scan(counts, offsets, E, BM);
  for (int e = threadIdx.x; e < E; e += blockDim.x) expert_start[e] = offsets[e];
  write_block_experts(offsets, E, BM, block_expert, max_blocks, expert_end);
}

template <typename IdT>
__global__ void __launch_bounds__(32 * kAlignSliceWarps)
    moe_align_scatter_kernel(const IdT* __restrict__ ids, int64_t n_routes,
                             const int32_t* expert_map, int64_t E_global, int E,
                             int64_t slice_routes, int slices,
                             const int32_t* __restrict__ slice_place,
                             const int32_t* __restrict__ expert_start,
                             int32_t* __restrict__ sorted_routes) {
  extern __shared__ int smem[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int s = blockIdx.x * kAlignSliceWarps + warp;
  if (s >= slices) return;
  int* cursor = smem + warp * E;  // where this slice's next route of each expert goes
  for (int e = lane; e < E; e += 32)
    cursor[e] = expert_start[e] + slice_place[static_cast<int64_t>(e) * slices + s];
  __syncwarp();
  walk_slice(ids, n_routes, expert_map, E_global, E, slice_routes, s,
             [&](int e, uint32_t same, int64_t r) {
               if (e >= 0)
                 sorted_routes[cursor[e] + __popc(same & ((1u << lane) - 1u))] =
                     static_cast<int32_t>(r);
               __syncwarp();  // every lane has read its cursor before the leader moves it
               if (e >= 0 && lane == __ffs(same) - 1) cursor[e] += __popc(same);
               __syncwarp();
             });
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
