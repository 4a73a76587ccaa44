// Throughput and issue pipes of int8 -> bf16x2 widenings, without torch: the library's
// widen_pair<bf16> (csrc/cuda/int8_widen.cuh) against the fp32 magic-number conversion it replaced
// and a dp4a one (benchmarks/NOTES.md, variant 33). Each is first checked against exact integers
// on every byte pair at both halves of a word. The timed kernel widens 8 independent words per
// thread in a loop (plus one add and one update per word), so the pipes the conversion issues to
// set the rate; `ncu --metrics smsp__inst_executed_pipe_alu.sum,smsp__inst_executed_pipe_fma.sum,`
// `smsp__inst_executed_pipe_fmaheavy.sum,sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active`
// `build/widen_variants once` counts them (one launch per variant).
//
// nvcc -O3 -std=c++17 -Icsrc -gencode=arch=compute_90a,code=sm_90a \
//   benchmarks/widen_variants.cu -o build/widen_variants
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

#include "cuda/int8_widen.cuh"

namespace {

__device__ __forceinline__ uint32_t pack_bf16x2(float a, float b) {
  const __nv_bfloat162 p = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<const uint32_t*>(&p);
}

// 0: the library; 1: fp32 magic (0x4B000000 | u8 = 2^23 + u8, u8 = q + 128), a float
// subtraction each, a rounding pack (the library's conversion up to session 21); 2: dp4a
// extracting the signed byte onto the same magic, a float subtraction each, a pack.
template <int V>
__device__ __forceinline__ uint32_t widen(uint32_t w, int i) {
  if constexpr (V == 0) {
    return int8_moe::widen_pair<__nv_bfloat16>(w, i);
  } else if constexpr (V == 1) {
    const uint32_t u = w ^ 0x80808080u;
    const float f0 = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7650 | (2 * i))) - 8388736.0f;
    const float f1 =
        __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7650 | (2 * i + 1))) - 8388736.0f;
    return pack_bf16x2(f0, f1);
  } else {
    const int s = static_cast<int>(w);
    const float f0 = __int_as_float(__dp4a(s, 1 << (16 * i), 0x4B000080)) - 8388736.0f;
    const float f1 = __int_as_float(__dp4a(s, 1 << (16 * i + 8), 0x4B000080)) - 8388736.0f;
    return pack_bf16x2(f0, f1);
  }
}

// bad[v]: pairs variant v widened to anything but the exact bf16 values. Thread (b, t): the
// pair 256 b + t, in the low and in the high half of a word.
template <int V>
__global__ void check_exact(int* bad) {
  const uint32_t pair = blockIdx.x * 256 + threadIdx.x;
  for (int i = 0; i < 2; ++i) {
    const uint32_t r = widen<V>(i == 0 ? pair : pair << 16, i);
    for (int h = 0; h < 2; ++h) {
      const int q = static_cast<int8_t>((pair >> (8 * h)) & 0xFF);
      const __nv_bfloat16 expected = __float2bfloat16(static_cast<float>(q));
      if (static_cast<uint16_t>(r >> (16 * h)) != *reinterpret_cast<const uint16_t*>(&expected))
        atomicAdd(bad + V, 1);
    }
  }
}

template <int V>
__global__ void widen_loop(const uint32_t* in, uint32_t* out, int iters) {
  const int tid = blockIdx.x * blockDim.x + threadIdx.x;
  uint32_t w[8], acc[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    w[j] = in[(tid * 8 + j) % 4096];
    acc[j] = 0;
  }
  for (int it = 0; it < iters; ++it) {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      acc[j] += widen<V>(w[j], 0) + widen<V>(w[j], 1);
      w[j] += 0x01030507u;  // other bytes next iteration: nothing to hoist
    }
  }
  uint32_t s = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) s ^= acc[j];
  out[tid] = s;
}

}  // namespace

int main(int argc, char**) {
  const bool once = argc > 1;  // under ncu: one launch per variant, no timing
  const char* names[3] = {"library (permute 0x43, 2 masks, bf16x2 sub)",
                          "fp32 magic (xor, 2 permutes, 2 fadd, pack)",
                          "dp4a (2 dp4a, 2 fadd, pack)"};
  const int blocks = 132 * 8, threads = 256, iters = 2000;
  uint32_t *in, *out;
  int* bad;
  cudaMalloc(&in, 4096 * sizeof(uint32_t));
  cudaMalloc(&out, blocks * threads * sizeof(uint32_t));
  cudaMalloc(&bad, 3 * sizeof(int));
  cudaMemset(in, 0x5A, 4096 * sizeof(uint32_t));
  cudaMemset(bad, 0, 3 * sizeof(int));
  check_exact<0><<<256, 256>>>(bad);
  check_exact<1><<<256, 256>>>(bad);
  check_exact<2><<<256, 256>>>(bad);
  int host_bad[3];
  cudaMemcpy(host_bad, bad, sizeof(host_bad), cudaMemcpyDeviceToHost);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  int failed = 0;
  for (int v = 0; v < 3; ++v) {
    auto run = [&] {
      if (v == 0) widen_loop<0><<<blocks, threads>>>(in, out, iters);
      if (v == 1) widen_loop<1><<<blocks, threads>>>(in, out, iters);
      if (v == 2) widen_loop<2><<<blocks, threads>>>(in, out, iters);
    };
    run();
    if (cudaDeviceSynchronize() != cudaSuccess) return 1;
    failed += host_bad[v] != 0;
    if (once) continue;
    float best = 1e30f;
    for (int r = 0; r < 5; ++r) {
      float ms;
      cudaEventRecord(e0);
      run();
      cudaEventRecord(e1);
      cudaEventSynchronize(e1);
      cudaEventElapsedTime(&ms, e0, e1);
      best = ms < best ? ms : best;
    }
    const double pairs = 2.0 * 8 * iters * static_cast<double>(blocks) * threads;
    printf("%-46s inexact pairs %6d  %.3f ms  %6.0f G pairs/s\n", names[v], host_bad[v], best,
           pairs / best / 1e6);
  }
  return failed;
}
