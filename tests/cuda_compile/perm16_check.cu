// Host check of the W8A16 ldmatrix fragments' activation layout (csrc/cuda/perm16.cuh), built by
// nvcc and run on the CPU (tests/test_cuda_compile.py). From the layouts themselves: mma's A
// fragment gives thread q of a row the k16 step's k = 2q, 2q + 1 (a[0]) and 2q + 8, 2q + 9
// (a[2]); ldmatrix of 16-bit elements gives it elements 2q, 2q + 1 of the row's 16 bytes, that
// is weight bytes 4q .. 4q + 3, widened as bytes (0, 1) into a[0] and (2, 3) into a[2]. So the
// activation at fragment position L must be weight element 4q + (0, 1, 2, 3) for L = 2q, 2q + 1,
// 2q + 8, 2q + 9. Checked: perm16_source says so, perm16_position inverts it, perm16_words moves
// 2-byte elements so, and an integer dot product over permuted activations is the plain one.
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "cuda/perm16.cuh"

using int8_moe::perm16_position;
using int8_moe::perm16_source;
using int8_moe::perm16_words;

int main() {
  int failures = 0;
  int paired[16];  // fragment position L -> weight element, from the layouts above
  for (int q = 0; q < 4; ++q) {
    paired[2 * q] = 4 * q;
    paired[2 * q + 1] = 4 * q + 1;
    paired[2 * q + 8] = 4 * q + 2;
    paired[2 * q + 9] = 4 * q + 3;
  }
  int seen = 0;
  for (int L = 0; L < 16; ++L) {
    if (perm16_source(L) != paired[L]) {
      std::printf("source(%d) = %d, the fragment pairs %d\n", L, perm16_source(L), paired[L]);
      ++failures;
    }
    if (perm16_position(perm16_source(L)) != L) {
      std::printf("position(source(%d)) = %d\n", L, perm16_position(perm16_source(L)));
      ++failures;
    }
    seen |= 1 << perm16_source(L);
  }
  if (seen != 0xFFFF) {
    std::printf("source is not a permutation: %x\n", seen);
    ++failures;
  }
  // 2-byte elements 0..15 (value 100 + j) through perm16_words: position L holds source(L).
  uint16_t e[16], out[16];
  for (int j = 0; j < 16; ++j) e[j] = static_cast<uint16_t>(100 + j);
  uint4 lo, hi;
  std::memcpy(&lo, e, 16);
  std::memcpy(&hi, e + 8, 16);
  perm16_words(lo, hi);
  std::memcpy(out, &lo, 16);
  std::memcpy(out + 8, &hi, 16);
  for (int L = 0; L < 16; ++L)
    if (out[L] != 100 + perm16_source(L)) {
      std::printf("perm16_words: position %d holds element %d\n", L, out[L] - 100);
      ++failures;
    }
  // A row of 64 elements (4 groups): sum over positions of w[paired element] * x_stored[pos]
  // equals sum over k of w[k] * x[k] exactly (integers).
  int64_t w[64], x[64], stored[64];
  for (int k = 0; k < 64; ++k) {
    w[k] = (k * 37 + 11) % 255 - 127;
    x[k] = (k * 53 + 7) % 509 - 254;
  }
  for (int k = 0; k < 64; ++k) stored[(k & ~15) | perm16_position(k & 15)] = x[k];
  int64_t plain = 0, permuted = 0;
  for (int k = 0; k < 64; ++k) plain += w[k] * x[k];
  for (int pos = 0; pos < 64; ++pos) permuted += w[(pos & ~15) | paired[pos & 15]] * stored[pos];
  if (plain != permuted) {
    std::printf("dot product %lld against %lld\n", (long long)permuted, (long long)plain);
    ++failures;
  }
  if (failures == 0) std::printf("perm16: ok\n");
  return failures == 0 ? 0 : 1;
}
