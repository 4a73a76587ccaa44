// Host check of quantize_activation_fast and quantize_activation_magic (csrc/common/moe_math.h)
// against quantize_activation_value, the per-token quantization's definition (the magic form's
// low byte where it does not ask for the exact form, quantize_activation_fast where it does, as
// the CUDA passes combine them): every bf16 and every fp16
// value within a row's max, for ~4700 row maxima each (every 7th positive finite bf16 value, and
// maxima whose scales put ties everywhere: 127 * 2^k, 254, 63.5, the 1e-10 floor, inf), and 50
// million random float32 values with random maxima. Prints the mismatch count (0 expected) and
// the first few. Built by tests/test_quantize_math.py (g++ -O2 -ffp-contract=off).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/moe_math.h"

using int8_moe::activation_scale_from_amax;
using int8_moe::quantize_activation_fast;
using int8_moe::quantize_activation_magic;
using int8_moe::quantize_activation_value;

static float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
static float bf16_to_float(uint16_t b) { return bits_to_float(static_cast<uint32_t>(b) << 16); }
static float fp16_to_float(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
  float v;
  if (exp == 0) v = std::ldexp(static_cast<float>(man), -24);  // subnormal
  else if (exp == 31) v = man ? std::numeric_limits<float>::quiet_NaN()
                              : std::numeric_limits<float>::infinity();
  else v = std::ldexp(static_cast<float>(1024 + man), exp - 25);
  return sign ? -v : v;
}

static long long mismatches = 0, checked = 0;
static void check(float x, float amax) {
  const float s = activation_scale_from_amax(amax), inv = 1.0f / s;
  const int8_t fast = quantize_activation_fast(x, s, inv), exact = quantize_activation_value(x, s);
  bool take_fast = false;
  const uint32_t bits = quantize_activation_magic(x, inv, take_fast);
  const int8_t magic = take_fast ? fast : static_cast<int8_t>(bits & 0xffu);
  ++checked;
  if ((fast != exact || magic != exact) && mismatches++ < 10)
    std::printf("mismatch: x %.9g amax %.9g: fast %d magic %d exact %d\n", x, amax, fast, magic,
                exact);
}

int main() {
  std::vector<float> maxima;
  for (uint32_t b = 1; b < 0x7f80; b += 7) maxima.push_back(bf16_to_float(static_cast<uint16_t>(b)));
  for (int k = -40; k <= 40; ++k) maxima.push_back(std::ldexp(127.0f, k));
  for (float m : {254.0f, 63.5f, 1.0f, 3.0f, 1e-10f, 1e-12f, 0.0f,
                  std::numeric_limits<float>::infinity()})
    maxima.push_back(m);
  for (int kind = 0; kind < 2; ++kind) {
    std::vector<float> values(65536);
    for (uint32_t b = 0; b < 65536; ++b)
      values[b] = kind == 0 ? bf16_to_float(static_cast<uint16_t>(b))
                            : fp16_to_float(static_cast<uint16_t>(b));
    for (float amax : maxima)
      for (float x : values)
        if (std::isnan(x) || std::fabs(x) <= amax) check(x, amax);
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-60, 60);
  for (int i = 0; i < 50000000; ++i) {
    const float amax = std::ldexp(std::fabs(unit(rng)) + 1e-3f, exponent(rng));
    check(std::fmin(std::fmax(unit(rng) * amax, -amax), amax), amax);
  }
  std::printf("checked %lld, mismatches %lld\n", checked, mismatches);
  return mismatches == 0 ? 0 : 1;
}
