// The functional ops built from their out variants, shared by the CPU and CUDA bindings:
// allocate the outputs on the input's device, then call that device's out kernel.
#pragma once

#include <torch/all.h>

#include <optional>
#include <string>
#include <tuple>

#include "moe_args.h"

namespace int8_moe {

template <auto QuantizeRowsOut>
std::tuple<at::Tensor, at::Tensor> quantize_rows_functional(const at::Tensor& w,
                                                            const std::optional<at::Tensor>& amax,
                                                            bool compat) {
  check_quantize_input("int8_moe::quantize_rows", w);
  at::Tensor q = at::empty(w.sizes(), w.options().dtype(at::kChar));
  at::Tensor scale = at::empty(w.sizes().slice(0, w.dim() - 1), w.options().dtype(at::kFloat));
  QuantizeRowsOut(w, amax, compat, q, scale);
  return {q, scale};
}

template <auto FusedMoeOut>
at::Tensor fused_moe_functional(const at::Tensor& x, const at::Tensor& w13, const at::Tensor& w2,
                                const at::Tensor& w13_scale, const at::Tensor& w2_scale,
                                const at::Tensor& topk_weights, const at::Tensor& topk_ids,
                                const std::optional<at::Tensor>& w13_bias,
                                const std::optional<at::Tensor>& w2_bias,
                                const std::optional<at::Tensor>& expert_map,
                                const std::string& activation, bool apply_router_weight_on_input,
                                const std::string& act_quant, double swiglu_alpha,
                                double swiglu_limit) {
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  FusedMoeOut(x, w13, w2, w13_scale, w2_scale, topk_weights, topk_ids, w13_bias, w2_bias,
              expert_map, activation, apply_router_weight_on_input, act_quant, swiglu_alpha,
              swiglu_limit, out);
  return out;
}

}  // namespace int8_moe
