// Small kernels around the expert GEMMs: per-row int8 quantization of activations (W8A8) and
// the fixed-order top-k sum that makes the output deterministic.
#pragma once

#include <cuda_runtime.h>

#include <type_traits>

#include "../common/moe_math.h"
#include "abs_bits.cuh"
#include "cp_async.cuh"
#include "cuda_types.cuh"
#include "moe_routing.cuh"
#include "pdl.cuh"

namespace int8_moe {

// The max of v over the block's threads (`warps` = blockDim.x / 32, at most MAX_WARPS), returned
// to every thread; one block barrier. fmaxf is order-free (a NaN drops out in any order), so the
// two quantization kernels below get the same bits from it.
template <int MAX_WARPS>
__device__ __forceinline__ float block_max(float v, int warps) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  __shared__ float warp_max[MAX_WARPS];
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = v;
  __syncthreads();
  for (int w = 0; w < warps; ++w) v = fmaxf(v, warp_max[w]);
  return v;
}

// q[r] = round_half_away(a[r] * mul[r] / s[r]), s[r] = max(amax, 1e-10) / 127; one block per
// row. Rows with valid[r] < 0 (padding) are skipped. mul and valid may be null. The looped form,
// for any K and alignment: each thread reads its elements twice, one at a time.
template <typename T>
__global__ void __launch_bounds__(256)
    quantize_act_rows_kernel(const T* __restrict__ a, int64_t K, const float* __restrict__ mul,
                             const int32_t* __restrict__ valid, int8_t* __restrict__ q,
                             float* __restrict__ scale) {
  pdl_wait();  // in a PDL chain (pdl.cuh)
  pdl_launch_dependents();
  const int64_t r = blockIdx.x;
  if (valid != nullptr && valid[r] < 0) return;
  const T* ar = a + r * K;
  const float m = mul ? mul[r] : 1.0f;
  float amax = 0.0f;
  for (int64_t i = threadIdx.x; i < K; i += 256)
    amax = fmaxf(amax, fabsf(Elem<T>::to_float(ar[i]) * m));
  amax = block_max<8>(amax, 8);
  const float s = activation_scale_from_amax(amax), inv = 1.0f / s;
  if (threadIdx.x == 0) scale[r] = s;
  for (int64_t i = threadIdx.x; i < K; i += 256)
    q[r * K + i] = quantize_activation_fast(Elem<T>::to_float(ar[i]) * m, s, inv);
}

// The int8 values held in the low bytes of V words (quantize_activation_magic's sums) packed
// into V / 4 words: three byte permutes per four values. (Returned as words: a Pack<int8_t, V>
// built from them was taken apart into bytes and put back together before its store.)
template <int V>
__device__ __forceinline__ Pack<uint32_t, V / 4> low_bytes(const uint32_t (&w)[V]) {
  static_assert(V % 4 == 0, "whole 32-bit words of int8");
  Pack<uint32_t, V / 4> out;
#pragma unroll
  for (int j = 0; j < V / 4; ++j)
    out.v[j] = __byte_perm(__byte_perm(w[4 * j], w[4 * j + 1], 0x0040),
                           __byte_perm(w[4 * j + 2], w[4 * j + 3], 0x0040), 0x5410);
  return out;
}

// A 16-byte pack's values in fp32 (Elem<T>::to_float's), converted from its 32-bit words: a
// bf16 pair is one shift and one mask, not a permute per high half.
template <typename T>
__device__ __forceinline__ void pack_to_floats(const Pack<T, 16 / sizeof(T)>& p,
                                               float (&f)[16 / sizeof(T)]) {
  const uint4 u = *reinterpret_cast<const uint4*>(&p);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      f[2 * j] = __uint_as_float(w[j] << 16);
      f[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
    } else if constexpr (std::is_same_v<T, __half>) {
      const float2 h = __half22float2(*reinterpret_cast<const __half2*>(&w[j]));
      f[2 * j] = h.x;
      f[2 * j + 1] = h.y;
    } else {
      f[j] = __uint_as_float(w[j]);
    }
  }
}

// One thread's 16-byte packs of a row held in registers: packs first, first + stride, ... below
// n_vec (at most VPT), all loaded before the first is used (one memory round trip per row). The
// register and warp forms below differ only in first / stride, in how the max is reduced across
// threads, and in where a pack to redo is read from (store_quantized).
template <typename T, int VPT, typename I>
struct RowPacks {
  static constexpr int V = 16 / sizeof(T);
  Pack<T, V> v[VPT];  // (left unset where !has(i))
  I first, stride;
  int64_t n_vec;
  __device__ __forceinline__ RowPacks(I first_, I stride_, int64_t n_vec_)
      : first(first_), stride(stride_), n_vec(n_vec_) {}
  __device__ __forceinline__ bool has(int i) const {
    return first + static_cast<I>(i) * stride < n_vec;
  }
  __device__ __forceinline__ void load(const Pack<T, V>* src) {
#pragma unroll
    for (int i = 0; i < VPT; ++i)
      if (has(i)) v[i] = src[first + static_cast<I>(i) * stride];
  }
  // max |value * m| over this thread's packs (0 with none).
  __device__ __forceinline__ float abs_max(float m) const {
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < VPT; ++i)
      if (has(i))
#pragma unroll
        for (int e = 0; e < V; ++e) amax = fmaxf(amax, fabsf(Elem<T>::to_float(v[i].v[e]) * m));
    return amax;
  }
  // max |value| over this thread's packs as a bit pattern (abs_bits.cuh; 0 with none): the
  // order of |value| where no value is NaN (abs_max leaves NaNs out; their bits sort above inf).
  __device__ __forceinline__ uint32_t abs_bits_max() const {
    uint32_t bits = 0;
#pragma unroll
    for (int i = 0; i < VPT; ++i)
      if (has(i)) bits = pack_abs_bits_max<T>(v[i], bits);
    return bits;
  }
  // The packs (times m where MUL; else m is 1) quantized with the row's scale s (inv = 1 / s)
  // into dst (the row's int8 packs): quantize_activation_fast's bits, by the magic-number
  // rounding (quantize_activation_magic) and byte permutes. A pack holding a value near a tie
  // or not finite (~1.5% of a random row's packs: a warp met one in ~30% of its pack steps) is
  // redone by quantize_activation_fast after the others, so that the common path has no branch:
  // RELOAD (the warp form, many rows: throughput) reads such packs again from src (the row's
  // packs; L1 / L2), one divergent pass per row, and keeps no pack live past its step; else (the
  // block form: decode, where a row's latency counts) from the registers, no second round trip
  // (benchmarks/NOTES.md, variant 72).
  // (MUL: whether the row has a multiplier; both kernels branch on it once per row, so that
  // the common case has no multiply per value.)
  template <bool RELOAD>
  __device__ __forceinline__ void store_quantized(const Pack<T, V>* src, Pack<int8_t, V>* dst,
                                                  bool mul, float m, float s, float inv) const {
    if (mul) {
      store_quantized<true, RELOAD>(src, dst, m, s, inv);
    } else {
      store_quantized<false, RELOAD>(src, dst, m, s, inv);
    }
  }
  template <bool MUL, bool RELOAD>
  __device__ __forceinline__ void store_quantized(const Pack<T, V>* src, Pack<int8_t, V>* dst,
                                                  float m, float s, float inv) const {
    uint32_t redo = 0;
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
      if (!has(i)) continue;
      float x[V];
      pack_to_floats<T>(v[i], x);
      uint32_t sums[V];
      bool exact = false;
#pragma unroll
      for (int e = 0; e < V; ++e)
        sums[e] = quantize_activation_magic(MUL ? x[e] * m : x[e], inv, exact);
      store_words(dst, i, low_bytes(sums));
      redo |= static_cast<uint32_t>(exact) << i;
    }
    if constexpr (RELOAD) {
      while (redo != 0) {
        const int i = __ffs(redo) - 1;
        redo &= redo - 1;
        redo_pack(src[first + static_cast<I>(i) * stride], dst, i, m, s, inv);
      }
    } else {
#pragma unroll
      for (int i = 0; i < VPT; ++i)
        if ((redo >> i) & 1u) redo_pack(v[i], dst, i, m, s, inv);
    }
  }
  // Pack i again, value by value by quantize_activation_fast (the same thread's later store to
  // the same place). (p by value: taken by reference, the warp form kept its packs on the stack.)
  __device__ __forceinline__ void redo_pack(const Pack<T, V> p, Pack<int8_t, V>* dst, int i,
                                            float m, float s, float inv) const {
    uint32_t q[V];
#pragma unroll
    for (int e = 0; e < V; ++e)
      q[e] = static_cast<uint8_t>(quantize_activation_fast(Elem<T>::to_float(p.v[e]) * m, s, inv));
    store_words(dst, i, low_bytes(q));
  }
  // Pack i's int8 values as words (both stores of a redone pack through the one type).
  __device__ __forceinline__ void store_words(Pack<int8_t, V>* dst, int i,
                                              const Pack<uint32_t, V / 4>& w) const {
    *reinterpret_cast<Pack<uint32_t, V / 4>*>(dst + first + static_cast<I>(i) * stride) = w;
  }
};

// The same quantization with the row held in registers: one block of blockDim.x threads (a
// multiple of 32, at most 1024) per row, thread t holding the row's 16-byte packs t,
// t + blockDim.x, ... (at most VPT of them), all loaded before the first is used, so a row costs
// one memory round trip (the looped form reads a Mixtral-8x7B intermediate row, 14336 values,
// as 56 scalar loads per thread in a loop, then again to quantize it: on the W8A8 decode
// chain's critical path). Needs K a multiple of 16 / sizeof(T) and 16-byte aligned
// rows. Same arithmetic as the looped form (the max is order-free): bitwise the same result.
template <typename T, int VPT>
__global__ void __launch_bounds__(1024)
    quantize_act_rows_regs_kernel(const T* __restrict__ a, int64_t K, const float* __restrict__ mul,
                                  const int32_t* __restrict__ valid, int8_t* __restrict__ q,
                                  float* __restrict__ scale) {
  pdl_wait();  // in a PDL chain (pdl.cuh)
  pdl_launch_dependents();
  const int64_t r = blockIdx.x;
  if (valid != nullptr && valid[r] < 0) return;
  using Row = RowPacks<T, VPT, int64_t>;
  const int64_t n_vec = K / Row::V;
  const auto* src = reinterpret_cast<const Pack<T, Row::V>*>(a + r * K);
  const float m = mul ? mul[r] : 1.0f;
  Row row(threadIdx.x, blockDim.x, n_vec);
  row.load(src);
  const float amax = block_max<32>(row.abs_max(m), static_cast<int>(blockDim.x / 32));
  const float s = activation_scale_from_amax(amax), inv = 1.0f / s;
  if (threadIdx.x == 0) scale[r] = s;
  row.template store_quantized<false>(src, reinterpret_cast<Pack<int8_t, Row::V>*>(q + r * K),
                                      mul != nullptr, m, s, inv);
}

// The same quantization with one warp per row, 8 rows a block of 256 threads: lane l holds the
// row's 16-byte packs l, l + 32, ... (at most VPT), all loaded before the first is used, and the
// row's max is a warp reduction (no block barrier). Built for many short rows (the intermediate
// between the GEMMs: capacity rows of I values; x: M rows of H): one block of 96 threads per
// 768-value row left each SM few bytes in flight and the launch a block per row. Same arithmetic
// (the max is order-free): bitwise the other two forms' result.
template <typename T, int VPT>
__global__ void __launch_bounds__(256)
    quantize_act_rows_warp_kernel(const T* __restrict__ a, int64_t rows, int64_t K,
                                  const float* __restrict__ mul, const int32_t* __restrict__ valid,
                                  int8_t* __restrict__ q, float* __restrict__ scale) {
  pdl_wait();  // in a PDL chain (pdl.cuh)
  pdl_launch_dependents();
  const int64_t r = blockIdx.x * 8ll + threadIdx.x / 32;
  if (r >= rows || (valid != nullptr && valid[r] < 0)) return;  // whole warps leave
  const int lane = threadIdx.x % 32;
  using Row = RowPacks<T, VPT, int>;
  Row row(lane, 32, K / Row::V);
  const auto* src = reinterpret_cast<const Pack<T, Row::V>*>(a + r * K);
  const float m = mul ? mul[r] : 1.0f;
  row.load(src);
  // Without a multiplier the row's max is one integer max over the bits (abs_bits.cuh), unless
  // the row holds a NaN, which the float form's fmaxf leaves out.
  uint32_t bits = 0;
  if (mul == nullptr) {
    bits = row.abs_bits_max();
#pragma unroll
    for (int o = 16; o > 0; o /= 2) bits = max(bits, __shfl_xor_sync(0xffffffffu, bits, o));
  }
  float amax = AbsBits<T>::to_float(bits);
  if (mul != nullptr || bits > AbsBits<T>::kInf) {
    amax = row.abs_max(m);
#pragma unroll
    for (int o = 16; o > 0; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  }
  const float s = activation_scale_from_amax(amax), inv = 1.0f / s;
  if (lane == 0) scale[r] = s;
  row.template store_quantized<true>(src, reinterpret_cast<Pack<int8_t, Row::V>*>(q + r * K),
                                     mul != nullptr, m, s, inv);
}

// s[u] += pack v's values in fp32 (the top-k sum's per-row step).
template <typename T, int VEC>
__device__ __forceinline__ void add_pack(float (&s)[VEC], const Pack<T, VEC>& v) {
#pragma unroll
  for (int u = 0; u < VEC; ++u) s[u] += Elem<T>::to_float(v.v[u]);
}

// The sums rounded to T.
template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> round_pack(const float (&s)[VEC]) {
  Pack<T, VEC> o;
#pragma unroll
  for (int u = 0; u < VEC; ++u) o.v[u] = Elem<T>::from_float(s[u]);
  return o;
}

// out[t, h] = sum over slots j (in order, in fp32) of route_out[t * k + j, h] (activation dtype),
// skipping routes whose expert is not on this rank; cast to T. SPLIT (GEMM2 split over K): each
// route has `splits` partial rows, M * k rows apart, added slice by slice after its slot's
// previous ones (a fixed order); a compile-time flag so that the unsplit sum carries none of its
// code. Each thread sums VEC consecutive h of one token (one wide load per route row; VEC = 8
// needs H % 8 == 0 and aligned rows), so the token's ids are resolved once per VEC outputs.
// Grid-stride over M * H / VEC.
template <typename T, typename IdT, int VEC, bool SPLIT = false>
__global__ void __launch_bounds__(256)
    moe_topk_sum_kernel(const T* __restrict__ route_out, const IdT* __restrict__ ids,
                        const int32_t* expert_map, int64_t E_global, int64_t E, int64_t M,
                        int64_t topk, int64_t splits, int64_t H, T* __restrict__ out) {
  pdl_wait();  // in a PDL chain (pdl.cuh)
  pdl_launch_dependents();
  using V = Pack<T, VEC>;
  const int64_t HV = H / VEC;
  const int64_t n_rows = SPLIT ? topk * splits : topk;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < M * HV;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / HV, h = (i % HV) * VEC;
    float s[VEC];
#pragma unroll
    for (int u = 0; u < VEC; ++u) s[u] = 0.0f;
    // Up to 8 rows loaded at once (one memory round trip, not one per row), then added in
    // order. SPLIT: row r is slot j, K slice z, kept as counters (a 64-bit division per row
    // is a long chain of dependent instructions).
    int64_t j = 0, z = 0;
    for (int64_t r0 = 0; r0 < n_rows; r0 += 8) {
      V v[8];
      bool ok[8];
#pragma unroll
      for (int b = 0; b < 8; ++b) {
        if constexpr (!SPLIT) j = r0 + b;
        ok[b] = r0 + b < n_rows &&
                resolve_expert(ids[t * topk + j], expert_map, E_global, E) >= 0;
        if (ok[b])
          v[b] = *reinterpret_cast<const V*>(route_out + ((z * M + t) * topk + j) * H + h);
        if constexpr (SPLIT) {
          if (++z == splits) {
            z = 0;
            ++j;
          }
        }
      }
#pragma unroll
      for (int b = 0; b < 8; ++b)
        if (ok[b]) add_pack(s, v[b]);
    }
    *reinterpret_cast<V*>(out + t * H + h) = round_pack<T>(s);
  }
}

// The unsplit top-k sum of 2-byte T with 8 outputs per thread and k <= 8, each thread's route row
// pieces (16 bytes each) copied global -> shared by cp.async and added from there: the same sums
// in the same order, so bitwise moe_topk_sum_kernel's output. The bytes in flight per SM are
// then bounded by shared memory (32 KB a block, 7 blocks) instead of by the registers that held
// them: the register form takes 119 registers for bf16 (2 blocks of 256 threads, 64 KB in flight
// per SM at k = 8, 16 KB at Mixtral-8x7B's k = 2). H200 (benchmarks/NOTES.md, variant 68):
// Mixtral-8x7B M = 16384 349 -> 140 us, Qwen3-30B-A3B 214 -> 172 us.
template <typename T, typename IdT>
__global__ void __launch_bounds__(256)
    moe_topk_sum_staged_kernel(const T* __restrict__ route_out, const IdT* __restrict__ ids,
                               const int32_t* expert_map, int64_t E_global, int64_t E, int64_t M,
                               int64_t topk, int64_t H, T* __restrict__ out) {
  static_assert(sizeof(T) == 2, "one 16-byte piece of 8 values per row");
  constexpr int VEC = 8;
  using V = Pack<T, VEC>;
  __shared__ V stage[8][256];
  pdl_wait();  // in a PDL chain (pdl.cuh)
  pdl_launch_dependents();
  const int64_t HV = H / VEC;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < M * HV;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / HV, h = (i % HV) * VEC;
    unsigned ok = 0;
#pragma unroll
    for (int b = 0; b < 8; ++b) {
      if (b < topk && resolve_expert(ids[t * topk + b], expert_map, E_global, E) >= 0) {
        ok |= 1u << b;
        cp_async_16(shared_address(&stage[b][threadIdx.x]), route_out + (t * topk + b) * H + h,
                    true);
      }
    }
    cp_async_commit();
    cp_async_wait<0>();  // each thread reads back only its own pieces
    // The copies write shared memory behind the compiler's back (asm without a memory clobber):
    // compiler fences keep these reads after the wait and before the next item's copies.
    compiler_fence();
    float s[VEC] = {};
#pragma unroll
    for (int b = 0; b < 8; ++b)
      if (ok >> b & 1u) add_pack(s, stage[b][threadIdx.x]);
    compiler_fence();
    *reinterpret_cast<V*>(out + t * H + h) = round_pack<T>(s);
  }
}

}  // namespace int8_moe
