// Route lookups shared by the align kernels (moe_routing.cuh) and the GEMMs' direct routing
// (moe_gemm_decode.cuh): the block bound, an id's local expert, lanes grouped by expert. Kept
// apart from the align kernels so that the GEMM instance files (csrc/cuda/instances) include
// no non-template kernel, which each translation unit would define again.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

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

}  // namespace int8_moe
