// Maps a torch floating dtype to the CUDA element type the kernels are written for.
#pragma once

#include <torch/all.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define INT8_MOE_DISPATCH_FLOAT(dtype, name, T, ...)                                   \
  [&] {                                                                                \
    switch (dtype) {                                                                   \
      case at::kBFloat16: {                                                            \
        using T = __nv_bfloat16;                                                       \
        return __VA_ARGS__();                                                          \
      }                                                                                \
      case at::kHalf: {                                                                \
        using T = __half;                                                              \
        return __VA_ARGS__();                                                          \
      }                                                                                \
      case at::kFloat: {                                                               \
        using T = float;                                                               \
        return __VA_ARGS__();                                                          \
      }                                                                                \
      default:                                                                         \
        TORCH_CHECK(false, name ": unsupported dtype ", dtype);                        \
    }                                                                                  \
  }()
