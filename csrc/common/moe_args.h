// Validation of fused_moe's arguments, shared by the CPU and CUDA bindings so both backends
// accept and reject exactly the same inputs.
#pragma once

#include <torch/all.h>

#include <optional>
#include <string>

#include "moe_math.h"

namespace int8_moe {

struct MoeProblem {
  int64_t M = 0;          // tokens
  int64_t H = 0;          // hidden size
  int64_t I = 0;          // intermediate size per expert
  int64_t E = 0;          // local experts
  int64_t topk = 0;       // experts per token
  int64_t E_global = 0;   // valid id range: expert_map's length, or E without a map
  Activation act = Activation::kSilu;
  bool per_token = false;         // act_quant == "per_token" (W8A8)
  bool weight_on_input = false;   // apply_router_weight_on_input
  float swiglu_alpha = 1.702f;
  float swiglu_limit = 7.0f;
};

Activation parse_activation(const std::string& name);
bool parse_act_quant(const std::string& name);

// Checks every argument (dtype, rank, shape, device, contiguity, aliasing) and returns the sizes.
MoeProblem check_fused_moe_args(const at::Tensor& x, const at::Tensor& w13, const at::Tensor& w2,
                                const at::Tensor& w13_scale, const at::Tensor& w2_scale,
                                const at::Tensor& topk_weights, const at::Tensor& topk_ids,
                                const std::optional<at::Tensor>& w13_bias,
                                const std::optional<at::Tensor>& w2_bias,
                                const std::optional<at::Tensor>& expert_map,
                                const std::string& activation, bool apply_router_weight_on_input,
                                const std::string& act_quant, double swiglu_alpha,
                                double swiglu_limit);

// Checks an `out` tensor for fused_moe: shape [M, H], x's dtype and device, contiguous, and
// sharing no memory with x.
void check_fused_moe_out(const at::Tensor& out, const at::Tensor& x);

// Checks for quantize_rows / row_amax: w is [..., N, K], floating, contiguous; amax (if any) is
// fp32 with shape [..., N] on w's device.
void check_quantize_input(const char* op, const at::Tensor& w);
void check_amax_override(const at::Tensor& amax, const at::Tensor& w);
void check_quantize_outputs(const at::Tensor& q, const at::Tensor& scale, const at::Tensor& w);

// Raises the quantization errors a kernel found: the first row with a non-finite weight, the
// first row whose amax override is negative or non-finite (rows over w.shape[:-1] flattened).
void raise_quantize_errors(std::optional<int64_t> bad_weight_row,
                           std::optional<int64_t> bad_amax_row);

}  // namespace int8_moe
