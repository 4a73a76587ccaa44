// CUDA binding of fused_moe: checks, workspace allocation (the caching allocator, so the
// forward is graph-capturable), and the launch sequence on the current stream:
//   align (routes grouped by expert on the device) -> [W8A8: quantize x] -> GEMM1 + activation
//   -> [W8A8: quantize the intermediate] -> GEMM2 * router weight -> fixed-order top-k sum.
// Few routes on the decode kernel (DecodeChain::direct) skip align: its GEMMs derive their route
// blocks from the router ids themselves (direct routing). No host sync anywhere.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/all.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "../common/functional.h"
#include "../common/moe_args.h"
#include "dispatch.cuh"
#include "gemm_instances.cuh"
#include "moe_epilogue_kernels.cuh"
#include "moe_gemm_decode.cuh"
#include "moe_gemm_simt.cuh"
#include "moe_gemm_tiled.cuh"
#include "moe_gemm_wgmma.cuh"
#include "moe_prefill.cuh"
#include "moe_routing.cuh"
#include "pdl.cuh"

namespace int8_moe {
// The GEMM launchers live in csrc/cuda/instances/ (compiled in parallel), not here.
INT8_MOE_FOR_EACH_GEMM_TYPES(INT8_MOE_EXTERN_GEMM_LAUNCHERS)

namespace {

struct Routing {
  at::Tensor sorted_routes;  // [max_blocks * BM] int32
  at::Tensor block_expert;   // [max_blocks] int32 (undefined with direct routing)
  at::Tensor expert_end;     // [E] int32 (prefill path only)
  int64_t max_blocks;
};

// warp: moe_align_warp_kernel (up to kAlignWarpMaxRoutes routes, no expert_end); parallel: the
// count / offsets / scatter kernels (align_parallel; they need align_parallel_fits); else the
// block kernel. pdl: launched with programmatic stream serialization (pdl.cuh), so that it is
// resident and waiting when the kernel before it ends (the parallel align's first kernel; its
// other two follow in plain stream order).
Routing align_routes(const at::Tensor& topk_ids, const std::optional<at::Tensor>& expert_map,
                     const MoeProblem& p, int BM, bool want_expert_end, bool warp, bool parallel,
                     bool pdl, cudaStream_t stream) {
  const int64_t n_routes = p.M * p.topk;
  Routing r;
  r.max_blocks = moe_max_blocks(n_routes, p.E, BM);
  const auto opts = topk_ids.options().dtype(at::kInt);
  r.sorted_routes = at::empty({r.max_blocks * BM}, opts);
  r.block_expert = at::empty({r.max_blocks}, opts);
  if (want_expert_end) r.expert_end = at::empty({p.E}, opts);
  const int32_t* map = expert_map.has_value() ? expert_map->const_data_ptr<int32_t>() : nullptr;
  const size_t smem = (2 * p.E + 1) * sizeof(int);
  TORCH_CHECK(smem <= 48 * 1024, "int8_moe::fused_moe: too many local experts (", p.E, ")");
  TORCH_INTERNAL_ASSERT(!warp || (n_routes <= kAlignWarpMaxRoutes && !want_expert_end));
  TORCH_INTERNAL_ASSERT(!parallel || align_parallel_fits(p.E));
  const int E = static_cast<int>(p.E);
  int32_t* sorted = r.sorted_routes.mutable_data_ptr<int32_t>();
  int32_t* block_expert = r.block_expert.mutable_data_ptr<int32_t>();
  int32_t* expert_end = want_expert_end ? r.expert_end.mutable_data_ptr<int32_t>() : nullptr;
  auto launch = [&](auto* ids) -> cudaError_t {
    using IdT = std::remove_const_t<std::remove_pointer_t<decltype(ids)>>;
    if (warp)
      return launch_kernel(&moe_align_warp_kernel<IdT>, dim3(1), dim3(32), 0, stream, pdl, ids,
                           n_routes, map, p.E_global, E, BM, sorted, block_expert, r.max_blocks);
    if (!parallel)
      return launch_kernel(&moe_align_kernel<IdT>, dim3(1), dim3(1024), smem, stream, pdl, ids,
                           n_routes, map, p.E_global, E, BM, sorted, block_expert, r.max_blocks,
                           expert_end);
    const int64_t slice = align_slice_routes(n_routes);
    const int slices = static_cast<int>(ceil_div(n_routes, slice));
    // Each slice's routes per expert, then (in place) its first place within the expert's.
    at::Tensor work = at::empty({static_cast<int64_t>(E) * slices + E}, opts);
    int32_t* slice_counts = work.mutable_data_ptr<int32_t>();
    int32_t* expert_start = slice_counts + static_cast<int64_t>(E) * slices;
    const dim3 grid(static_cast<unsigned>(ceil_div(slices, kAlignSliceWarps)));
    const dim3 block(32 * kAlignSliceWarps);
    const size_t slice_smem = kAlignSliceWarps * E * sizeof(int);
    cudaError_t err =
        launch_kernel(&moe_align_count_kernel<IdT>, grid, block, slice_smem, stream, pdl, ids,
                      n_routes, map, p.E_global, E, slice, slices, slice_counts, sorted,
                      r.max_blocks * BM);
    if (err != cudaSuccess) return err;
    err = launch_kernel(&moe_align_offsets_kernel, dim3(1), dim3(1024), smem, stream, false,
                        slice_counts, slices, E, BM, expert_start, block_expert, r.max_blocks,
                        expert_end);
    if (err != cudaSuccess) return err;
    return launch_kernel(&moe_align_scatter_kernel<IdT>, grid, block, slice_smem, stream, false,
                         ids, n_routes, map, p.E_global, E, slice, slices, slice_counts,
                         expert_start, sorted);
  };
  C10_CUDA_CHECK(topk_ids.scalar_type() == at::kInt ? launch(topk_ids.const_data_ptr<int32_t>())
                                                    : launch(topk_ids.const_data_ptr<int64_t>()));
  return r;
}

// Direct routing (up to kDirectMaxRoutes routes on the decode kernel): each GEMM CTA derives its
// route block from the router ids (decode_block: the blocks and sorted positions align would
// give, routes in route order); GEMM1 records the sorted routing for the kernels after it. No
// align kernel, and GEMM1 starts the chain.
Routing direct_routes(const at::Tensor& topk_ids, const MoeProblem& p, int BM) {
  Routing r;
  r.max_blocks = moe_max_blocks(p.M * p.topk, p.E, BM);
  r.sorted_routes = at::empty({r.max_blocks * BM}, topk_ids.options().dtype(at::kInt));
  return r;
}

// Per-token int8 quantization of `rows` rows of K activations (W8A8), of which about
// `used_rows` carry data (the others are padding that `valid` skips). Three bitwise-equal forms:
// - warp per row (from kActQuantWarpMinRows used rows, rows of at most 256 16-byte packs: a
//   bf16 row up to 2048 values; at 512 the bf16 kernel held 163 registers, one block per SM):
//   8 rows a block, each lane's packs loaded at once. On an H200
//   (`benchmarks/results/profile_w8a8_qwen3_h200.log`) the block-per-row form took 108 us a pass
//   on average at Qwen3-30B-A3B M = 16384 (x: 16384 rows of 2048; the intermediate: 131072 of
//   768, 96 threads a block), against ~72 us for both passes' bytes at the copy rate; the warp
//   form 86.6 us (`knob_ab_quant_warp_h200.log`: both passes 217.8 -> 173.1 us, the forward
//   0.975-0.990x at M = 1024-16384; Mixtral-8x7B and Qwen3-235B-A22B's passes 1-8% shorter,
//   their forwards 0.97-1.03x, within those rounds' spread). Below the threshold (decode) a row's
//   latency matters more: the block form spreads it over more threads (Qwen3 M = 128 forced:
//   5.4 -> 8.6 us).
// - block per row, in registers, where at most 1024 threads hold a row with at most 4 packs each
//   (bf16 rows up to 32768 values, fp32 up to 16384), with the fewest packs per thread that fit
//   (each thread then quantizes fewest values: the row's latency);
// - else the looped one (always with looped: the tests compare the forms bit for bit).
// forced_warp (INT8_MOE_ACT_QUANT_WARP = 0 | 1; -1: the rule) forces the warp form off or on
// where rows fit it (tests, A/B).
constexpr int64_t kActQuantWarpMinRows = 1024;
template <typename T>
void quantize_act_rows(const void* a, int64_t rows, int64_t used_rows, int64_t K,
                       const float* mul, const int32_t* valid, at::Tensor& q, at::Tensor& scale,
                       bool pdl, bool looped, int forced_warp, cudaStream_t stream) {
  if (rows == 0) return;
  const int64_t V = 16 / sizeof(T);
  const int64_t packs = K / V;
  const bool packed = !looped && K > 0 && K % V == 0 && is_aligned(a, 16);
  const bool warp = packed && packs <= 32 * 8 &&
                    (forced_warp < 0 ? used_rows >= kActQuantWarpMinRows : forced_warp == 1);
  if (warp) {
    const int wvpt = packs <= 32 ? 1 : packs <= 64 ? 2 : packs <= 128 ? 4 : 8;
    auto* kernel = wvpt == 1   ? &quantize_act_rows_warp_kernel<T, 1>
                   : wvpt == 2 ? &quantize_act_rows_warp_kernel<T, 2>
                   : wvpt == 4 ? &quantize_act_rows_warp_kernel<T, 4>
                               : &quantize_act_rows_warp_kernel<T, 8>;
    C10_CUDA_CHECK(launch_kernel(kernel, dim3(static_cast<unsigned>(ceil_div(rows, 8))),
                                 dim3(256u), 0, stream, pdl, static_cast<const T*>(a), rows, K,
                                 mul, valid, q.mutable_data_ptr<int8_t>(),
                                 scale.mutable_data_ptr<float>()));
    return;
  }
  const int vpt = packs <= 1024 ? 1 : packs <= 2048 ? 2 : 4;
  const int64_t threads = ceil_div(ceil_div(packs, vpt), 32) * 32;
  const bool regs = packed && threads <= 1024;
  auto* kernel = !regs     ? &quantize_act_rows_kernel<T>
                 : vpt == 1 ? &quantize_act_rows_regs_kernel<T, 1>
                 : vpt == 2 ? &quantize_act_rows_regs_kernel<T, 2>
                            : &quantize_act_rows_regs_kernel<T, 4>;
  C10_CUDA_CHECK(launch_kernel(kernel, dim3(static_cast<unsigned>(rows)),
                               dim3(regs ? static_cast<unsigned>(threads) : 256u), 0, stream, pdl,
                               static_cast<const T*>(a), K, mul, valid,
                               q.mutable_data_ptr<int8_t>(), scale.mutable_data_ptr<float>()));
}

// A device attribute, cached per device: the forward asks on every call. 0 for a device index
// outside [0, 64).
template <cudaDeviceAttr ATTR>
int cached_device_attribute(int device) {
  static std::atomic<int> cache[64] = {};  // the attribute + 1; 0: not yet asked
  if (device < 0 || device >= 64) return 0;
  int v = cache[device].load(std::memory_order_relaxed);
  if (v == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, ATTR, device));
    cache[device].store(++v, std::memory_order_relaxed);
  }
  return v - 1;
}

// Compute capability as major * 10 + minor.
int compute_capability(int device) {
  return cached_device_attribute<cudaDevAttrComputeCapabilityMajor>(device) * 10 +
         cached_device_attribute<cudaDevAttrComputeCapabilityMinor>(device);
}

// Streaming multiprocessors (at least 1).
int sm_count(int device) {
  return std::max(1, cached_device_attribute<cudaDevAttrMultiProcessorCount>(device));
}

bool is_sm90_or_newer(int device) { return compute_capability(device) >= 90; }

// wgmma exists in sm_90a machine code only, which runs on 9.0 devices only. setup.py defines
// INT8_MOE_HAS_SM90A when TORCH_CUDA_ARCH_LIST builds it.
bool wgmma_supported(int device) {
#ifdef INT8_MOE_HAS_SM90A
  return compute_capability(device) == 90;
#else
  (void)device;
  return false;
#endif
}

// The kernel family of the expert GEMMs. INT8_MOE_GEMM_PATH (decode | tiled | grouped_mm |
// wgmma) forces one where it applies (grouped_mm: W8A16 only, elsewhere the automatic choice),
// for tests and tuning; unset or "auto" picks by tokens per expert.
enum class GemmPath { kSimt, kDecode, kTiled, kGroupedMm, kWgmma };

// Above this many routes per expert (on average) torch's grouped GEMM on widened weights beats
// the tiled kernel on an H100 (benchmarks/NOTES.md, variant 6: at 64 per expert the tiled kernel
// takes 0.43x the time, at 256 it takes 1.1x, and 1.7-2.6x at 1024 and more).
constexpr int64_t kGroupedMmMinPerExpert = 64;
// W8A16 on sm_90a: the wgmma kernel up to this many routes per expert, grouped_mm above (bf16).
// The widen + grouped_mm path pays a widening pass over the whole layer that more routes per
// expert amortize, and its GEMMs run short reductions (I) poorly. With the 4-instruction
// widening (benchmarks/NOTES.md, variant 33), forced on every SPEC model at TP 1 and 8
// (`benchmarks/results/tune_moe_boundary_h100.log`), wgmma took 0.77-0.87x grouped_mm's time at
// 512 per expert everywhere; at 1024, 0.85-1.00x where I <= 2048 (Mixtral TP 8, I = 1792:
// 1.01x) but 1.03x on Mixtral I = 14336 and 0.98x on gpt-oss (2880); at 2048, 0.89-0.94x where
// I <= 256, 1.05-1.18x elsewhere. With the pipelined main loop (variant 45;
// `benchmarks/results/tune_moe_boundary_pipelined_h100.log`, two rounds) at 1024 per expert
// where I > 2048: Mixtral I = 14336 0.99x / 1.01x, 7168 1.02x / 1.01x, 3584 0.97x / 0.96x, gpt-oss
// 2880 0.98x / 0.97x; so wgmma up to 1024 there too, which spares the layer's transient bf16
// copy of the weights (1.9 GB for Mixtral's w13).
constexpr int64_t wgmma_max_per_expert(int64_t I) { return I <= 256 ? 2048 : 1024; }
// Routes per expert up to which the decode kernel runs where the wgmma kernels do not take over
// (its blocks hold at most 16 routes).
constexpr int64_t kDecodeMaxPerExpert = 16;
// GEMM2 weight tiles of the wgmma kernels (E * ceil(H / 128)) under which their grids count as
// few (Mixtral-8x7B: 8 * 32 = 256; the other SPEC shapes have 736 or more), and from which many
// (Qwen3-235B-A22B: 4096, DeepSeek-V3: 14336).
constexpr int64_t kFewWgmmaTiles = 512;
constexpr int64_t kManyWgmmaTiles = 4096;

// Routes per expert (ceil(M k / E)) from which the wgmma kernels replace the decode kernel on
// sm_90a: the first count at which forcing wgmma beat forcing decode on an H200 over SPEC's eight
// shapes and TP splits, 2-16 per expert (benchmarks/results/knob_ab_decode_wgmma_s42_h200.log,
// knob_ab_decode_wgmma_low_s42_h200.log; benchmarks/NOTES.md, variant 80). The narrow last tiles
// (variants 75, 78) made wgmma cheap on partly empty route blocks and moved the boundary down.
// - W8A16: 7 (0.94-0.98x the decode kernel's time at 7 on Qwen3-30B-A3B, OLMoE, gpt-oss,
//   DeepSeek-V2-Lite, Qwen1.5-MoE, 1.00x on Qwen3-235B; 1.03-1.05x at 6). Mixtral, whose grids
//   are few: 12 where I >= 7168 (0.93x / 0.98x at 12, 1.02x / 1.10x at 10), never where I is
//   3584 or 1792 (1.08-1.29x / 0.99-1.17x through 16).
// - W8A8: 6 (0.91-0.98x at 6, 0.93-1.04x at 5); 2 on many tiles (Qwen3-235B, DeepSeek-V3:
//   0.92-0.99x at 2, the smallest count measured); 12 on few tiles where 2048 <= I < 7168
//   (measured at Mixtral's I = 3584: 1.05-1.06x at 6, 1.00-1.02x at 8-10, 0.98x at 12).
int64_t wgmma_min_per_expert(bool int8_act, int64_t E, int64_t H, int64_t I) {
  const int64_t tiles = E * ceil_div(H, 128);
  if (tiles < kFewWgmmaTiles) {
    if (int8_act) return I >= 2048 && I < 7168 ? 12 : 6;
    return I >= 7168 ? 12 : kDecodeMaxPerExpert + 1;
  }
  if (int8_act) return tiles >= kManyWgmmaTiles ? 2 : 6;
  return 7;
}

// A tuning knob (environment variable `var`): -1 when unset or "auto", else one of `allowed`;
// anything else is a clear error naming the variable.
int choice_knob(const char* var, std::initializer_list<int> allowed) {
  const char* env = std::getenv(var);
  const std::string value = env ? env : "";
  if (value.empty() || value == "auto") return -1;
  int found = -1;
  std::string accepted = "auto";
  size_t i = 0;
  for (const int a : allowed) {
    if (value == std::to_string(a)) found = a;
    accepted += (++i == allowed.size() ? " or " : ", ") + std::to_string(a);
  }
  TORCH_CHECK(found >= 0, "int8_moe::fused_moe: ", var, " must be ", accepted, ", got '", value,
              "'");
  return found;
}
// A switch on by default (unset or "auto"); "0" turns it off, "1" keeps it on (choice_knob's
// error for anything else).
bool default_on_knob(const char* var) { return choice_knob(var, {0, 1}) != 0; }

// Whether the top-k sum stages its route rows in shared memory (moe_topk_sum_staged_kernel):
// for 2-byte activations with 8-wide loads, unsplit, k <= 8, from kTopkSumStagedMinTokens
// tokens (INT8_MOE_TOPK_SUM_STAGED = 0 | 1 forces it off or on where it applies). H200 per call
// (benchmarks/NOTES.md, variant 68; register / staged us): Qwen3-30B-A3B M = 64 2.7 / 3.4
// (few blocks: the shared-memory round trip shows), 1024 14.5 / 14.8, 4096 53.6 / 48.0, 16384
// 214 / 172; Mixtral-8x7B (k = 2: 32 bytes in flight per thread in registers) 64 2.9 / 2.5,
// 1024 21.6 / 10.3, 16384 349 / 140. The forwards gain less than the kernel does:
// `results/knob_ab_topk_sum_staged_h200.log` (variant 71; staged / register, one call per
// CUDA-graph replay): Mixtral-8x7B 0.985-0.990x at M = 16384, 0.996-0.997x at 4096,
// 1.002-1.008x at 1024; Qwen3-30B-A3B 0.993-1.000x at 16384, 1.004x at 1024, W8A16 1.059x at
// 4096 (1.045x in session 37), a row whose one-call replays read either ~0.91 or 0.96-0.98 ms
// with either form across runs. So it is the default only where no forward lost: from
// 16384 tokens.
constexpr int64_t kTopkSumStagedMinTokens = 16384;
bool topk_sum_staged(const MoeProblem& p, bool vec8, int splits, size_t elem_bytes) {
  const int forced = choice_knob("INT8_MOE_TOPK_SUM_STAGED", {0, 1});
  if (elem_bytes != 2 || !vec8 || splits != 1 || p.topk > 8) return false;
  return forced < 0 ? p.M >= kTopkSumStagedMinTokens : forced == 1;
}

// Routes from which align runs on many SMs (align_routes' parallel kernels) by default. On an
// H100 (`benchmarks/results/align_ab_h100.log`) the block kernel took 13.6 / 25.2 / 51.3 / 197 us
// at 8192 / 16384 / 32768 / 131072 routes on Qwen3-30B-A3B's 128 experts (DeepSeek-V3's 256:
// 17.5 / 32.0 / 59.8 / 225), the parallel kernels 14.6 / 14.8 / 16.2 / 23.1 (23.5 / 23.2 / 24.5 /
// 34.0); with fewer routes their three launches keep them at 8-9 us where the block kernel takes
// 4-9 (Mixtral-8x7B, 2048-8192 routes). The crossover lies between 8192 and 16384 routes: the
// default starts at 16384 (benchmarks/NOTES.md, variant 46; session 28 set 32768, before the
// final version was measured).
constexpr int64_t kAlignParallelMinRoutes = 16384;

// Whether align takes the parallel kernels (moe_routing.cuh): from kAlignParallelMinRoutes routes
// where the experts fit their shared memory (align_parallel_fits); INT8_MOE_ALIGN_PARALLEL = 0 | 1
// forces them off or on (where they fit and the one-warp kernel does not run), for tuning and
// tests.
bool align_parallel(int64_t n_routes, int64_t E) {
  const int forced = choice_knob("INT8_MOE_ALIGN_PARALLEL", {0, 1});
  if (!align_parallel_fits(E)) return false;
  return forced < 0 ? n_routes >= kAlignParallelMinRoutes : forced == 1;
}

// Routes per block of the decode kernel: 8 up to a few routes per expert on average, else 16.
// W8A16 takes 16 from 7 per expert: at 8 per expert its 16-route blocks (two 16-row MMA tiles
// per CTA, decode_mt) took 0.83-1.00x the time of 8-route ones on every SPEC shape and TP split
// measured there (DeepSeek-V3 0.83-0.95x, OLMoE 0.93-1.00x, gpt-oss 0.97-0.99x), at 4-6 per
// expert 1.04-1.23x. W8A8 (one MMA tile per CTA) keeps 8 up to 8 per expert (16: 0.95-1.04x
// there; `benchmarks/results/tune_moe_tp_*_h100.log`). 32-route blocks (one block even for an
// expert with twice the average) measured slower: 0.83 vs 0.82 ms on Mixtral at 16 per expert,
// 0.46 vs 0.41 on Qwen3-30B-A3B (benchmarks/NOTES.md, variant 7). INT8_MOE_DECODE_BM = 8 | 16 |
// 32 forces it, for tuning.
int decode_block_routes(int64_t per_expert, bool int8_act) {
  const int forced = choice_knob("INT8_MOE_DECODE_BM", {8, 16, 32});
  const int64_t small_max = int8_act ? 8 : 6;
  return forced > 0 ? forced : (per_expert <= small_max ? 8 : 16);
}

// Routes per tile of the wgmma kernel: wgmma_block_n(); INT8_MOE_WGMMA_BN = 64 | 128 | 256 forces
// it, for tuning (256: one CTA per SM).
int wgmma_block_routes(int64_t per_expert, const MoeProblem& p) {
  const int forced = choice_knob("INT8_MOE_WGMMA_BN", {64, 128, 256});
  return forced > 0 ? forced : wgmma_block_n(per_expert, p.M * p.topk, p.H, p.I, p.per_token);
}

// Warpgroups per CTA of the wgmma kernel: wgmma_warpgroups(); INT8_MOE_WGMMA_WG = 2 | 4 forces
// it where 4 exists (W8A8 at 128 routes per tile), for tuning.
int wgmma_cta_warpgroups(int BN, int64_t per_expert, int64_t I, bool int8_act) {
  const int forced = choice_knob("INT8_MOE_WGMMA_WG", {2, 4});
  if (forced > 0 && wgmma_wide_exists(BN, int8_act)) return forced;
  return wgmma_warpgroups(BN, per_expert, I, int8_act);
}

// Whether the W8A16 wgmma kernel runs its pipelined main loop (moe_gemm_wgmma.cuh): where it
// exists (128 routes per tile) by default; INT8_MOE_WGMMA_PIPE = 0 | 1 forces it off or on, for
// tuning and tests (at 64 or 256 routes per tile both run the unpipelined loop).
bool wgmma_w8a16_pipelined(int BN) {
  const int forced = choice_knob("INT8_MOE_WGMMA_PIPE", {0, 1});
  return wgmma_pipeline_exists(BN) && forced != 0;
}

// Intermediate sizes from which the wgmma GEMM1 reads its activation rows gathered per sorted
// position (one TMA box per chunk; gather_row_bytes_kernel writes them, W8A8's per-token scales
// with them) instead of the token rows by cp.async. The gather writes each route's row (H
// elements) for a GEMM1 of 4 H I FLOPs per route, so it pays with long intermediate rows. On an
// H100 (`benchmarks/results/knob_ab_gather_h100.log`, forward, TMA on, best of two rounds;
// benchmarks/NOTES.md, variant 51): Mixtral-8x7B (I = 14336, k = 2) W8A16 M = 4096 0.95x the
// time, W8A8 M = 4096 / 16384 0.99x / 0.93x, M = 1024 within 0.5%; Qwen3-30B-A3B (I = 768, k = 8)
// 1.05-1.14x. W8A16 at M = 4096 on TP splits (`benchmarks/results/knob_ab_gather_tp_h100.log`,
// `knob_ab_gather_w8a16_rule_h100.log`): 0.93x at Mixtral's I = 7168, 0.97-0.99x at 3584, 0.97x
// and 1.00x in two runs at gpt-oss-20b's 2880, 1.00x at 1792, 1.01x at 1440, 1.05x at 720; the
// gather writes every padded row, so with many small experts it costs more: DeepSeek-V3 (I =
// 2048, 256 experts, k = 8) 1.01x at M = 4096, 1.12x at 1024. W8A16 from 3072; W8A8 stayed
// within 1% from 2880 to 14336 at M = 4096 and gained 0.93x at Mixtral's M = 16384: from 8192.
constexpr int64_t kWgmmaGatherMinI = 8192;
constexpr int64_t kWgmmaGatherMinIW8A16 = 3072;

// Whether GEMM1 takes gathered rows (where the TMA-fed wgmma kernel runs): from the sizes above;
// INT8_MOE_WGMMA_GATHER = 0 | 1 forces it off or on, for tuning and tests.
bool wgmma_gather(int64_t I, bool int8_act) {
  const int forced = choice_knob("INT8_MOE_WGMMA_GATHER", {0, 1});
  return forced < 0 ? I >= (int8_act ? kWgmmaGatherMinI : kWgmmaGatherMinIW8A16) : forced == 1;
}

// Whether the wgmma kernels take their weight tiles (and GEMM2 its activation tiles) as TMA boxes
// (moe_gemm_wgmma.cuh) where that kernel is built (64 and 128 routes per tile). On an H100
// against the cp.async loads (`benchmarks/results/knob_ab_tma_h100.log`, forward, best of two
// rounds; benchmarks/NOTES.md, variant 50): W8A16 Mixtral-8x7B M = 1024 / 4096 0.95x / 0.96x the
// time, W8A8 M = 16384 0.95x, Qwen3-30B-A3B W8A8 M = 4096 / 16384 0.97x / 0.96x, the rest within
// 1.5% either way. But not W8A16's 64-route tiles where GEMM1 reads token rows (`gathered`:
// whether GEMM1 takes gathered rows, wgmma_gather, which needs TMA): there the chunk-at-a-time
// loop with TMA took 1.055x / 1.045x the time at Qwen3-30B-A3B M = 256 / 512, 1.064x / 1.049x on
// Qwen3-235B-A22B, 0.99-1.03x on DeepSeek-V2-Lite, OLMoE, Qwen1.5-MoE and gpt-oss-20b
// (`benchmarks/results/knob_ab_tma64_rule_h100.log`; benchmarks/NOTES.md, variant 56).
// INT8_MOE_WGMMA_TMA = 0 | 1 forces it off or on, for tuning and tests.
bool wgmma_tma(int BN, bool gathered, bool int8_act) {
  const int forced = choice_knob("INT8_MOE_WGMMA_TMA", {0, 1});
  if (forced >= 0) return forced == 1;
  return int8_act || BN != 64 || gathered;
}

// Whether the W8A16 wgmma GEMMs build their weight fragments by ldmatrix over activation rows
// permuted per 16 elements (moe_gemm_wgmma.cuh, perm16.cuh: GEMM1's rows gathered so or the
// token rows copied so, GEMM1's intermediate written so for GEMM2), where that exists (64 routes
// per tile, the chunk-at-a-time loop). By default on the cp.async feed from I = kWgmmaLdsmMinI:
// on an H200 (`benchmarks/results/knob_ab_ldsm_tp_h200.log`, off / on, M = 256 and 1024, best of
// two rounds) the forward took 0.967-0.984x the time at I = 384-1536 (Qwen3-30B-A3B, Qwen3-235B-
// A22B, OLMoE and their TP splits), 0.987-1.001x at 192, and 1.007-1.014x at 96 and 128, where
// the permuted copy of x (M x H) costs more than the shorter GEMMs save. The TMA feed at 64
// routes (GEMM1 gathering, I >= 3072) was not measured and stays off.
// INT8_MOE_WGMMA_LDSM = 0 | 1 forces it off or on where it exists, for tuning and tests.
constexpr int64_t kWgmmaLdsmMinI = 192;
bool wgmma_ldsm(int BN, bool tma, int64_t I) {
  const int forced = choice_knob("INT8_MOE_WGMMA_LDSM", {0, 1});
  if (!wgmma_ldsm_exists(BN)) return false;
  return forced < 0 ? !tma && I >= kWgmmaLdsmMinI : forced == 1;
}

// Whether the wgmma GEMM2 stages its output tile in shared memory and writes whole route rows'
// 16-byte pieces (MoeGemmArgs::stage_out; the same bits as each thread's 2-byte stores, which
// half-fill a 32-byte sector per 4 bytes). On by default: on an H200
// (`benchmarks/results/knob_ab_stage_out_h200.log`, off / on, best of two rounds) the forward took
// 0.941x / 0.942x the time at Qwen3-30B-A3B M = 4096 / 16384 (W8A16; GEMM2 1471 -> 1292 us at
// 16384), 0.947x / 0.927x (W8A8), 0.96-0.98x at M = 1024, 0.985-1.003x on Mixtral-8x7B.
// INT8_MOE_WGMMA_STAGE_OUT = 0 | 1 forces it off or on, for tuning and tests.
bool wgmma_stage_out() {
  return default_on_knob("INT8_MOE_WGMMA_STAGE_OUT");
}
// The same for GEMM1's intermediate tile (stmatrix into a [route][column] tile, 32-byte pieces
// of each route's columns out; the same bits as each thread's 2-byte stores). On by default: on
// an H200 (`benchmarks/results/knob_ab_stage_inter_h200.log`, off / on, best of two rounds) the
// forward took 0.966x / 0.972x the time at Mixtral-8x7B M = 4096 (W8A16 / W8A8; W8A8 0.953x at
// 16384), 0.984x / 0.955x at Qwen3-30B-A3B M = 4096, 0.949x / 0.964x at 16384, 0.974-0.977x on
// Qwen3-235B-A22B at TP 1 and 8, 0.988-1.019x at M = 1024, 0.999-1.010x on gpt-oss-20b and
// DeepSeek-V3 at M = 4096 (their wgmma kernels 0.97-0.99x the time; benchmarks/NOTES.md,
// variant 81).
// INT8_MOE_WGMMA_STAGE_INTER = 0 | 1 forces it off or on, for tuning and tests.
bool wgmma_stage_inter() {
  return default_on_knob("INT8_MOE_WGMMA_STAGE_INTER");
}

// Whether the wgmma GEMMs multiply a route block whose last routes are padding over only the
// first quarter, half or three quarters of its routes (MoeGemmArgs::narrow_tail,
// moe_gemm_wgmma.cuh; the same bits). On by default: on an H200
// (`benchmarks/results/knob_ab_narrow_tail_h200.log`, off / on) the W8A8 forward took
// 0.981x / 0.996x the time at Qwen3-30B-A3B M = 4096 / 16384 on 128-route tiles, 0.990x at
// Mixtral-8x7B M = 4096. W8A16 (`ab_w8a16_narrow_tail_h200.log`, against the W8A8-only build):
// 0.958x / 0.976x / 0.970x at M = 1024 on Qwen3-30B-A3B / Mixtral-8x7B / OLMoE, 0.988-1.010x at
// 4096 and 16384. INT8_MOE_WGMMA_NARROW = 0 | 1 forces it off or on.
bool wgmma_narrow_tail() {
  return default_on_knob("INT8_MOE_WGMMA_NARROW");
}

// x's rows with their 2-byte elements permuted per 16 (perm16.cuh), and g pointed at the copy
// (returned, to outlive GEMM1): the token rows of a W8A16 GEMM1 with LDSM that does not gather.
at::Tensor perm16_token_rows(MoeGemmArgs& g, const at::Tensor& x, cudaStream_t stream) {
  at::Tensor x_perm = at::empty(x.sizes(), x.options());  // x: contiguous (checked)
  const int64_t n32 = x.numel() * static_cast<int64_t>(x.element_size()) / 32;
  const unsigned grid = static_cast<unsigned>(std::clamp<int64_t>(ceil_div(n32, 256), 1, 8192));
  perm16_copy_kernel<<<grid, 256, 0, stream>>>(static_cast<const uint4*>(x.const_data_ptr()), n32,
                                               static_cast<uint4*>(x_perm.mutable_data_ptr()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  g.a = x_perm.const_data_ptr();
  return x_perm;
}

// The token rows of GEMM1 (a_rows_are_tokens; W8A8: a_scale per token) copied to a buffer per
// sorted position, and g pointed at it; the buffer (and the scales') returned to outlive GEMM1.
// perm16: the rows' 2-byte elements permuted per 16 as they are copied (W8A16 with LDSM).
std::pair<at::Tensor, at::Tensor> gather_gemm1_rows(MoeGemmArgs& g, const Routing& r, int BM,
                                                    int64_t row_bytes, const at::Tensor& like,
                                                    cudaStream_t stream, bool perm16 = false) {
  const int64_t capacity = r.max_blocks * BM;
  at::Tensor rows = at::empty({capacity, row_bytes}, like.options().dtype(at::kByte));
  at::Tensor scales;
  if (g.a_scale != nullptr) scales = at::empty({capacity}, like.options().dtype(at::kFloat));
  auto* kernel = perm16 ? &gather_row_bytes_kernel<true> : &gather_row_bytes_kernel<false>;
  kernel<<<static_cast<unsigned>(capacity), 256, 0, stream>>>(
      static_cast<const uint4*>(g.a), r.sorted_routes.const_data_ptr<int32_t>(),
      r.block_expert.const_data_ptr<int32_t>(), BM, g.topk, row_bytes / 16, g.a_scale,
      reinterpret_cast<uint4*>(rows.mutable_data_ptr()),
      scales.defined() ? scales.mutable_data_ptr<float>() : nullptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  g.a = rows.const_data_ptr();
  if (scales.defined()) g.a_scale = scales.const_data_ptr<float>();
  g.a_rows_are_tokens = false;
  return {rows, scales};
}

// L2 bytes of activation rows that a group of route blocks of a tiled or wgmma GEMM holds while
// it walks the weight tiles together (tile_order.cuh). On an H100 (variant 21) 16 MB against
// launch order: Mixtral-8x7B W8A8 M = 4096 0.97x the time, M = 16384 0.95x; Qwen3-30B-A3B
// M = 4096 0.94x (W8A16) and 0.98x (W8A8); 4-16 MB within 2% of each other there. On an H200
// with today's kernels 4 MB (variant 79, `benchmarks/results/knob_ab_raster_h200.log`, forced,
// best of 2): against 16 MB 0.93-0.999x the time on 22 of 27 rows over five SPEC shapes at
// M = 1024-16384 and both modes (Qwen3-30B-A3B 0.97-0.99x, Qwen3-235B-A22B W8A8 0.93x at
// M = 1024); Mixtral-8x7B at M >= 4096 1.005-1.018x there but 0.984x / 0.986x (W8A16) in another
// run, OLMoE W8A16 M = 4096 1.001x; launch order 1.00-1.21x the time of 4 MB. The tiled GEMMs
// (sm_80 / sm_89, and sm_90 without sm_90a code) keep 16 MB: not measured since.
// INT8_MOE_RASTER_KB = 0 (launch order) | 64 | 256 | 1024 | 4096 | 8192 | 16384 | 32768 | 65536
// forces it, for tuning and tests (64: groups of a few blocks even on small shapes).
constexpr int kRasterKbWgmma = 4096;
constexpr int kRasterKbTiled = 16384;
int64_t raster_bytes(bool wgmma) {
  const int kb =
      choice_knob("INT8_MOE_RASTER_KB", {0, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536});
  const int auto_kb = wgmma ? kRasterKbWgmma : kRasterKbTiled;
  return static_cast<int64_t>(kb < 0 ? auto_kb : kb) << 10;
}

// L2 bytes the CTAs of one decode GEMM may ask for before their PDL wait, all together: well
// inside an H100's 50 MB L2, which the running kernel streams through with evict-first loads.
constexpr int64_t kDecodePrefetchMb = 16;

// Routes up to which W8A16's decode chain takes direct routing by default (W8A8's: up to
// kDirectMaxRoutes, 32). Against the align kernel, same machine, both library versions
// alternating (benchmarks/NOTES.md, variant 35): W8A16 Qwen3-30B-A3B M = 1 / 2 (8 / 16 routes)
// 0.87x / 0.94x the time, but M = 3 / 4 (24 / 32) 1.02-1.04x, Mixtral-8x7B M = 2-16 within
// 1%; W8A8 Qwen3-30B-A3B M = 1-4 0.86x / 0.89x / 0.97x / 0.97x, Mixtral within 1%.
constexpr int64_t kDirectAutoRoutesW8A16 = 16;

// Routes up to which the decode chain is launched with PDL by default. With more, its GEMMs
// take several waves of CTAs, and the next kernel's CTAs, resident early and waiting, hold
// places the running kernel's later waves would use: PDL measured 0.91-0.98x at Qwen3-30B-A3B
// M = 16-64 (128-512 routes) and Mixtral M = 64, against 1.04-1.19x at M = 1-4
// (benchmarks/NOTES.md, variant 15).
constexpr int64_t kPdlMaxRoutes = 32;

// How the decode chain launches (pdl.cuh), routes and tiles its GEMMs, from five knobs parsed on
// every call (a bad value is an error whichever path runs):
// - INT8_MOE_PDL = 0 | 1 turns programmatic dependent launch off or on (from compute
//   capability 9.0; auto: on up to kPdlMaxRoutes routes);
// - INT8_MOE_DECODE_AHEAD = 2 | 4 forces the weight chunks in flight per warp (decode_ahead);
// - INT8_MOE_DECODE_PREFETCH_MB = 0 | 8 | 16 | 32 sets the prefetch budget (0: none);
// - INT8_MOE_DECODE_MT = 1 | 2 forces the 16-row MMA tiles per CTA (decode_mt);
// - INT8_MOE_DIRECT_ROUTING = 0 | 1 turns direct routing off or on where it exists (up to
//   kDirectMaxRoutes routes; auto: on up to kDirectAutoRoutesW8A16 routes for W8A16, on for
//   W8A8);
// - INT8_MOE_DECODE_SPLITK = 1 | 2 | 4 forces the K slices of GEMM2 (decode_splits);
// - INT8_MOE_ALIGN_WARP = 0 | 1 turns off or on (where it exists) the one-warp align kernel
//   (auto: on up to kAlignWarpMaxRoutes routes);
// - INT8_MOE_ALIGN_PDL = 0 | 1 launches align without or with PDL (auto: as the chain).
struct DecodeChain {
  bool pdl;
  bool direct;             // direct routing (direct_routes)
  bool align_warp;         // moe_align_warp_kernel (align_routes)
  bool align_pdl;          // align launched with PDL
  int ahead_knob;          // 0: decode_ahead's rule
  int mt_knob;             // 0: decode_mt's rule
  int split_knob;          // 0: decode_splits' rule
  int64_t prefetch_bytes;  // budget of one GEMM's prefetch
  int64_t n_routes;
  int sms;
};

DecodeChain decode_chain(bool decode_path, int device, const MoeProblem& p) {
  const int pdl = choice_knob("INT8_MOE_PDL", {0, 1});
  const int ahead = choice_knob("INT8_MOE_DECODE_AHEAD", {2, 4});
  const int mb = choice_knob("INT8_MOE_DECODE_PREFETCH_MB", {0, 8, 16, 32});
  const int mt = choice_knob("INT8_MOE_DECODE_MT", {1, 2});
  const int direct = choice_knob("INT8_MOE_DIRECT_ROUTING", {0, 1});
  const int split = choice_knob("INT8_MOE_DECODE_SPLITK", {1, 2, 4});
  const int align_warp = choice_knob("INT8_MOE_ALIGN_WARP", {0, 1});
  const int align_pdl = choice_knob("INT8_MOE_ALIGN_PDL", {0, 1});
  DecodeChain c{};
  c.n_routes = p.M * p.topk;
  c.pdl = decode_path && compute_capability(device) >= 90 &&
          (pdl < 0 ? c.n_routes <= kPdlMaxRoutes : pdl == 1);
  const int64_t direct_max =
      direct == 1 || p.per_token ? kDirectMaxRoutes : kDirectAutoRoutesW8A16;
  c.direct = decode_path && c.n_routes <= direct_max && direct != 0;
  c.align_warp = decode_path && c.n_routes <= kAlignWarpMaxRoutes && align_warp != 0;
  c.align_pdl = c.pdl && align_pdl != 0;
  c.ahead_knob = std::max(ahead, 0);
  c.mt_knob = std::max(mt, 0);
  c.split_knob = std::max(split, 0);
  c.prefetch_bytes = (mb < 0 ? kDecodePrefetchMb : mb) << 20;
  c.sms = sm_count(device);
  return c;
}

// CTAs of one decode GEMM that can hold routes (16 * mt weight rows each).
int64_t decode_busy_ctas(const MoeGemmArgs& g, bool gated, int64_t max_blocks, int mt,
                         const DecodeChain& chain) {
  const int64_t busy_blocks = std::min(max_blocks, chain.n_routes);
  return std::max<int64_t>(1, busy_blocks * ceil_div(decode_weight_tiles(g, gated), mt));
}

// Bytes of each weight row a decode CTA prefetches before its PDL wait: the budget spread over
// the busy CTAs' 16 * mt rows, whole 16-byte pieces, at most K.
int64_t decode_prefetch_row_bytes(const MoeGemmArgs& g, int64_t busy_ctas, int mt,
                                  const DecodeChain& chain) {
  return std::min(g.K, chain.prefetch_bytes / (busy_ctas * 16 * mt) / 16 * 16);
}

// 16-row MMA tiles per decode CTA (2 exists for 8 and 16 routes per block, with 2 weight chunks
// in flight per warp whatever INT8_MOE_DECODE_AHEAD says: decode_ahead): 2 for W8A16 at 16
// routes per block, where each CTA otherwise reads twice as many activation bytes (bf16) as
// weight bytes (Mixtral-8x7B M = 64: 0.82 -> 0.74 ms); 1 elsewhere (2 measured 3-8% slower at
// 8 routes per block, and no faster for W8A8, whose activations are int8; benchmarks/NOTES.md,
// variant 13).
int decode_mt(int BM, bool int8_act, const DecodeChain& chain) {
  if (BM > 16) return 1;
  if (chain.mt_knob != 0) return chain.mt_knob;
  return BM == 16 && !int8_act ? 2 : 1;
}

// Row bytes from which the decode GEMM2 may be split over K (decode_splits).
constexpr int64_t kDecodeSplitMinK = 2048;

// K slices of the decode GEMM2 (GEMM1 is never split: act() needs whole sums), each written as
// partial per-route rows that the top-k sum adds in a fixed order: 2 on rows of at least
// kDecodeSplitMinK bytes when few CTAs hold routes (kDecodeFewBusyPerSm: Mixtral at M = 1), so that
// twice as many CTAs, each with half of every row, stream the weights; else 1. At M = 1, 2 slices
// against 1: Mixtral-8x7B I = 14336 / 7168 / 3584 0.92x / 0.92x / 0.89x the time, I = 1792 even,
// Qwen1.5-MoE I = 1408 0.96x, 704 and less 1.05-1.10x; 4 slices slower than 2 (W8A16;
// benchmarks/NOTES.md, variant 26). W8A8 measured even on Mixtral then (0.151 vs 0.152 ms) and
// stayed unsplit until session 33 timed 0.92x at Mixtral M = 1 on an H200 (variant 59).
int decode_splits(const MoeGemmArgs& g2, int64_t max_blocks, int BM, bool int8_act,
                  const DecodeChain& chain) {
  if (chain.split_knob != 0) return chain.split_knob;
  const int mt = decode_mt(BM, int8_act, chain);
  const double busy_per_sm =
      static_cast<double>(decode_busy_ctas(g2, false, max_blocks, mt, chain)) / chain.sms;
  return g2.K >= kDecodeSplitMinK && busy_per_sm <= kDecodeFewBusyPerSm ? 2 : 1;
}

// aligned: the tensor-core kernels apply (tensor_core_supported, not fp32); int8_act: W8A8;
// E, H, I: the local experts, hidden and intermediate sizes (I is GEMM2's K).
GemmPath choose_gemm_path(bool aligned, bool int8_act, bool grouped_mm_ok, bool wgmma_ok,
                          int64_t per_expert, int64_t E, int64_t H, int64_t I) {
  if (!aligned) return GemmPath::kSimt;
  const char* env = std::getenv("INT8_MOE_GEMM_PATH");
  const std::string forced = env ? env : "";
  TORCH_CHECK(forced.empty() || forced == "auto" || forced == "decode" || forced == "tiled" ||
                  forced == "grouped_mm" || forced == "wgmma",
              "int8_moe::fused_moe: INT8_MOE_GEMM_PATH must be auto, decode, tiled, grouped_mm "
              "or wgmma, got '", forced, "'");
  if (forced == "decode") return GemmPath::kDecode;
  if (forced == "tiled") return GemmPath::kTiled;
  if (forced == "grouped_mm" && !int8_act) {
    TORCH_CHECK(grouped_mm_ok, "int8_moe::fused_moe: INT8_MOE_GEMM_PATH=grouped_mm needs bf16 "
                "activations on sm_90 or newer");
    return GemmPath::kGroupedMm;
  }
  if (forced == "wgmma") {
    TORCH_CHECK(wgmma_ok, "int8_moe::fused_moe: INT8_MOE_GEMM_PATH=wgmma needs a compute "
                "capability 9.0 device and a build whose TORCH_CUDA_ARCH_LIST includes 9.0a");
    return GemmPath::kWgmma;
  }
  // Up to 16 routes per expert: the decode kernel, or wgmma from wgmma_min_per_expert() on sm_90a.
  if (per_expert <= kDecodeMaxPerExpert) {
    const bool wgmma = wgmma_ok && per_expert >= wgmma_min_per_expert(int8_act, E, H, I);
    return wgmma ? GemmPath::kWgmma : GemmPath::kDecode;
  }
  // W8A8 above 16: wgmma on sm_90a (variant 9), else the tiled kernel.
  if (int8_act) return wgmma_ok ? GemmPath::kWgmma : GemmPath::kTiled;
  // W8A16 on wgmma up to wgmma_max_per_expert(I) routes per expert (0.78x the tiled kernel's time
  // at 64 per expert, 0.67-0.68x the widen + grouped_mm path's at 256); above, torch's grouped
  // GEMM on widened weights wins for bf16 (variants 10, 16 and 33).
  if (wgmma_ok && (per_expert <= wgmma_max_per_expert(I) || !grouped_mm_ok))
    return GemmPath::kWgmma;
  if (grouped_mm_ok && per_expert > kGroupedMmMinPerExpert) return GemmPath::kGroupedMm;
  return GemmPath::kTiled;
}

// Prefill: widen each weight stack to bf16 once (transient buffer of the layer's size) and run
// torch's tensor-core grouped GEMM over the routes' padded sorted rows (see moe_prefill.cuh).
void run_prefill_bf16(const at::Tensor& x, const at::Tensor& w13, const at::Tensor& w2,
                      const MoeProblem& p, const Routing& r, int BM, const MoeGemmArgs& g1,
                      const MoeGemmArgs& g2, cudaStream_t stream) {
  using T = __nv_bfloat16;
  const int64_t capacity = r.max_blocks * BM;
  const unsigned rows = static_cast<unsigned>(capacity);
  const int32_t* sorted = r.sorted_routes.const_data_ptr<int32_t>();
  const int32_t* block_expert = r.block_expert.const_data_ptr<int32_t>();
  auto widen = [&](const at::Tensor& q, at::Tensor& out) {
    const int64_t n16 = q.numel() / 16;
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>(ceil_div(n16, 256), 8192));
    widen_int8_kernel<T><<<grid, 256, 0, stream>>>(q.const_data_ptr<int8_t>(), n16,
                                                   reinterpret_cast<T*>(out.mutable_data_ptr()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  at::Tensor a = at::empty({capacity, p.H}, x.options());
  gather_rows_kernel<T><<<rows, 256, 0, stream>>>(
      reinterpret_cast<const T*>(x.const_data_ptr()), sorted, g1.topk_weights, g1.weight_on_a,
      p.topk, p.H, reinterpret_cast<T*>(a.mutable_data_ptr()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor wide = at::empty({w13.numel()}, x.options());  // w2 (half the size) reuses it
  at::Tensor w13_wide = wide.view({p.E, 2 * p.I, p.H});
  widen(w13, w13_wide);
  const at::Tensor h = at::_grouped_mm(a, w13_wide.transpose(1, 2), r.expert_end);
  at::Tensor inter = at::empty({capacity, p.I}, x.options());
  gated_epilogue_kernel<T><<<rows, 256, 0, stream>>>(
      reinterpret_cast<const T*>(h.const_data_ptr()), sorted, block_expert, BM, g1.w_scale,
      static_cast<const T*>(g1.bias), p.I, p.act, p.swiglu_alpha, p.swiglu_limit,
      reinterpret_cast<T*>(inter.mutable_data_ptr()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor w2_wide = wide.narrow(0, 0, w2.numel()).view({p.E, p.H, p.I});
  widen(w2, w2_wide);  // stream order: GEMM1 has finished reading `wide`
  const at::Tensor y = at::_grouped_mm(inter, w2_wide.transpose(1, 2), r.expert_end);
  down_epilogue_kernel<T><<<rows, 256, 0, stream>>>(
      reinterpret_cast<const T*>(y.const_data_ptr()), sorted, block_expert, BM, g2.w_scale,
      static_cast<const T*>(g2.bias), g2.topk_weights, g2.weight_on_out, p.H,
      static_cast<T*>(g2.out));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename AT, typename BiasT, bool GATED, bool INT8>
void launch_simt(const MoeGemmArgs& g, int64_t max_blocks, int64_t n_tiles, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(max_blocks), static_cast<unsigned>(n_tiles));
  moe_gemm_simt_kernel<AT, BiasT, GATED, INT8><<<grid, kSimtThreads, 0, stream>>>(g);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// One decode-kernel GEMM. early: the routing was written two or more launches back (the kernel
// before this one is not align), so with PDL its CTAs prefetch their weights before they wait.
// (GEMM1, right after align, once prefetched the expert of route b's router id for block b: with
// it, the prefetch cost Mixtral 2-3% at M = 4-64 against PDL alone, where without it the
// prefetch was neutral there, and Qwen3-30B-A3B at M = 1 did not gain; benchmarks/NOTES.md.)
// splits: K slices (GEMM2 only; decode_splits), g.split_stride apart in g.out.
template <typename T, typename AT, bool GATED>
void gemm_decode(MoeGemmArgs g, int64_t max_blocks, int BM, const DecodeChain& chain, bool early,
                 cudaStream_t stream, int splits = 1) {
  const int mt = decode_mt(BM, std::is_same_v<AT, int8_t>, chain);
  const int64_t busy = decode_busy_ctas(g, GATED, max_blocks, mt, chain) * splits;
  if (chain.pdl && early) g.prefetch_row_bytes = decode_prefetch_row_bytes(g, busy, mt, chain);
  // (A split GEMM2 keeps 2 chunks in flight: with 4 its CTAs no longer fit one wave.)
  const int ahead = splits > 1 ? 2
                               : decode_ahead<GATED>(g.K, BM, mt,
                                                     static_cast<double>(busy) / chain.sms,
                                                     chain.ahead_knob);
  const cudaError_t err =
      launch_decode_gemm<T, AT, GATED>(g, max_blocks, BM, ahead, mt, splits, chain.pdl, stream);
  C10_CUDA_CHECK(err);
}

// One W8A8 expert GEMM (int8 activations in g.a) on the kernel family `path`; simt_tiles: the
// SIMT kernel's grid height; wg: the wgmma kernel's warpgroups per CTA; tma: the wgmma kernel
// fed by TMA. The kernel before it quantized its activations (not align).
template <typename T, bool GATED>
void gemm_w8a8(GemmPath path, const MoeGemmArgs& g, int64_t max_blocks, int BM, int wg, bool tma,
               int64_t simt_tiles, const DecodeChain& chain, cudaStream_t stream,
               int splits = 1) {
  if constexpr (!std::is_same_v<T, float>) {  // fp32 activations always take kSimt
    if (path == GemmPath::kDecode) {
      gemm_decode<T, int8_t, GATED>(g, max_blocks, BM, chain, /*early=*/true, stream, splits);
      return;
    }
    if (path == GemmPath::kTiled) {
      const cudaError_t err = launch_tiled_gemm<T, int8_t, GATED>(g, max_blocks, BM, stream);
      C10_CUDA_CHECK(err);
      return;
    }
    if (path == GemmPath::kWgmma) {
      const cudaError_t err =
          launch_wgmma_gemm<T, int8_t, GATED>(g, max_blocks, BM, wg, stream, false, tma);
      C10_CUDA_CHECK(err);
      return;
    }
  }
  launch_simt<int8_t, T, GATED, true>(g, max_blocks, simt_tiles, stream);
}

template <typename T>
void fused_moe_impl(const at::Tensor& x, const at::Tensor& w13, const at::Tensor& w2,
                    const at::Tensor& w13_scale, const at::Tensor& w2_scale,
                    const at::Tensor& topk_weights, const at::Tensor& topk_ids,
                    const std::optional<at::Tensor>& w13_bias,
                    const std::optional<at::Tensor>& w2_bias,
                    const std::optional<at::Tensor>& expert_map, const MoeProblem& p,
                    at::Tensor& out, cudaStream_t stream) {
  const int64_t n_routes = p.M * p.topk;
  const bool aligned = !std::is_same_v<T, float> &&
                       tensor_core_supported(p.H, p.I, x.data_ptr(), w13.data_ptr(), w2.data_ptr());
  const int64_t per_expert = ceil_div(n_routes, std::max<int64_t>(p.E, 1));
  const bool grouped_mm_ok = std::is_same_v<T, __nv_bfloat16> && is_sm90_or_newer(x.get_device());
  const GemmPath path = choose_gemm_path(aligned, p.per_token, grouped_mm_ok,
                                         wgmma_supported(x.get_device()), per_expert, p.E, p.H,
                                         p.I);
  const bool prefill = path == GemmPath::kGroupedMm;
  int BM = kSimtBM;
  if (path == GemmPath::kDecode) BM = decode_block_routes(per_expert, p.per_token);
  if (path == GemmPath::kTiled) BM = tiled_block_n(per_expert);
  if (path == GemmPath::kGroupedMm) BM = 64;
  if (path == GemmPath::kWgmma) BM = wgmma_block_routes(per_expert, p);
  const int wg = wgmma_cta_warpgroups(BM, per_expert, p.I, p.per_token);
  // GEMM1's rows gathered per sorted position (which needs TMA), and the wgmma kernels fed by
  // TMA: by default wherever GEMM1 gathers, so INT8_MOE_WGMMA_GATHER=1 alone turns both on.
  const bool gather_wanted = path == GemmPath::kWgmma && wgmma_gather(p.I, p.per_token);
  const bool tma = path == GemmPath::kWgmma && wgmma_tma(BM, gather_wanted, p.per_token);
  const bool gather = gather_wanted && tma;
  // The decode chain launches every kernel, align included, with PDL where it can (pdl.cuh).
  const DecodeChain chain = decode_chain(path == GemmPath::kDecode, x.get_device(), p);
  const bool parallel_align = align_parallel(n_routes, p.E);  // (its knob checked on every call)
  const Routing r = chain.direct ? direct_routes(topk_ids, p, BM)
                                 : align_routes(topk_ids, expert_map, p, BM, prefill,
                                                chain.align_warp, parallel_align,
                                                chain.align_pdl, stream);
  const int64_t capacity = r.max_blocks * BM;
  const auto f32 = x.options().dtype(at::kFloat);
  const int32_t* map = expert_map.has_value() ? expert_map->const_data_ptr<int32_t>() : nullptr;

  MoeGemmArgs g1{};
  g1.topk = p.topk;
  g1.topk_weights = topk_weights.const_data_ptr<float>();
  g1.sorted_routes = r.sorted_routes.const_data_ptr<int32_t>();
  g1.block_expert = r.block_expert.defined() ? r.block_expert.const_data_ptr<int32_t>() : nullptr;
  g1.act = p.act;
  g1.alpha = p.swiglu_alpha;
  g1.limit = p.swiglu_limit;
  g1.raster_bytes = raster_bytes(path == GemmPath::kWgmma);
  g1.E = p.E;  // (the wgmma kernels' weight tensor maps; direct routing's expert ids)
  if (chain.direct) {
    g1.direct_ids = topk_ids.const_data_ptr();
    g1.direct_ids64 = topk_ids.scalar_type() == at::kLong;
    g1.direct_routes = n_routes;
    g1.expert_map = map;
    g1.E_global = p.E_global;
  }
  MoeGemmArgs g2 = g1;
  if (chain.direct) g1.record_routes = r.sorted_routes.mutable_data_ptr<int32_t>();

  g1.a = x.const_data_ptr();
  g1.a_rows_are_tokens = true;
  g1.weight_on_a = p.weight_on_input;
  g1.w = w13.const_data_ptr<int8_t>();
  g1.w_scale = w13_scale.const_data_ptr<float>();
  g1.bias = w13_bias.has_value() ? w13_bias->const_data_ptr() : nullptr;
  g1.N = 2 * p.I;
  g1.K = p.H;

  g2.a_rows_are_tokens = false;
  g2.weight_on_out = !p.weight_on_input;
  g2.w = w2.const_data_ptr<int8_t>();
  g2.w_scale = w2_scale.const_data_ptr<float>();
  g2.bias = w2_bias.has_value() ? w2_bias->const_data_ptr() : nullptr;
  g2.N = p.H;
  g2.K = p.I;

  // Per-route output rows in the activation dtype (as vLLM's): half the bytes of fp32 through
  // GEMM2 and the top-k sum (benchmarks/NOTES.md, variant 20); one set per K slice of GEMM2.
  const int splits =
      path == GemmPath::kDecode ? decode_splits(g2, r.max_blocks, BM, p.per_token, chain) : 1;
  at::Tensor route_out = at::empty({splits * n_routes, p.H}, x.options());
  g2.out = route_out.mutable_data_ptr();
  g2.split_stride = n_routes * p.H;
  g2.stage_out = path == GemmPath::kWgmma && wgmma_stage_out();
  g1.stage_out = path == GemmPath::kWgmma && wgmma_stage_inter();
  g1.narrow_tail = g2.narrow_tail = path == GemmPath::kWgmma && wgmma_narrow_tail();

  if (prefill) {
    run_prefill_bf16(x, w13, w2, p, r, BM, g1, g2, stream);
  } else if (!p.per_token && path != GemmPath::kSimt) {
    if constexpr (!std::is_same_v<T, float>) {  // fp32 activations always take kSimt
      at::Tensor inter = at::empty({capacity, p.I}, x.options());
      g1.out = inter.mutable_data_ptr();
      g2.a = inter.const_data_ptr();
      if (path == GemmPath::kDecode) {
        gemm_decode<T, T, true>(g1, r.max_blocks, BM, chain, /*early=*/false, stream);
        gemm_decode<T, T, false>(g2, r.max_blocks, BM, chain, /*early=*/true, stream, splits);
      } else if (path == GemmPath::kWgmma) {
        const bool pipe = wgmma_w8a16_pipelined(BM);
        const bool ldsm = wgmma_ldsm(BM, tma, p.I);
        std::pair<at::Tensor, at::Tensor> gathered;
        at::Tensor x_perm;
        if (gather) {
          gathered = gather_gemm1_rows(g1, r, BM, p.H * static_cast<int64_t>(sizeof(T)), x,
                                       stream, ldsm);
        } else if (ldsm) {
          x_perm = perm16_token_rows(g1, x, stream);
        }
        const cudaError_t e1 =
            launch_wgmma_gemm<T, T, true>(g1, r.max_blocks, BM, wg, stream, pipe, tma, ldsm);
        C10_CUDA_CHECK(e1);
        const cudaError_t e2 =
            launch_wgmma_gemm<T, T, false>(g2, r.max_blocks, BM, wg, stream, pipe, tma, ldsm);
        C10_CUDA_CHECK(e2);
      } else {
        // (the template argument lists' commas would split a macro argument)
        const cudaError_t e1 = launch_tiled_gemm<T, T, true>(g1, r.max_blocks, BM, stream);
        C10_CUDA_CHECK(e1);
        const cudaError_t e2 = launch_tiled_gemm<T, T, false>(g2, r.max_blocks, BM, stream);
        C10_CUDA_CHECK(e2);
      }
    }
  } else if (p.per_token) {
    at::Tensor xq = at::empty({p.M, p.H}, x.options().dtype(at::kChar));
    at::Tensor xs = at::empty({p.M}, f32);
    // apply_router_weight_on_input needs k == 1, so route == token and the weight row applies.
    // INT8_MOE_ACT_QUANT_LOOPED = 1 forces the looped quantization kernel (tests);
    // INT8_MOE_ACT_QUANT_WARP the warp-per-row one off or on (quantize_act_rows).
    const bool looped = choice_knob("INT8_MOE_ACT_QUANT_LOOPED", {0, 1}) == 1;
    const int forced_warp = choice_knob("INT8_MOE_ACT_QUANT_WARP", {0, 1});
    quantize_act_rows<T>(x.const_data_ptr(), p.M, p.M, p.H,
                         p.weight_on_input ? topk_weights.const_data_ptr<float>() : nullptr,
                         nullptr, xq, xs, chain.pdl, looped, forced_warp, stream);
    // The intermediate in the activation dtype (every W8A8 GEMM1 rounds it to T), quantized
    // per token before GEMM2: an fp32 one was twice the bytes written and read back
    // (benchmarks/NOTES.md, variant 55). (GEMM2 quantizing it on load instead, with each row's
    // max from GEMM1, measured slower: variant 58.)
    at::Tensor inter = at::empty({capacity, p.I}, x.options());
    at::Tensor iq = at::empty({capacity, p.I}, x.options().dtype(at::kChar));
    at::Tensor is = at::empty({capacity}, f32);
    g1.a = xq.const_data_ptr();
    g1.a_scale = xs.const_data_ptr<float>();
    g1.weight_on_a = false;
    g1.out = inter.mutable_data_ptr();
    std::pair<at::Tensor, at::Tensor> gathered;
    if (gather) gathered = gather_gemm1_rows(g1, r, BM, p.H, x, stream);
    gemm_w8a8<T, true>(path, g1, r.max_blocks, BM, wg, tma, ceil_div(p.I, 32), chain, stream);
    quantize_act_rows<T>(inter.const_data_ptr(), capacity, n_routes, p.I, nullptr,
                         r.sorted_routes.const_data_ptr<int32_t>(), iq, is, chain.pdl, looped,
                         forced_warp, stream);
    g2.a = iq.const_data_ptr();
    g2.a_scale = is.const_data_ptr<float>();
    gemm_w8a8<T, false>(path, g2, r.max_blocks, BM, wg, tma, ceil_div(p.H, kSimtRows), chain,
                        stream, splits);
  } else {
    at::Tensor inter = at::empty({capacity, p.I}, x.options());
    g1.out = inter.mutable_data_ptr();
    g2.a = inter.const_data_ptr();
    launch_simt<T, T, true, false>(g1, r.max_blocks, ceil_div(p.I, 32), stream);
    launch_simt<T, T, false, false>(g2, r.max_blocks, ceil_div(p.H, kSimtRows), stream);
  }

  // The top-k sum, 8 outputs per thread where rows and out allow 8-element (16 or 32 byte) loads
  // and stores.
  const bool vec8 = p.H % 8 == 0 && is_aligned(out.const_data_ptr(), 8 * sizeof(T));
  const int64_t work = p.M * p.H / (vec8 ? 8 : 1);
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(ceil_div(work, 256), 65536));
  const bool staged = topk_sum_staged(p, vec8, splits, sizeof(T));
  auto sum = [&](auto* ids) {
    using IdT = std::remove_const_t<std::remove_pointer_t<decltype(ids)>>;
    const auto* rows = reinterpret_cast<const T*>(route_out.const_data_ptr());
    auto* sums = reinterpret_cast<T*>(out.mutable_data_ptr());
    if constexpr (sizeof(T) == 2) {
      if (staged) {
        C10_CUDA_CHECK(launch_kernel(&moe_topk_sum_staged_kernel<T, IdT>, dim3(grid), dim3(256),
                                     0, stream, chain.pdl, rows, ids, map, p.E_global, p.E, p.M,
                                     p.topk, p.H, sums));
        return;
      }
    }
    auto* kernel = splits > 1 ? (vec8 ? &moe_topk_sum_kernel<T, IdT, 8, true>
                                      : &moe_topk_sum_kernel<T, IdT, 1, true>)
                              : (vec8 ? &moe_topk_sum_kernel<T, IdT, 8>
                                      : &moe_topk_sum_kernel<T, IdT, 1>);
    C10_CUDA_CHECK(launch_kernel(kernel, dim3(grid), dim3(256), 0, stream, chain.pdl, rows, ids,
                                 map, p.E_global, p.E, p.M, p.topk, splits, p.H, sums));
  };
  if (topk_ids.scalar_type() == at::kInt)
    sum(topk_ids.const_data_ptr<int32_t>());
  else
    sum(topk_ids.const_data_ptr<int64_t>());
}

void fused_moe_out_cuda(const at::Tensor& x, const at::Tensor& w13, const at::Tensor& w2,
                        const at::Tensor& w13_scale, const at::Tensor& w2_scale,
                        const at::Tensor& topk_weights, const at::Tensor& topk_ids,
                        const std::optional<at::Tensor>& w13_bias,
                        const std::optional<at::Tensor>& w2_bias,
                        const std::optional<at::Tensor>& expert_map, const std::string& activation,
                        bool apply_router_weight_on_input, const std::string& act_quant,
                        double swiglu_alpha, double swiglu_limit, at::Tensor& out) {
  const MoeProblem p = check_fused_moe_args(x, w13, w2, w13_scale, w2_scale, topk_weights,
                                            topk_ids, w13_bias, w2_bias, expert_map, activation,
                                            apply_router_weight_on_input, act_quant, swiglu_alpha,
                                            swiglu_limit);
  check_fused_moe_out(out, x);
  if (p.M == 0 || p.H == 0) return;
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (p.E == 0 || p.I == 0) {
    out.zero_();
    return;
  }
  INT8_MOE_DISPATCH_FLOAT(x.scalar_type(), "int8_moe::fused_moe", T, [&] {
    fused_moe_impl<T>(x, w13, w2, w13_scale, w2_scale, topk_weights, topk_ids, w13_bias, w2_bias,
                      expert_map, p, out, stream);
  });
}

}  // namespace
}  // namespace int8_moe

TORCH_LIBRARY_IMPL(int8_moe, CUDA, m) {
  m.impl("fused_moe", &int8_moe::fused_moe_functional<&int8_moe::fused_moe_out_cuda>);
  m.impl("fused_moe.out", &int8_moe::fused_moe_out_cuda);
}
