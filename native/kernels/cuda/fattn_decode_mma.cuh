#pragma once
// Tensor-core split-KV decode (fattn_decode_mma_kernel.cuh): the same job and the same
// partials as fattn_decode, with the kv head's rows as the M of mma.sync (f16 Q and P, f32
// accumulators). f16 caches, head dim 64 or 128. fattn_run uses it for f16 decode since an
// H200 run checked it (24/24 cases, worst rel_l2 2.2e-4) and timed it faster than the FFMA
// decode at every depth measured (bench/gpu: fattn_bench --decode-mma).

#include "fattn_decode.cuh"

namespace llamafuse::cuda {

bool fattn_decode_mma_supported(const kernel_args & p);

// 16 rows per block (row_groups = ceil(G * n_tokens / 16)), 64-key tiles.
decode_plan fattn_decode_mma_make_plan(const kernel_args & p, int n_sm);

// Scratch as fattn_decode_plan_scratch_bytes(fattn_decode_mma_make_plan(p, n_sm), p.D).
void fattn_decode_mma(const kernel_args & p, void * scratch, size_t scratch_bytes, int n_sm, cudaStream_t stream);

} // namespace llamafuse::cuda
