// A LibTorch program using int8-moe from C++: builds a random MoE layer, quantizes it online,
// runs the fused forward and checks it against a dequantized per-expert loop written with
// plain LibTorch calls. Exits non-zero on any mismatch.
#include <int8_moe/ops.h>
#include <torch/torch.h>

#include <cstdio>
#include <string>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what.c_str());
  failures += ok ? 0 : 1;
}

// out_t = sum_j w_tj * W2_e (silu(g) * u), (g, u) = W13_e x_t, with W = q * scale per row.
torch::Tensor reference_moe(const torch::Tensor& x, const torch::Tensor& w13, const torch::Tensor& w2,
                            const torch::Tensor& topk_w, const torch::Tensor& topk_ids) {
  const int64_t I = w2.size(2);
  torch::Tensor out = torch::zeros({x.size(0), x.size(1)}, torch::kFloat64);
  for (int64_t t = 0; t < x.size(0); ++t) {
    for (int64_t j = 0; j < topk_ids.size(1); ++j) {
      const int64_t e = topk_ids[t][j].item<int64_t>();
      const torch::Tensor h = torch::mv(w13[e], x[t]);
      const torch::Tensor a = torch::silu(h.slice(0, 0, I)) * h.slice(0, I, 2 * I);
      out[t] += topk_w[t][j].item<double>() * torch::mv(w2[e], a);
    }
  }
  return out;
}

}  // namespace

int main() {
  torch::manual_seed(0);
  const int64_t E = 6, H = 96, I = 80, M = 33, k = 2;
  const torch::Tensor w13 = torch::randn({E, 2 * I, H}) / std::sqrt(double(H));
  const torch::Tensor w2 = torch::randn({E, H, I}) / std::sqrt(double(I));

  // Online quantization, checked against its definition.
  auto [q13, s13] = int8_moe::quantize_rows(w13);
  auto [q2, s2] = int8_moe::quantize_rows(w2);
  expect(q13.scalar_type() == torch::kChar && s13.sizes() == torch::IntArrayRef({E, 2 * I}),
         "quantize_rows: int8 q and fp32 [E, 2I] scales");
  expect(torch::equal(s13, w13.abs().amax(-1) / 127), "quantize_rows: scale = amax / 127");
  expect(torch::equal(q13, torch::round(w13 / s13.unsqueeze(-1)).to(torch::kChar)),
         "quantize_rows: q = round(w / scale)");
  expect(torch::equal(int8_moe::row_amax(w2), w2.abs().amax(-1)), "row_amax");

  // Forward against the dequantized loop.
  const torch::Tensor x = torch::randn({M, H});
  const torch::Tensor logits = torch::randn({M, E});
  auto [topk_w, topk_ids] = torch::topk(torch::softmax(logits, -1), k, -1);
  topk_w = (topk_w / topk_w.sum(-1, true)).contiguous();
  const torch::Tensor ids32 = topk_ids.to(torch::kInt).contiguous();
  const torch::Tensor out = int8_moe::fused_moe(x, q13, q2, s13, s2, topk_w, ids32);
  const torch::Tensor w13_deq = (q13.to(torch::kFloat64) * s13.to(torch::kFloat64).unsqueeze(-1));
  const torch::Tensor w2_deq = (q2.to(torch::kFloat64) * s2.to(torch::kFloat64).unsqueeze(-1));
  const torch::Tensor ref = reference_moe(x.to(torch::kFloat64), w13_deq, w2_deq,
                                          topk_w.to(torch::kFloat64), topk_ids);
  const double rel = ((out.to(torch::kFloat64) - ref).norm() / ref.norm()).item<double>();
  std::printf("      fused_moe relative error vs the LibTorch loop: %.3e\n", rel);
  expect(rel < 1e-4, "fused_moe (fp32 activations) matches the dequantized loop");

  const torch::Tensor out_bf16 =
      int8_moe::fused_moe(x.to(torch::kBFloat16), q13, q2, s13, s2, topk_w, ids32);
  const double rel16 =
      ((out_bf16.to(torch::kFloat64) - ref).norm() / ref.norm()).item<double>();
  expect(rel16 < 1e-2, "fused_moe (bf16 activations) within 1e-2");

  int8_moe::FusedMoeOptions opts;
  opts.activation = "gelu";
  torch::Tensor out2 = torch::full({M, H}, std::nan(""));
  int8_moe::fused_moe_out(x, q13, q2, s13, s2, topk_w, ids32, out2, opts);
  expect(torch::isfinite(out2).all().item<bool>() && !torch::allclose(out2, out),
         "fused_moe_out writes every element, options reach the op");

  // Errors come back as c10::Error naming the argument.
  try {
    int8_moe::fused_moe(x, w13, q2, s13, s2, topk_w, ids32);
    expect(false, "a float w13 is rejected");
  } catch (const c10::Error& e) {
    expect(std::string(e.what()).find("w13 must be Char") != std::string::npos,
           "a float w13 is rejected with a message naming w13");
  }

  std::printf("moe_example: %d failed\n", failures);
  return failures == 0 ? 0 : 1;
}
