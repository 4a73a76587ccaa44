// DRAM read rate of the decode kernel's weight access pattern, without torch (NOTES, variant 44).
// Each CTA of 128 threads streams one 16-row weight tile the way moe_gemm_decode_kernel does:
// thread (grp, q) of a warp loads 16 bytes of rows grp and grp + 8 per 64-byte K chunk, the 4
// warps take the chunks round-robin, AHEAD = 2 chunks in flight per warp. Compared:
//   layout: row-major [rows][K] (the library's) or tile-contiguous ([tile][chunk][16][64]: a
//           warp's 16 x 64 bytes of a chunk are one contiguous kilobyte);
//   load:   ld.global.cs (the library's __ldcs), with the L2::128B / L2::256B prefetch-size
//           hint, or ld.global.nc.L1::no_allocate.L2::256B;
// and a plain linear read (grid-stride 16-byte loads, 4 in flight per thread) as the roof.
// Three copies of the weights, used in turn, keep L2 from serving a previous pass.
//
// nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a benchmarks/stream_pattern.cu \
//   -o build/stream_pattern && build/stream_pattern
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

template <int LOAD>
__device__ __forceinline__ uint4 load16(const int8_t* p) {
  uint4 v;
  if constexpr (LOAD == 0)
    asm volatile("ld.global.cs.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  else if constexpr (LOAD == 1)
    asm volatile("ld.global.cs.L2::128B.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  else if constexpr (LOAD == 2)
    asm volatile("ld.global.cs.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  else
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// One CTA per 16-row tile. The sink is written only for a value the data never folds to, so the
// loads stay live.
template <int LOAD, bool TILED>
__global__ void __launch_bounds__(128, 8)
    tile_stream(const int8_t* w, int64_t K, uint32_t* sink) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, grp = lane / 4, q = lane % 4;
  const int64_t tile = blockIdx.x, chunks = K / 64;
  const int8_t* p0;
  const int8_t* p1;
  int64_t stride;  // bytes between a warp's chunks
  if constexpr (TILED) {
    p0 = w + tile * 16 * K + warp * 1024 + grp * 64 + q * 16;
    p1 = p0 + 8 * 64;
    stride = 4 * 1024;
  } else {
    p0 = w + (tile * 16 + grp) * K + warp * 64 + q * 16;
    p1 = p0 + 8 * K;
    stride = 4 * 64;
  }
  uint4 a0[2], a1[2];
  uint32_t x = 0;
  int c = warp;
  for (int i = 0; i < 2; ++i)
    if (c + 4 * i < chunks) {
      a0[i] = load16<LOAD>(p0 + i * stride);
      a1[i] = load16<LOAD>(p1 + i * stride);
    }
  for (; c < chunks; c += 4) {
    const uint4 w0 = a0[0], w1 = a1[0];
    a0[0] = a0[1];
    a1[0] = a1[1];
    if (c + 8 < chunks) {
      a0[1] = load16<LOAD>(p0 + 2 * stride);
      a1[1] = load16<LOAD>(p1 + 2 * stride);
    }
    x ^= w0.x ^ w0.y ^ w0.z ^ w0.w ^ w1.x ^ w1.y ^ w1.z ^ w1.w;
    x = __funnelshift_l(x, x, 1);
    p0 += stride;
    p1 += stride;
  }
  if (x == 0x9E3779B9u) sink[threadIdx.x] = x;
}

__global__ void __launch_bounds__(256) linear_read(const uint4* w, int64_t n, uint32_t* sink) {
  uint32_t x = 0;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += 4 * step) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u)
      v[u] = i + u * step < n ? __ldcs(w + i + u * step) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < 4; ++u) x ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  if (x == 0x9E3779B9u) sink[threadIdx.x] = x;
}

constexpr int kCopies = 3;

// Median GB/s over 5 rounds of 3 * kCopies launches (the copies in turn).
template <typename F>
double rate(F launch, double bytes) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < kCopies; ++i) launch(i);  // warm
  std::vector<double> r;
  for (int round = 0; round < 5; ++round) {
    cudaEventRecord(a);
    for (int i = 0; i < 3 * kCopies; ++i) launch(i % kCopies);
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    r.push_back(bytes * 3 * kCopies / (ms * 1e-3) / 1e9);
  }
  std::sort(r.begin(), r.end());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return r[r.size() / 2];
}

template <int LOAD, bool TILED>
double tile_rate(int8_t* const* w, int64_t rows, int64_t K, uint32_t* sink) {
  return rate([&](int i) { tile_stream<LOAD, TILED><<<rows / 16, 128>>>(w[i], K, sink); },
              static_cast<double>(rows) * K);
}

// One table row: the four loads on one layout, timed in column order.
template <bool TILED>
void print_row(int8_t* const* w, int64_t rows, int64_t K, uint32_t* sink) {
  const double r[4] = {
      tile_rate<0, TILED>(w, rows, K, sink), tile_rate<1, TILED>(w, rows, K, sink),
      tile_rate<2, TILED>(w, rows, K, sink), tile_rate<3, TILED>(w, rows, K, sink)};
  printf("%6lld %7lld | %-9s %9.0f %9.0f %9.0f %9.0f\n", static_cast<long long>(K),
         static_cast<long long>(rows / 16), TILED ? "tiled" : "row-major", r[0], r[1], r[2], r[3]);
}

}  // namespace

int main() {
  // Per copy: ~88 MB, the int8 w13 bytes Qwen3-30B-A3B's GEMM1 streams at M = 4.
  const int64_t bytes = 88ll << 20;
  int8_t* w[kCopies];
  uint32_t* sink;
  for (int i = 0; i < kCopies; ++i) {
    cudaMalloc(&w[i], bytes);
    cudaMemset(w[i], 0x11 * (i + 1), bytes);
  }
  cudaMalloc(&sink, 1024 * sizeof(uint32_t));
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  printf("%s, %d SMs; %lld MB per copy, %d copies in turn; GB/s (median of 5)\n", prop.name,
         prop.multiProcessorCount, static_cast<long long>(bytes >> 20), kCopies);
  const double lin = rate(
      [&](int i) {
        linear_read<<<prop.multiProcessorCount * 8, 256>>>(reinterpret_cast<uint4*>(w[i]),
                                                            bytes / 16, sink);
      },
      static_cast<double>(bytes));
  printf("linear read (4 x 16 B in flight per thread): %.0f\n", lin);
  printf("%6s %7s | %-9s %9s %9s %9s %9s\n", "K", "tiles", "layout", "cs", "cs.128B",
         "cs.256B", "nc.256B");
  for (int64_t K : {768ll, 2048ll, 4096ll, 14336ll}) {
    const int64_t rows = bytes / K / 16 * 16;
    print_row<false>(w, rows, K, sink);
    print_row<true>(w, rows, K, sink);
  }
  const cudaError_t err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    printf("CUDA error: %s\n", cudaGetErrorString(err));
    return 1;
  }
  return 0;
}
