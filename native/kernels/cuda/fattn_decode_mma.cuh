#pragma once
// EXPERIMENTAL tensor-core split-KV decode (fattn_decode_mma_kernel.cuh): the same job and
// the same partials as fattn_decode, with the kv head's rows as the M of mma.sync. f16
// caches, head dim 64 or 128. Not used by fattn_run until a GPU run has checked and timed
// it (bench/gpu: fattn_bench --decode-mma).

#include "fattn_decode.cuh"

namespace llamafuse::cuda {

bool fattn_decode_mma_supported(const attn_params & p);

// 16 rows per block (row_groups = ceil(G * n_tokens / 16)), 64-key tiles.
decode_plan fattn_decode_mma_make_plan(const attn_params & p, int n_sm);

// Scratch as fattn_decode_plan_scratch_bytes(fattn_decode_mma_make_plan(p, n_sm), p.D).
void fattn_decode_mma(const attn_params & p, void * scratch, size_t scratch_bytes, int n_sm, cudaStream_t stream);

} // namespace llamafuse::cuda
