// CPU fused-MoE forward. Routes (token, slot) are grouped by local expert with a counting sort,
// each expert's routes are cut into blocks, and a block runs GEMM1 -> activation -> GEMM2 with
// int8 weights dequantized tile by tile (fp32 accumulation, or int32 dot products in W8A8). Each route writes
// its own fp32 row; a last pass sums a token's k rows in slot order, so results are deterministic.
#include <ATen/Parallel.h>
#include <torch/all.h>

#include <algorithm>
#include <vector>

#include "../common/checks.h"
#include "../common/functional.h"
#include "../common/moe_args.h"
#include "../common/moe_math.h"

namespace int8_moe {
namespace {

constexpr int64_t kRoutesPerBlock = 16;

int32_t dot_i8_i8(const int8_t* a, const int8_t* b, int64_t K) {
  int32_t acc = 0;
  for (int64_t i = 0; i < K; ++i) acc += static_cast<int32_t>(a[i]) * static_cast<int32_t>(b[i]);
  return acc;
}

// out[b, j] = (a_b . w_j) * scale_j + bias_j for b < n, j < rows, with a [n, K] fp32 and w
// [rows, K] int8. W8A16 path: weight tiles are dequantized to fp32 and multiplied with a BLAS
// GEMM (single-threaded inside at::parallel_for), fp32 accumulation.
template <typename T>
void gemm_f32_i8(const float* a, int64_t n, int64_t K, const int8_t* w, const float* scale,
                 const T* bias, int64_t rows, float* out) {
  constexpr int64_t kTile = 64;
  std::vector<float> tile(kTile * K);
  const at::Tensor A = at::from_blob(const_cast<float*>(a), {n, K}, at::kFloat);
  for (int64_t j0 = 0; j0 < rows; j0 += kTile) {
    const int64_t nt = std::min(kTile, rows - j0);
    for (int64_t i = 0; i < nt * K; ++i) tile[i] = static_cast<float>(w[j0 * K + i]);
    const at::Tensor B = at::from_blob(tile.data(), {nt, K}, at::kFloat);
    const at::Tensor C = at::mm(A, B.t()).contiguous();
    const float* c = C.const_data_ptr<float>();
    for (int64_t b = 0; b < n; ++b)
      for (int64_t j = 0; j < nt; ++j)
        out[b * rows + j0 + j] =
            c[b * nt + j] * scale[j0 + j] + (bias ? static_cast<float>(bias[j0 + j]) : 0.0f);
  }
}

// Per-token int8 quantization of n rows of length K (W8A8 activations).
void quantize_activation_rows(const float* a, int64_t n, int64_t K, int8_t* q, float* scale) {
  for (int64_t r = 0; r < n; ++r) {
    const float* ar = a + r * K;
    float amax = 0.0f;
    for (int64_t i = 0; i < K; ++i) amax = std::max(amax, std::fabs(ar[i]));
    const float s = activation_scale_from_amax(amax);
    scale[r] = s;
    for (int64_t i = 0; i < K; ++i) q[r * K + i] = quantize_activation_value(ar[i], s);
  }
}

// Local expert of every route, -1 when the id is out of range or mapped away.
std::vector<int32_t> resolve_routes(const at::Tensor& topk_ids, const int32_t* expert_map,
                                    const MoeProblem& p) {
  const at::Tensor ids = topk_ids.to(at::kLong);
  const int64_t* id = ids.const_data_ptr<int64_t>();
  std::vector<int32_t> expert(p.M * p.topk);
  for (int64_t r = 0; r < p.M * p.topk; ++r) {
    int64_t e = -1;
    if (id[r] >= 0 && id[r] < p.E_global) {
      e = expert_map ? expert_map[id[r]] : id[r];
      if (e < 0 || e >= p.E) e = -1;
    }
    expert[r] = static_cast<int32_t>(e);
  }
  return expert;
}

template <typename T>
struct CpuMoeArgs {
  const T* x;
  const int8_t* w13;
  const int8_t* w2;
  const float* w13_scale;
  const float* w2_scale;
  const float* topk_weights;
  const T* w13_bias;  // nullable
  const T* w2_bias;   // nullable
  float* route_out;   // [M*k, H], zero-filled
};

// One block of routes that all go to expert e.
template <typename T>
void run_block(const CpuMoeArgs<T>& a, const MoeProblem& p, int64_t e, const int32_t* routes,
               int64_t n) {
  const int64_t H = p.H, I = p.I;
  std::vector<float> xa(n * H), g13(n * 2 * I), act(n * I);
  std::vector<int8_t> xq, hq;
  std::vector<float> xs, hs;

  for (int64_t b = 0; b < n; ++b) {
    const int64_t r = routes[b];
    const T* xr = a.x + (r / p.topk) * H;
    const float w = p.weight_on_input ? a.topk_weights[r] : 1.0f;
    for (int64_t i = 0; i < H; ++i) xa[b * H + i] = static_cast<float>(xr[i]) * w;
  }
  if (p.per_token) {
    xq.resize(n * H);
    xs.resize(n);
    quantize_activation_rows(xa.data(), n, H, xq.data(), xs.data());
  }

  // GEMM1: g13[b, row] = x_b . W13_e[row] * scale (+ bias)
  const T* b13 = a.w13_bias ? a.w13_bias + e * 2 * I : nullptr;
  if (!p.per_token)
    gemm_f32_i8(xa.data(), n, H, a.w13 + e * 2 * I * H, a.w13_scale + e * 2 * I, b13, 2 * I,
                g13.data());
  for (int64_t row = 0; p.per_token && row < 2 * I; ++row) {
    const int8_t* wr = a.w13 + (e * 2 * I + row) * H;
    const float s = a.w13_scale[e * 2 * I + row];
    const float bias = a.w13_bias ? static_cast<float>(a.w13_bias[e * 2 * I + row]) : 0.0f;
    for (int64_t b = 0; b < n; ++b) {
      const float acc = static_cast<float>(dot_i8_i8(xq.data() + b * H, wr, H)) * xs[b] * s;
      g13[b * 2 * I + row] = acc + bias;
    }
  }
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t j = 0; j < I; ++j) {
      const float g = g13[b * 2 * I + gate_row(p.act, j, I)];
      const float u = g13[b * 2 * I + up_row(p.act, j, I)];
      act[b * I + j] = gated_activation(p.act, g, u, p.swiglu_alpha, p.swiglu_limit);
    }
  }
  if (p.per_token) {
    // W8A8 rounds the intermediate to the activation dtype before quantizing it, as the CUDA
    // kernels (and vLLM's) hold it.
    for (float& v : act) v = static_cast<float>(static_cast<T>(v));
    hq.resize(n * I);
    hs.resize(n);
    quantize_activation_rows(act.data(), n, I, hq.data(), hs.data());
  }

  // GEMM2: y[b, row] = act_b . W2_e[row] * scale + bias
  std::vector<float> y(n * H);
  if (!p.per_token)
    gemm_f32_i8(act.data(), n, I, a.w2 + e * H * I, a.w2_scale + e * H,
                a.w2_bias ? a.w2_bias + e * H : nullptr, H, y.data());
  for (int64_t row = 0; p.per_token && row < H; ++row) {
    const int8_t* wr = a.w2 + (e * H + row) * I;
    const float s = a.w2_scale[e * H + row];
    const float bias = a.w2_bias ? static_cast<float>(a.w2_bias[e * H + row]) : 0.0f;
    for (int64_t b = 0; b < n; ++b)
      y[b * H + row] = static_cast<float>(dot_i8_i8(hq.data() + b * I, wr, I)) * hs[b] * s + bias;
  }
  // Router weight, into the route's own row.
  for (int64_t b = 0; b < n; ++b) {
    const int64_t r = routes[b];
    const float w = p.weight_on_input ? 1.0f : a.topk_weights[r];
    for (int64_t row = 0; row < H; ++row) a.route_out[r * H + row] = y[b * H + row] * w;
  }
}

template <typename T>
void fused_moe_cpu_impl(const CpuMoeArgs<T>& a, const MoeProblem& p,
                        const std::vector<int32_t>& route_expert, T* out) {
  // Counting sort of routes by expert (stable: ascending route index within an expert).
  std::vector<int64_t> offsets(p.E + 1, 0);
  for (int32_t e : route_expert)
    if (e >= 0) ++offsets[e + 1];
  for (int64_t e = 0; e < p.E; ++e) offsets[e + 1] += offsets[e];
  std::vector<int32_t> sorted(offsets[p.E]);
  std::vector<int64_t> fill(offsets.begin(), offsets.end() - 1);
  for (int64_t r = 0; r < static_cast<int64_t>(route_expert.size()); ++r)
    if (route_expert[r] >= 0) sorted[fill[route_expert[r]]++] = static_cast<int32_t>(r);

  struct Block {
    int64_t expert, begin, count;
  };
  std::vector<Block> blocks;
  for (int64_t e = 0; e < p.E; ++e)
    for (int64_t b = offsets[e]; b < offsets[e + 1]; b += kRoutesPerBlock)
      blocks.push_back({e, b, std::min(kRoutesPerBlock, offsets[e + 1] - b)});

  at::parallel_for(0, static_cast<int64_t>(blocks.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      run_block(a, p, blocks[i].expert, sorted.data() + blocks[i].begin, blocks[i].count);
  });

  // Sum each token's k routes in slot order.
  at::parallel_for(0, p.M, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      for (int64_t h = 0; h < p.H; ++h) {
        float s = 0.0f;
        for (int64_t j = 0; j < p.topk; ++j) s += a.route_out[(t * p.topk + j) * p.H + h];
        out[t * p.H + h] = static_cast<T>(s);
      }
    }
  });
}

void fused_moe_out_cpu(const at::Tensor& x, const at::Tensor& w13, const at::Tensor& w2,
                              const at::Tensor& w13_scale, const at::Tensor& w2_scale,
                              const at::Tensor& topk_weights, const at::Tensor& topk_ids,
                              const std::optional<at::Tensor>& w13_bias,
                              const std::optional<at::Tensor>& w2_bias,
                              const std::optional<at::Tensor>& expert_map,
                              const std::string& activation, bool apply_router_weight_on_input,
                              const std::string& act_quant, double swiglu_alpha,
                              double swiglu_limit, at::Tensor& out) {
  const MoeProblem p = check_fused_moe_args(x, w13, w2, w13_scale, w2_scale, topk_weights, topk_ids,
                                            w13_bias, w2_bias, expert_map, activation,
                                            apply_router_weight_on_input, act_quant, swiglu_alpha,
                                            swiglu_limit);
  check_fused_moe_out(out, x);
  if (p.M == 0 || p.H == 0) return;
  const std::vector<int32_t> route_expert = resolve_routes(
      topk_ids, expert_map.has_value() ? expert_map->const_data_ptr<int32_t>() : nullptr, p);
  at::Tensor route_out = at::zeros({p.M * p.topk, p.H}, x.options().dtype(at::kFloat));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "fused_moe_cpu", [&] {
    CpuMoeArgs<scalar_t> a{x.const_data_ptr<scalar_t>(),
                           w13.const_data_ptr<int8_t>(),
                           w2.const_data_ptr<int8_t>(),
                           w13_scale.const_data_ptr<float>(),
                           w2_scale.const_data_ptr<float>(),
                           topk_weights.const_data_ptr<float>(),
                           w13_bias.has_value() ? w13_bias->const_data_ptr<scalar_t>() : nullptr,
                           w2_bias.has_value() ? w2_bias->const_data_ptr<scalar_t>() : nullptr,
                           route_out.mutable_data_ptr<float>()};
    fused_moe_cpu_impl(a, p, route_expert, out.mutable_data_ptr<scalar_t>());
  });
}

}  // namespace
}  // namespace int8_moe

TORCH_LIBRARY_IMPL(int8_moe, CPU, m) {
  m.impl("fused_moe", &int8_moe::fused_moe_functional<&int8_moe::fused_moe_out_cpu>);
  m.impl("fused_moe.out", &int8_moe::fused_moe_out_cpu);
}
