// Fused CPU attention (llamafuse): the kernels behind GGML_OP_FLASH_ATTN_EXT's hook.
//
// out = softmax(scale·q·kᵀ (soft-capped) + slope·mask (+ sink)) · v, per query row, with every
// query head of a GQA group served from one read of each K/V row and f32 accumulation.
// The kernels know nothing of ggml: they take the one op description, attn_op (../attn_op.h),
// that ../attn_ggml.cpp makes from a ggml node.
#pragma once

#include "../attn_op.h"

#include <cstddef>
#include <cstdint>

namespace llamafuse {
namespace cpu {

// The CPU backend's supported() rules: the ops these kernels take (types, head dims up to
// 1024 in multiples of 8, whole GQA groups and stream broadcasts). Pure function of the shape.
bool fattn_supported(const attn_op & p);

// Work-buffer bytes fattn_compute needs with nth threads (monotonic in nth).
size_t fattn_work_size(const attn_op & p, int nth);

// Runs on each of nth threads (ith = 0..nth-1) with a shared work buffer of at least
// fattn_work_size(p, nth) bytes; barrier(ctx) must synchronise all nth threads.
using barrier_fn = void (*)(void * ctx);
void fattn_compute(const attn_op & p, int ith, int nth, void * wdata, size_t wsize,
                   barrier_fn barrier, void * barrier_ctx);

// Kernel selection: the AVX2/FMA/F16C path when the CPU has it, else the portable path.
// force_portable makes tests run the portable path on AVX2 machines too. Not part of the
// accept/decline decision, so it may change between graph computations.
void fattn_force_portable(bool on);
bool fattn_using_simd();

} // namespace cpu
} // namespace llamafuse
