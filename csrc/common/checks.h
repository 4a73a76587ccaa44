// Argument checks shared by every binding. Each macro names the argument it checks, so a
// user sees "int8_moe::fused_moe: w13 must be int8, got Float" and not a bare assertion.
#pragma once

#include <torch/all.h>

#include <string>
#include <vector>

#define INT8_MOE_CHECK_DTYPE(op, x, dt)                                                        \
  TORCH_CHECK((x).scalar_type() == (dt), op, ": " #x " must be ", c10::toString(dt), ", got ", \
              (x).scalar_type())

#define INT8_MOE_CHECK_DIM(op, x, d) \
  TORCH_CHECK((x).dim() == (d), op, ": " #x " must be ", d, "-D, got shape ", (x).sizes())

#define INT8_MOE_CHECK_CONTIGUOUS(op, x) \
  TORCH_CHECK((x).is_contiguous(), op, ": " #x " must be contiguous (strides ", (x).strides(), ")")

#define INT8_MOE_CHECK_SAME_DEVICE(op, x, ref)                                         \
  TORCH_CHECK((x).device() == (ref).device(), op, ": " #x " is on ", (x).device(), \
              " but " #ref " is on ", (ref).device())

// Shape equality with the expected shape spelled out in the message.
#define INT8_MOE_CHECK_SHAPE(op, x, ...)                                                 \
  do {                                                                                   \
    const std::vector<int64_t> expected_{__VA_ARGS__};                                   \
    TORCH_CHECK((x).sizes() == c10::IntArrayRef(expected_), op, ": " #x " must have shape ", \
                c10::IntArrayRef(expected_), ", got ", (x).sizes());                     \
  } while (0)
