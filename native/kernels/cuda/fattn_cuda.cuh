#pragma once
// The attention op as a whole: picks the decode (split-KV) or the prefill (tensor-core)
// kernel for a shape, sizes its scratch, launches it. Every choice here is a pure function
// of the shape and the multiprocessor count, so the hook's accept, its scratch request and
// its launch always agree.

#include "fattn_common.cuh"

#include <cstddef>

namespace llamafuse::cuda {

enum class fattn_path { none, decode, decode_mma, prefill };

// decode while G * n_tokens rows fit one or a few blocks per kv head (f16 caches on the
// tensor-core decode, q8_0 on the FFMA one), prefill beyond
fattn_path fattn_choose(const kernel_args & p);

// The CUDA backend's supported() rules for an op: it fits the kernels' argument block
// (kernel_args_of) and a kernel path exists for its shape.
bool fattn_supported(const attn_op & op);

size_t fattn_scratch_bytes(const kernel_args & p, int n_sm);

// Launches on `stream` only (graph-capture safe). Asserts that fattn_choose(p) != none.
void fattn_run(const kernel_args & p, void * scratch, size_t scratch_bytes, int n_sm, cudaStream_t stream);

} // namespace llamafuse::cuda
