// The one ggml-node translator: GGML_OP_FLASH_ATTN_EXT -> attn_op. Shared by the CPU hook
// (cpu/fattn_hook.cpp) and the CUDA hook (cuda/fattn_cuda_hook.cu); each backend then applies
// its own supported() rules beside its kernels (cpu::fattn_supported, cuda::fattn_supported).
// A pure function of the node (shapes, types, strides, data pointers, op params), so a hook's
// accept, its scratch sizing and its launch always agree.
#pragma once

#include "attn_op.h"

struct ggml_tensor;

namespace llamafuse {

// Fills `op` and returns true when the node is an attention op that attn_op can describe:
// f32 q and dst, f16 or q8_0 K/V of one type, rows contiguous, shapes consistent with one
// another, an f16 mask covering every key and token, f32 sinks for every head, f32 (or
// default) precision. Whether any backend's kernels take it is the backend's question.
bool attn_op_from_node(const ggml_tensor * dst, attn_op & op);

} // namespace llamafuse
