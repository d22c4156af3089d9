#pragma once
// The split-KV combine kernel (see fattn_combine.cuh), in a header so that bench/gpu/emu
// can run the same code on the CPU.
#include "fattn_common.cuh"

namespace llamafuse::cuda {

// One block per output row, one thread per value of the head dim.
// No __restrict__ on the partials: with programmatic dependent launch the split kernel may
// still be writing them when this one starts, and restrict would let the compiler hoist
// their (non-coherent) loads above griddep_wait() (the same reason ggml-cuda drops
// __restrict__ under PDL).
__global__ void fattn_combine_kernel(const kernel_args p, const float * part_o,
                                     const float2 * part_ml, int n_splits, int G, int rows) {
    const int row_id = blockIdx.x;
    const int rows_total = gridDim.x;
    const int d = threadIdx.x;

    const int per_seq = p.n_head_kv * rows;
    const int seq = row_id / per_seq;
    const int kvh = (row_id % per_seq) / rows;
    const int r = row_id % rows;
    const int t = r / G;
    const int h = kvh * G + r % G;

    griddep_wait();   // launched as a dependent of the split kernel: its partials must be complete

    float M = -INFINITY;
    for (int s = 0; s < n_splits; ++s) {
        M = fmaxf(M, part_ml[(size_t) s * rows_total + row_id].x);
    }
    const float sink = p.sinks ? p.sinks[h] * LOG2E : -INFINITY;
    M = fmaxf(M, sink);

    float L = 0.0f;
    float O = 0.0f;
    for (int s = 0; s < n_splits; ++s) {
        const float2 ml = part_ml[(size_t) s * rows_total + row_id];
        const float w = exp2_diff(ml.x, M);
        L += ml.y * w;
        O += part_o[((size_t) s * rows_total + row_id) * p.D + d] * w;
    }
    L += exp2_diff(sink, M);

    // dst [D, n_head, n_tokens, n_seq], contiguous
    p.dst[(((size_t) seq * p.n_tokens + t) * p.n_head + h) * p.D + d] = L > 0.0f ? O / L : 0.0f;
}

} // namespace llamafuse::cuda
