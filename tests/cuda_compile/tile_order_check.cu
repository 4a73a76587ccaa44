// Host check of the grouped CTA order (csrc/cuda/tile_order.cuh), built by nvcc and run on the
// CPU (tests/test_cuda_compile.py): for every grid of 1-40 route blocks x 1-9 weight tiles and
// every group size 0-45, the map covers each (route block, weight tile) pair exactly once, and
// inside a full group the launch order walks the group's blocks fastest, then the tiles.
#include <cstdio>
#include <vector>

#include "cuda/tile_order.cuh"

using int8_moe::RowTile;
using int8_moe::row_tile_at;

int main() {
  int failures = 0;
  for (int64_t blocks = 1; blocks <= 40; ++blocks)
    for (int64_t tiles = 1; tiles <= 9; ++tiles)
      for (int64_t group = 0; group <= 45; ++group) {
        std::vector<int> hits(blocks * tiles, 0);
        for (int64_t by = 0; by < tiles; ++by)
          for (int64_t bx = 0; bx < blocks; ++bx) {
            const RowTile t = row_tile_at(bx, by, blocks, tiles, group);
            if (t.block < 0 || t.block >= blocks || t.tile < 0 || t.tile >= tiles) {
              std::printf("out of range: blocks %lld tiles %lld group %lld\n", (long long)blocks,
                          (long long)tiles, (long long)group);
              ++failures;
              continue;
            }
            ++hits[t.tile * blocks + t.block];
            // launch index i = bx + blocks * by: inside a full group, i % group is the block.
            const int64_t i = bx + blocks * by;
            if (group > 0 && group < blocks && (i / (group * tiles) + 1) * group <= blocks) {
              const int64_t within = i % (group * tiles);
              if (t.block != i / (group * tiles) * group + within % group ||
                  t.tile != within / group) {
                std::printf("order: blocks %lld tiles %lld group %lld index %lld\n",
                            (long long)blocks, (long long)tiles, (long long)group, (long long)i);
                ++failures;
              }
            }
          }
        for (int h : hits)
          if (h != 1) {
            std::printf("not a bijection: blocks %lld tiles %lld group %lld\n", (long long)blocks,
                        (long long)tiles, (long long)group);
            ++failures;
            break;
          }
      }
  std::printf(failures == 0 ? "tile order: ok\n" : "tile order: %d failures\n", failures);
  return failures == 0 ? 0 : 1;
}
