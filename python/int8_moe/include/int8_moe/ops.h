// int8-moe C++ API for LibTorch programs.
//
// Each function calls the registered operator through the PyTorch dispatcher, so CPU and CUDA
// tensors both work and the schemas in csrc/torch_bindings.cpp stay the single source of
// truth. Link the op library (CMake: find_package(int8_moe), target int8_moe::ops); its
// registrations run when it is loaded. Shapes, dtypes and semantics: the Python wrappers in
// int8_moe/ops.py and ../shared/SPEC.md.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <string>
#include <tuple>

namespace int8_moe {

namespace detail {
template <typename Sig>
c10::TypedOperatorHandle<Sig> op(const char* name, const char* overload = "") {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload).typed<Sig>();
}
}  // namespace detail

// Per-row symmetric int8 quantization of w [..., N, K]: (q int8 [..., N, K], scale fp32 [..., N]).
inline std::tuple<at::Tensor, at::Tensor> quantize_rows(
    const at::Tensor& w, const std::optional<at::Tensor>& amax = std::nullopt,
    bool compat = false) {
  using Sig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&,
                                                 const std::optional<at::Tensor>&, bool);
  static const auto handle = detail::op<Sig>("int8_moe::quantize_rows");
  return handle.call(w, amax, compat);
}

// Same, into preallocated q and scale.
inline void quantize_rows_out(const at::Tensor& w, const std::optional<at::Tensor>& amax,
                              bool compat, at::Tensor& q, at::Tensor& scale) {
  using Sig = void(const at::Tensor&, const std::optional<at::Tensor>&, bool, at::Tensor&,
                   at::Tensor&);
  static const auto handle = detail::op<Sig>("int8_moe::quantize_rows", "out");
  handle.call(w, amax, compat, q, scale);
}

// max(|w|) over the last dim: fp32 [..., N].
inline at::Tensor row_amax(const at::Tensor& w) {
  static const auto handle = detail::op<at::Tensor(const at::Tensor&)>("int8_moe::row_amax");
  return handle.call(w);
}

// Keyword arguments of fused_moe, with the schema's defaults.
struct FusedMoeOptions {
  std::optional<at::Tensor> w13_bias;
  std::optional<at::Tensor> w2_bias;
  std::optional<at::Tensor> expert_map;
  std::string activation = "silu";
  bool apply_router_weight_on_input = false;
  std::string act_quant = "none";
  double swiglu_alpha = 1.702;
  double swiglu_limit = 7.0;
};

// int8 fused-MoE forward: [M, H] of x's dtype.
inline at::Tensor fused_moe(const at::Tensor& x, const at::Tensor& w13, const at::Tensor& w2,
                            const at::Tensor& w13_scale, const at::Tensor& w2_scale,
                            const at::Tensor& topk_weights, const at::Tensor& topk_ids,
                            const FusedMoeOptions& o = {}) {
  using Sig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                         const at::Tensor&, const at::Tensor&, const at::Tensor&,
                         const at::Tensor&, const std::optional<at::Tensor>&,
                         const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                         const std::string&, bool, const std::string&, double, double);
  static const auto handle = detail::op<Sig>("int8_moe::fused_moe");
  return handle.call(x, w13, w2, w13_scale, w2_scale, topk_weights, topk_ids, o.w13_bias,
                     o.w2_bias, o.expert_map, o.activation, o.apply_router_weight_on_input,
                     o.act_quant, o.swiglu_alpha, o.swiglu_limit);
}

// Same, into a preallocated out [M, H] that must not alias x.
inline void fused_moe_out(const at::Tensor& x, const at::Tensor& w13, const at::Tensor& w2,
                          const at::Tensor& w13_scale, const at::Tensor& w2_scale,
                          const at::Tensor& topk_weights, const at::Tensor& topk_ids,
                          at::Tensor& out, const FusedMoeOptions& o = {}) {
  using Sig = void(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                   const at::Tensor&, const at::Tensor&, const at::Tensor&,
                   const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                   const std::optional<at::Tensor>&, const std::string&, bool,
                   const std::string&, double, double, at::Tensor&);
  static const auto handle = detail::op<Sig>("int8_moe::fused_moe", "out");
  handle.call(x, w13, w2, w13_scale, w2_scale, topk_weights, topk_ids, o.w13_bias, o.w2_bias,
              o.expert_map, o.activation, o.apply_router_weight_on_input, o.act_quant,
              o.swiglu_alpha, o.swiglu_limit, out);
}

}  // namespace int8_moe
