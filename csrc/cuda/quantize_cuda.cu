// CUDA bindings of row_amax and quantize_rows: argument checks, allocation, launch on the
// current stream of the input's device.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/all.h>

#include "../common/functional.h"
#include "../common/moe_args.h"
#include "dispatch.cuh"
#include "quantize_kernels.cuh"

namespace int8_moe {
namespace {

at::Tensor row_amax_cuda(const at::Tensor& w) {
  check_quantize_input("int8_moe::row_amax", w);
  const c10::cuda::CUDAGuard guard(w.device());
  at::Tensor amax = at::empty(w.sizes().slice(0, w.dim() - 1), w.options().dtype(at::kFloat));
  const int64_t rows = amax.numel(), K = w.size(-1);
  if (rows == 0) return amax;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  INT8_MOE_DISPATCH_FLOAT(w.scalar_type(), "int8_moe::row_amax", T, [&] {
    launch_row_amax(reinterpret_cast<const T*>(w.const_data_ptr()), amax.mutable_data_ptr<float>(),
                    rows, K, stream);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return amax;
}

void quantize_rows_out_cuda(const at::Tensor& w, const std::optional<at::Tensor>& amax,
                            bool compat, at::Tensor& q, at::Tensor& scale) {
  check_quantize_input("int8_moe::quantize_rows", w);
  if (amax.has_value()) check_amax_override(*amax, w);
  check_quantize_outputs(q, scale, w);
  const c10::cuda::CUDAGuard guard(w.device());
  const int64_t rows = scale.numel(), K = w.size(-1);
  if (rows == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  // Error slots, read back below: quantization runs at load time, so this one host sync is
  // fine (the forward never syncs). Set by a memset (kNoBadRow is all ones) and read through
  // pinned memory: no fill kernel and no pageable copy in the gap between two tensors.
  static_assert(kNoBadRow == ~0ull, "the memset below writes all-ones");
  at::Tensor bad = at::empty({2}, w.options().dtype(at::kLong));
  auto* bad_ptr = reinterpret_cast<unsigned long long*>(bad.mutable_data_ptr<int64_t>());
  C10_CUDA_CHECK(cudaMemsetAsync(bad_ptr, 0xFF, 2 * sizeof(unsigned long long), stream));
  const float* amax_ptr = amax.has_value() ? amax->const_data_ptr<float>() : nullptr;
  INT8_MOE_DISPATCH_FLOAT(w.scalar_type(), "int8_moe::quantize_rows", T, [&] {
    const T* w_ptr = reinterpret_cast<const T*>(w.const_data_ptr());
    int8_t* q_ptr = q.mutable_data_ptr<int8_t>();
    float* s_ptr = scale.mutable_data_ptr<float>();
    if (compat)
      launch_quantize_rows<T, true>(w_ptr, amax_ptr, q_ptr, s_ptr, rows, K, bad_ptr, stream);
    else
      launch_quantize_rows<T, false>(w_ptr, amax_ptr, q_ptr, s_ptr, rows, K, bad_ptr, stream);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor bad_host = at::empty({2}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  C10_CUDA_CHECK(cudaMemcpyAsync(bad_host.mutable_data_ptr<int64_t>(), bad_ptr,
                                 2 * sizeof(int64_t), cudaMemcpyDeviceToHost, stream));
  C10_CUDA_CHECK(cudaStreamSynchronize(stream));
  auto found = [&](int i) {
    const int64_t row = bad_host.const_data_ptr<int64_t>()[i];
    return row == static_cast<int64_t>(kNoBadRow) ? std::nullopt : std::optional<int64_t>(row);
  };
  raise_quantize_errors(found(0), found(1));
}

}  // namespace
}  // namespace int8_moe

TORCH_LIBRARY_IMPL(int8_moe, CUDA, m) {
  m.impl("row_amax", &int8_moe::row_amax_cuda);
  m.impl("quantize_rows", &int8_moe::quantize_rows_functional<&int8_moe::quantize_rows_out_cuda>);
  m.impl("quantize_rows.out", &int8_moe::quantize_rows_out_cuda);
}
