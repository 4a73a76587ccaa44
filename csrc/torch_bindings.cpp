// Every schema of the int8_moe namespace. Kernels register per device in csrc/cpu/*.cpp and
// csrc/cuda/*.cu; fake (meta) kernels live in python/int8_moe/ops.py.
#include <torch/library.h>

TORCH_LIBRARY(int8_moe, m) {
  // Per-row symmetric int8 quantization of w [..., N, K] over K: (q int8 [..., N, K], scale fp32 [..., N]).
  m.def("quantize_rows(Tensor w, Tensor? amax=None, *, bool compat=False) -> (Tensor q, Tensor scale)");
  // Same, writing into preallocated q and scale (returns nothing, so torch.compile can
  // functionalize it).
  m.def(
      "quantize_rows.out(Tensor w, Tensor? amax=None, *, bool compat=False, Tensor(a!) q, "
      "Tensor(b!) scale) -> ()");
  // Row amax max(|w|) over the last dim: fp32 [..., N].
  m.def("row_amax(Tensor w) -> Tensor");
  // int8 fused-MoE forward (W8A16 or W8A8): sum over top-k of weight * expert(x).
  m.def(
      "fused_moe(Tensor x, Tensor w13, Tensor w2, Tensor w13_scale, Tensor w2_scale, "
      "Tensor topk_weights, Tensor topk_ids, *, Tensor? w13_bias=None, Tensor? w2_bias=None, "
      "Tensor? expert_map=None, str activation=\"silu\", bool apply_router_weight_on_input=False, "
      "str act_quant=\"none\", float swiglu_alpha=1.702, float swiglu_limit=7.0) -> Tensor");
  // Same, writing into a preallocated out [M, H] that must not alias x (returns nothing).
  m.def(
      "fused_moe.out(Tensor x, Tensor w13, Tensor w2, Tensor w13_scale, Tensor w2_scale, "
      "Tensor topk_weights, Tensor topk_ids, *, Tensor? w13_bias=None, Tensor? w2_bias=None, "
      "Tensor? expert_map=None, str activation=\"silu\", bool apply_router_weight_on_input=False, "
      "str act_quant=\"none\", float swiglu_alpha=1.702, float swiglu_limit=7.0, "
      "Tensor(a!) out) -> ()");
}
