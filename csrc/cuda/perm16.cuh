// The activation layout of the W8A16 wgmma GEMMs that build their weight fragments by ldmatrix
// (moe_gemm_wgmma.cuh, LDSM): each row's elements permuted within every group of 16, so that
// the one 32-bit word ldmatrix gives a thread (weight bytes 4q .. 4q + 3 of a k16 step) holds
// all four weights its fragment needs. The fragment's k = (2q, 2q + 1) then take weight bytes
// (4q, 4q + 1) and k = (2q + 8, 2q + 9) bytes (4q + 2, 4q + 3): position L of a group pairs
// with element perm16_source(L). A reordering of each dot product's terms; the weights stay
// as they are, and so does every result's meaning.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace int8_moe {

// The element of a 16-element group stored at position L.
__host__ __device__ constexpr int perm16_source(int L) {
  return L < 8 ? 4 * (L / 2) + L % 2 : 4 * ((L - 8) / 2) + 2 + L % 2;
}
// Where element j of a group is stored (the inverse: bits b3 b2 b1 b0 -> b1 b3 b2 b0).
__host__ __device__ constexpr int perm16_position(int j) {
  return (j & 1) | ((j >> 1) & 6) | ((j & 2) << 2);
}

// One group of 16 2-byte elements (32 bytes: lo, hi) permuted in place: the stored pairs
// (positions 2w, 2w + 1) are the source's 32-bit words 0, 2, 4, 6, 1, 3, 5, 7.
__host__ __device__ __forceinline__ void perm16_words(uint4& lo, uint4& hi) {
  const uint4 a = lo, b = hi;
  lo = make_uint4(a.x, a.z, b.x, b.z);
  hi = make_uint4(a.y, a.w, b.y, b.w);
}

}  // namespace int8_moe
