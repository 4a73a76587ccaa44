// Kernel-only timings of quantize_rows variants on the SPEC layers' weight shapes, without torch:
// the library's launcher and its register kernel at other (threads per block, threads per row,
// 16-byte loads per thread) points (benchmarks/NOTES.md, quantization variant 6). Every
// variant's q and scales are compared with the library's, byte for byte. Floor: 3 bytes per
// weight over the device-to-device copy rate measured here (cudaMemcpy, read + write).
//
// nvcc -O3 -std=c++17 -Icsrc -gencode=arch=compute_90a,code=sm_90a \
//   benchmarks/quantize_kernel_variants.cu -o build/quantize_kernel_variants
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cuda/quantize_kernels.cuh"

using namespace int8_moe;
using bf16 = __nv_bfloat16;

#define CHECK(x)                                                                   \
  do {                                                                             \
    cudaError_t e_ = (x);                                                          \
    if (e_ != cudaSuccess) {                                                       \
      std::fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
      std::exit(1);                                                                \
    }                                                                              \
  } while (0)

__global__ void fill_random(bf16* w, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed ^ static_cast<uint32_t>(i >> 32);
    h ^= h >> 15; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
    w[i] = __float2bfloat16_rn((static_cast<float>(h & 0xffffff) / 16777216.0f - 0.5f) * 0.04f);
  }
}

struct Tensor {
  const char* name;
  int64_t rows, K;
};

float median_ms(const std::function<void()>& fn, int reps) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) fn();
  std::vector<float> t;
  for (int i = 0; i < reps; ++i) {
    CHECK(cudaEventRecord(a));
    fn();
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main() {
  const Tensor tensors[] = {{"mixtral w13", 8LL * 28672, 4096}, {"mixtral w2", 8LL * 4096, 14336},
                            {"qwen3 w13", 128LL * 1536, 2048}, {"qwen3 w2", 128LL * 2048, 768}};
  int64_t max_n = 0, max_rows = 0;
  for (const auto& t : tensors) {
    max_n = std::max(max_n, t.rows * t.K);
    max_rows = std::max(max_rows, t.rows);
  }
  bf16* w;
  int8_t *q, *q_ref;
  float *s, *s_ref;
  unsigned long long* bad;
  CHECK(cudaMalloc(&w, max_n * 2));
  CHECK(cudaMalloc(&q, max_n));
  CHECK(cudaMalloc(&q_ref, max_n));
  CHECK(cudaMalloc(&s, max_rows * 4));
  CHECK(cudaMalloc(&s_ref, max_rows * 4));
  CHECK(cudaMalloc(&bad, 16));

  // Copy rate: 2 GiB device to device, bytes read + written.
  const size_t cb = size_t(1) << 31;
  void *c0, *c1;
  CHECK(cudaMalloc(&c0, cb));
  CHECK(cudaMalloc(&c1, cb));
  CHECK(cudaMemset(c0, 1, cb));
  const float copy_ms = median_ms([&] { CHECK(cudaMemcpyAsync(c1, c0, cb, cudaMemcpyDeviceToDevice)); }, 10);
  const double copy_gbs = 2.0 * cb / copy_ms / 1e6;
  CHECK(cudaFree(c0));
  CHECK(cudaFree(c1));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s: copy %.0f GB/s (read + write). Kernel-only ms (median of 20), %% of the "
              "3-bytes-per-weight floor; 'same' = q and scales equal the library's bytes\n",
              prop.name, copy_gbs);
  std::printf("| tensor | variant | ms | %% of floor | same |\n|---|---|---|---|---|\n");

  for (const auto& t : tensors) {
    const int64_t n = t.rows * t.K;
    fill_random<<<4096, 256>>>(w, n, 1234u + static_cast<uint32_t>(t.K));
    CHECK(cudaGetLastError());
    const double floor_ms = 3.0 * n / copy_gbs / 1e6;
    auto lib = [&](int8_t* qq, float* ss) {
      CHECK(cudaMemsetAsync(bad, 0xFF, 16));
      launch_quantize_rows<bf16, false>(w, nullptr, qq, ss, t.rows, t.K, bad, 0);
    };
    lib(q_ref, s_ref);
    CHECK(cudaDeviceSynchronize());
    std::vector<std::pair<std::string, std::function<void()>>> variants;
    variants.push_back({"library", [&] { lib(q, s); }});
#define REGS(TH, TPR, VPT)                                                               \
  variants.push_back({"regs " #TH "/" #TPR "x" #VPT, [&] {                               \
                        launch_regs<bf16, TH, TPR, VPT, false>(w, nullptr, q, s, t.rows, t.K, \
                                                               bad, 0);                  \
                      }})
    // Threads per row x 16-byte loads per thread, for 1 to 8 loads per thread.
    const int64_t nvec = t.K / 8;
    if (nvec <= 96) {
      REGS(256, 32, 3); REGS(128, 32, 3); REGS(512, 32, 3); REGS(256, 64, 2); REGS(256, 128, 1);
    } else if (nvec <= 256) {
      REGS(256, 32, 8); REGS(256, 64, 4); REGS(128, 64, 4); REGS(512, 64, 4); REGS(256, 128, 2);
      REGS(256, 256, 1);
    } else if (nvec <= 512) {
      REGS(256, 64, 8); REGS(256, 128, 4); REGS(128, 128, 4); REGS(512, 128, 4);
      REGS(256, 256, 2); REGS(512, 512, 1);
    } else {
      REGS(256, 256, 7); REGS(512, 512, 4); REGS(1024, 512, 4); REGS(1024, 1024, 2);
    }
    std::vector<int8_t> h_ref(n), h_q(n);
    std::vector<float> hs_ref(t.rows), hs(t.rows);
    CHECK(cudaMemcpy(h_ref.data(), q_ref, n, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(hs_ref.data(), s_ref, t.rows * 4, cudaMemcpyDeviceToHost));
    for (auto& [label, fn] : variants) {
      CHECK(cudaMemset(q, 0x55, n));
      CHECK(cudaMemset(s, 0x55, t.rows * 4));
      fn();
      CHECK(cudaGetLastError());
      CHECK(cudaDeviceSynchronize());
      CHECK(cudaMemcpy(h_q.data(), q, n, cudaMemcpyDeviceToHost));
      CHECK(cudaMemcpy(hs.data(), s, t.rows * 4, cudaMemcpyDeviceToHost));
      const bool same = std::memcmp(h_q.data(), h_ref.data(), n) == 0 &&
                        std::memcmp(hs.data(), hs_ref.data(), t.rows * 4) == 0;
      const float ms = median_ms(fn, 20);
      std::printf("| %s [%lld, %lld] | %s | %.4f | %.1f%% | %s |\n", t.name, (long long)t.rows,
                  (long long)t.K, label.c_str(), ms, 100.0 * floor_ms / ms, same ? "yes" : "NO");
      std::fflush(stdout);
    }
  }
  return 0;
}
