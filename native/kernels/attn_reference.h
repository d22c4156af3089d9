// The float64 reference of an attention op: what attn_op (attn_op.h) means, for every C++
// harness (the CPU kernels' fattn_check, the GPU harness and its CPU emulation in bench/gpu,
// the hook translation test). One query row at a time, K/V dequantized exactly, double
// accumulation, two passes (max, then weights). Slow and obviously right.
#pragma once

#include "attn_op.h"

#include <vector>

namespace llamafuse {

// out[((s * n_tokens + t) * n_head + h) * DV + d]: dst's logical order, contiguous. A row
// whose every key is masked is exactly 0 (sink or not), as ggml and our kernels make it.
std::vector<double> attn_reference(const attn_op & op);

// The same, rounded to f32 and written to op.dst with op's dst strides.
void attn_reference_store(const attn_op & op);

} // namespace llamafuse
