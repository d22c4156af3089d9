#pragma once
// ggml's GGML_OP_FLASH_ATTN_EXT node -> attn_params. Host code only; a pure function of
// the node (shapes, types, strides, data pointers, op params), so accept, scratch sizing
// and launch in the hook always agree. Kept apart from the hook so a CPU-only test can
// check the translation against ggml's own CPU kernel (bench/gpu/ggml/params_test.cpp).

#include "fattn_common.cuh"

struct ggml_tensor;

namespace llamafuse::cuda {

// Fills `p` and returns true when the node's operands are ones our kernels take (types,
// head dims, contiguity, broadcasts) and a kernel path exists for the shape.
bool fattn_params_from_node(const ggml_tensor * dst, attn_params & p);

} // namespace llamafuse::cuda
