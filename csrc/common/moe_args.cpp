#include "moe_args.h"

#include <ATen/MemoryOverlap.h>

#include "checks.h"

namespace int8_moe {

namespace {
constexpr const char* kOp = "int8_moe::fused_moe";

bool is_activation_dtype(at::ScalarType t) {
  return t == at::kBFloat16 || t == at::kHalf || t == at::kFloat;
}
}  // namespace

Activation parse_activation(const std::string& name) {
  if (name == "silu") return Activation::kSilu;
  if (name == "gelu") return Activation::kGelu;
  if (name == "gelu_tanh") return Activation::kGeluTanh;
  if (name == "swigluoai") return Activation::kSwigluOai;
  TORCH_CHECK(false, kOp, ": activation must be one of silu, gelu, gelu_tanh, swigluoai; got '",
              name, "'");
}

bool parse_act_quant(const std::string& name) {
  if (name == "none") return false;
  if (name == "per_token") return true;
  TORCH_CHECK(false, kOp, ": act_quant must be 'none' or 'per_token'; got '", name, "'");
}

MoeProblem check_fused_moe_args(const at::Tensor& x, const at::Tensor& w13, const at::Tensor& w2,
                                const at::Tensor& w13_scale, const at::Tensor& w2_scale,
                                const at::Tensor& topk_weights, const at::Tensor& topk_ids,
                                const std::optional<at::Tensor>& w13_bias_opt,
                                const std::optional<at::Tensor>& w2_bias_opt,
                                const std::optional<at::Tensor>& expert_map_opt,
                                const std::string& activation, bool apply_router_weight_on_input,
                                const std::string& act_quant, double swiglu_alpha,
                                double swiglu_limit) {
  MoeProblem p;
  p.act = parse_activation(activation);
  p.per_token = parse_act_quant(act_quant);
  p.weight_on_input = apply_router_weight_on_input;
  p.swiglu_alpha = static_cast<float>(swiglu_alpha);
  p.swiglu_limit = static_cast<float>(swiglu_limit);

  TORCH_CHECK(is_activation_dtype(x.scalar_type()), kOp,
              ": x must be bfloat16, float16 or float32, got ", x.scalar_type());
  INT8_MOE_CHECK_DIM(kOp, x, 2);
  INT8_MOE_CHECK_DIM(kOp, w13, 3);
  INT8_MOE_CHECK_DIM(kOp, w2, 3);
  INT8_MOE_CHECK_DTYPE(kOp, w13, at::kChar);
  INT8_MOE_CHECK_DTYPE(kOp, w2, at::kChar);
  INT8_MOE_CHECK_DTYPE(kOp, w13_scale, at::kFloat);
  INT8_MOE_CHECK_DTYPE(kOp, w2_scale, at::kFloat);
  INT8_MOE_CHECK_DTYPE(kOp, topk_weights, at::kFloat);
  TORCH_CHECK(topk_ids.scalar_type() == at::kInt || topk_ids.scalar_type() == at::kLong, kOp,
              ": topk_ids must be int32 or int64, got ", topk_ids.scalar_type());

  p.M = x.size(0);
  p.H = x.size(1);
  p.E = w13.size(0);
  TORCH_CHECK(w13.size(1) % 2 == 0, kOp, ": w13 must have shape [E, 2*I, H] (even dim 1), got ",
              w13.sizes());
  p.I = w13.size(1) / 2;
  TORCH_CHECK(w13.size(2) == p.H, kOp, ": w13 must have shape [E, 2*I, H] with H = x.size(1) = ",
              p.H, ", got ", w13.sizes());
  INT8_MOE_CHECK_SHAPE(kOp, w2, p.E, p.H, p.I);
  INT8_MOE_CHECK_SHAPE(kOp, w13_scale, p.E, 2 * p.I);
  INT8_MOE_CHECK_SHAPE(kOp, w2_scale, p.E, p.H);
  INT8_MOE_CHECK_DIM(kOp, topk_ids, 2);
  TORCH_CHECK(topk_ids.size(0) == p.M, kOp, ": topk_ids must have shape [M, k] with M = x.size(0) = ",
              p.M, ", got ", topk_ids.sizes());
  p.topk = topk_ids.size(1);
  INT8_MOE_CHECK_SHAPE(kOp, topk_weights, p.M, p.topk);
  TORCH_CHECK(!apply_router_weight_on_input || p.topk == 1, kOp,
              ": apply_router_weight_on_input needs top-k = 1, got k = ", p.topk);

  for (const at::Tensor* t : {&w13, &w2, &w13_scale, &w2_scale, &topk_weights, &topk_ids}) {
    TORCH_CHECK(t->device() == x.device(), kOp, ": all tensors must be on x's device (", x.device(),
                "), found one on ", t->device());
  }
  INT8_MOE_CHECK_CONTIGUOUS(kOp, x);
  INT8_MOE_CHECK_CONTIGUOUS(kOp, w13);
  INT8_MOE_CHECK_CONTIGUOUS(kOp, w2);
  INT8_MOE_CHECK_CONTIGUOUS(kOp, w13_scale);
  INT8_MOE_CHECK_CONTIGUOUS(kOp, w2_scale);
  INT8_MOE_CHECK_CONTIGUOUS(kOp, topk_weights);
  INT8_MOE_CHECK_CONTIGUOUS(kOp, topk_ids);

  if (w13_bias_opt.has_value()) {
    const at::Tensor& w13_bias = *w13_bias_opt;
    INT8_MOE_CHECK_SAME_DEVICE(kOp, w13_bias, x);
    TORCH_CHECK(w13_bias.scalar_type() == x.scalar_type(), kOp, ": w13_bias must have x's dtype (",
                x.scalar_type(), "), got ", w13_bias.scalar_type());
    INT8_MOE_CHECK_SHAPE(kOp, w13_bias, p.E, 2 * p.I);
    INT8_MOE_CHECK_CONTIGUOUS(kOp, w13_bias);
  }
  if (w2_bias_opt.has_value()) {
    const at::Tensor& w2_bias = *w2_bias_opt;
    INT8_MOE_CHECK_SAME_DEVICE(kOp, w2_bias, x);
    TORCH_CHECK(w2_bias.scalar_type() == x.scalar_type(), kOp, ": w2_bias must have x's dtype (",
                x.scalar_type(), "), got ", w2_bias.scalar_type());
    INT8_MOE_CHECK_SHAPE(kOp, w2_bias, p.E, p.H);
    INT8_MOE_CHECK_CONTIGUOUS(kOp, w2_bias);
  }
  p.E_global = p.E;
  if (expert_map_opt.has_value()) {
    const at::Tensor& expert_map = *expert_map_opt;
    INT8_MOE_CHECK_SAME_DEVICE(kOp, expert_map, x);
    INT8_MOE_CHECK_DTYPE(kOp, expert_map, at::kInt);
    INT8_MOE_CHECK_DIM(kOp, expert_map, 1);
    INT8_MOE_CHECK_CONTIGUOUS(kOp, expert_map);
    p.E_global = expert_map.size(0);
  }
  // Sizes the kernels index with 32-bit loop counters; offsets stay 64-bit.
  TORCH_CHECK(p.H < (int64_t{1} << 31) && p.I < (int64_t{1} << 30) && p.M * p.topk < (int64_t{1} << 31),
              kOp, ": sizes too large (M*k, H and 2*I must each fit in int32)");
  return p;
}

void check_fused_moe_out(const at::Tensor& out, const at::Tensor& x) {
  INT8_MOE_CHECK_SAME_DEVICE(kOp, out, x);
  TORCH_CHECK(out.scalar_type() == x.scalar_type(), kOp, ": out must have x's dtype (",
              x.scalar_type(), "), got ", out.scalar_type());
  INT8_MOE_CHECK_SHAPE(kOp, out, x.size(0), x.size(1));
  INT8_MOE_CHECK_CONTIGUOUS(kOp, out);
  TORCH_CHECK(at::get_overlap_status(out, x) == at::MemOverlapStatus::No, kOp,
              ": out must not share memory with x");
}

void check_quantize_input(const char* op, const at::Tensor& w) {
  TORCH_CHECK(w.scalar_type() == at::kBFloat16 || w.scalar_type() == at::kHalf ||
                  w.scalar_type() == at::kFloat,
              op, ": w must be bfloat16, float16 or float32, got ", w.scalar_type());
  TORCH_CHECK(w.dim() >= 2, op, ": w must have shape [..., N, K] (at least 2-D), got ", w.sizes());
  TORCH_CHECK(w.is_contiguous(), op, ": w must be contiguous (strides ", w.strides(), ")");
}

void check_amax_override(const at::Tensor& amax, const at::Tensor& w) {
  constexpr const char* op = "int8_moe::quantize_rows";
  INT8_MOE_CHECK_SAME_DEVICE(op, amax, w);
  INT8_MOE_CHECK_DTYPE(op, amax, at::kFloat);
  const auto rows = w.sizes().slice(0, w.dim() - 1);
  TORCH_CHECK(amax.sizes() == rows, op, ": amax must have shape ", rows, " (w.shape[:-1]), got ",
              amax.sizes());
  INT8_MOE_CHECK_CONTIGUOUS(op, amax);
}

void check_quantize_outputs(const at::Tensor& q, const at::Tensor& scale, const at::Tensor& w) {
  constexpr const char* op = "int8_moe::quantize_rows.out";
  INT8_MOE_CHECK_SAME_DEVICE(op, q, w);
  INT8_MOE_CHECK_SAME_DEVICE(op, scale, w);
  INT8_MOE_CHECK_DTYPE(op, q, at::kChar);
  INT8_MOE_CHECK_DTYPE(op, scale, at::kFloat);
  TORCH_CHECK(q.sizes() == w.sizes(), op, ": q must have w's shape ", w.sizes(), ", got ",
              q.sizes());
  const auto rows = w.sizes().slice(0, w.dim() - 1);
  TORCH_CHECK(scale.sizes() == rows, op, ": scale must have shape ", rows, ", got ", scale.sizes());
  INT8_MOE_CHECK_CONTIGUOUS(op, q);
  INT8_MOE_CHECK_CONTIGUOUS(op, scale);
}

void raise_quantize_errors(std::optional<int64_t> bad_weight_row,
                           std::optional<int64_t> bad_amax_row) {
  TORCH_CHECK(!bad_weight_row.has_value(), "int8_moe::quantize_rows: w has a non-finite value in row ",
              *bad_weight_row, " (rows counted over w.shape[:-1] flattened)");
  TORCH_CHECK(!bad_amax_row.has_value(), "int8_moe::quantize_rows: amax[", *bad_amax_row,
              "] (flattened) is negative or non-finite");
}

}  // namespace int8_moe
