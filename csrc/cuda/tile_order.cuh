// The order in which the CTAs of a row-tile GEMM (grid.x: blocks of sorted routes, grid.y: tiles
// of weight rows) take their (route block, weight tile) pairs.
//
// In launch order (x fastest) the CTAs resident at any time cover one or two weight tiles across
// every route block, so each wave streams all the routes' activation rows. Where those exceed L2
// (Mixtral-8x7B's GEMM2 at M = 16384: 470 MB of int8 rows, read once per 128-row weight tile)
// they come from DRAM again for every weight tile. Grouped, `group` consecutive route blocks
// (mostly one expert: the routes are sorted by expert) walk all the weight tiles together, so
// their activation rows stay in L2 while the weight tiles stream past, each read once per group.
#pragma once

#include <cstdint>

namespace int8_moe {

struct RowTile {
  int64_t block;  // route block (times BN: the first sorted position)
  int64_t tile;   // weight tile
};

// The pair of the CTA at (bx, by) of a blocks x tiles grid. group <= 0 (or >= blocks): launch
// order. Otherwise the linear launch index walks `group` route blocks (fastest) x every weight
// tile, then the next group (the last may be smaller). A bijection of the grid onto itself, so
// every pair is covered exactly once whatever the group (tests/cuda_compile/tile_order_check.cu).
__host__ __device__ __forceinline__ RowTile row_tile_at(int64_t bx, int64_t by, int64_t blocks,
                                                        int64_t tiles, int64_t group) {
  if (group <= 0 || group >= blocks) return {bx, by};
  const int64_t linear = bx + blocks * by;
  const int64_t per_group = group * tiles;
  const int64_t first = linear / per_group * group;
  const int64_t rows = blocks - first < group ? blocks - first : group;  // the last group's
  const int64_t within = linear % per_group;
  return {first + within % rows, within / rows};
}

// This CTA's pair.
__device__ __forceinline__ RowTile row_tile_of_cta(int64_t group) {
  return row_tile_at(blockIdx.x, blockIdx.y, gridDim.x, gridDim.y, group);
}

// Route blocks per group on the host: as many as fit `budget_bytes` of activation rows
// (block_bytes each), at least 1; 0 (launch order) when the budget is 0.
inline int64_t row_tile_group(int64_t budget_bytes, int64_t block_bytes) {
  if (budget_bytes <= 0) return 0;
  const int64_t g = budget_bytes / (block_bytes > 0 ? block_bytes : 1);
  return g > 1 ? g : 1;
}

}  // namespace int8_moe
