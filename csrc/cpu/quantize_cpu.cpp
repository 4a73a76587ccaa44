// CPU kernels for row_amax and quantize_rows: one pass per row, rows spread over threads.
#include <ATen/Parallel.h>
#include <torch/all.h>

#include <atomic>
#include <cmath>
#include <limits>

#include "../common/checks.h"
#include "../common/functional.h"
#include "../common/moe_args.h"
#include "../common/moe_math.h"

namespace int8_moe {
namespace {

constexpr int64_t kNoRow = std::numeric_limits<int64_t>::max();

void record_min(std::atomic<int64_t>& slot, int64_t row) {
  int64_t cur = slot.load();
  while (row < cur && !slot.compare_exchange_weak(cur, row)) {
  }
}

template <typename T>
float row_abs_max(const T* w, int64_t K) {
  float m = 0.0f;
  for (int64_t i = 0; i < K; ++i) {
    const float a = std::fabs(static_cast<float>(w[i]));
    if (a > m || std::isnan(a)) m = a;  // NaN wins and stays
  }
  return m;
}

template <typename T>
void row_amax_kernel(const T* w, float* amax, int64_t rows, int64_t K) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) amax[r] = row_abs_max(w + r * K, K);
  });
}

// Rounds to T and back: reproduces an operation evaluated in the weight dtype.
template <typename T>
float in_dtype(float v) {
  return static_cast<float>(static_cast<T>(v));
}

// compat: the original per-expert PyTorch arithmetic, every step rounded to the weight dtype.
template <typename T>
void quantize_rows_kernel(const T* w, const float* amax_override, int8_t* q, float* scale,
                          int64_t rows, int64_t K, bool compat, std::atomic<int64_t>& bad_weight_row,
                          std::atomic<int64_t>& bad_amax_row) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* wr = w + r * K;
      int8_t* qr = q + r * K;
      bool finite = true;
      for (int64_t i = 0; i < K; ++i) finite &= std::isfinite(static_cast<float>(wr[i]));
      if (!finite) {
        record_min(bad_weight_row, r);
        continue;
      }
      float amax = amax_override ? amax_override[r] : row_abs_max(wr, K);
      if (!(amax >= 0.0f) || !std::isfinite(amax)) {
        record_min(bad_amax_row, r);
        continue;
      }
      if (compat) {
        const float s = in_dtype<T>(in_dtype<T>(amax) / kInt8Max);
        scale[r] = s;
        for (int64_t i = 0; i < K; ++i) {
          if (s == 0.0f) {
            qr[i] = 0;
            continue;
          }
          float v = rintf(in_dtype<T>(static_cast<float>(wr[i]) / s));
          qr[i] = static_cast<int8_t>(fminf(fmaxf(v, -kInt8Max), kInt8Max));
        }
      } else {
        const float s = amax / kInt8Max;
        scale[r] = s;
        for (int64_t i = 0; i < K; ++i) qr[i] = quantize_weight_value(static_cast<float>(wr[i]), s);
      }
    }
  });
}

at::Tensor row_amax_cpu(const at::Tensor& w) {
  check_quantize_input("int8_moe::row_amax", w);
  const int64_t K = w.size(-1);
  at::Tensor amax = at::empty(w.sizes().slice(0, w.dim() - 1), w.options().dtype(at::kFloat));
  const int64_t rows = amax.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, w.scalar_type(), "row_amax_cpu", [&] {
    row_amax_kernel(w.const_data_ptr<scalar_t>(), amax.mutable_data_ptr<float>(), rows, K);
  });
  return amax;
}

void quantize_rows_out_cpu(const at::Tensor& w, const std::optional<at::Tensor>& amax, bool compat,
                           at::Tensor& q, at::Tensor& scale) {
  check_quantize_input("int8_moe::quantize_rows", w);
  if (amax.has_value()) check_amax_override(*amax, w);
  check_quantize_outputs(q, scale, w);
  const int64_t K = w.size(-1);
  const int64_t rows = scale.numel();
  std::atomic<int64_t> bad_weight_row{kNoRow}, bad_amax_row{kNoRow};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, w.scalar_type(), "quantize_rows_cpu", [&] {
    quantize_rows_kernel(w.const_data_ptr<scalar_t>(),
                         amax.has_value() ? amax->const_data_ptr<float>() : nullptr,
                         q.mutable_data_ptr<int8_t>(), scale.mutable_data_ptr<float>(), rows, K,
                         compat, bad_weight_row, bad_amax_row);
  });
  auto found = [](const std::atomic<int64_t>& slot) {
    return slot.load() == kNoRow ? std::nullopt : std::optional<int64_t>(slot.load());
  };
  raise_quantize_errors(found(bad_weight_row), found(bad_amax_row));
}

}  // namespace
}  // namespace int8_moe

TORCH_LIBRARY_IMPL(int8_moe, CPU, m) {
  m.impl("row_amax", &int8_moe::row_amax_cpu);
  m.impl("quantize_rows", &int8_moe::quantize_rows_functional<&int8_moe::quantize_rows_out_cpu>);
  m.impl("quantize_rows.out", &int8_moe::quantize_rows_out_cpu);
}
