#include "fattn_combine.cuh"
#include "fattn_combine_kernel.cuh"

namespace llamafuse::cuda {

void fattn_combine(const attn_params & p, const float * part_o, const float2 * part_ml,
                   int n_splits, int G, int rows, cudaStream_t stream) {
    LF_CUDA_ASSERT(p.D > 0 && p.D <= 1024 && n_splits >= 1 && rows >= 1);
    LF_CUDA_ASSERT(p.dst != nullptr && part_o != nullptr && part_ml != nullptr);
    const int rows_total = p.n_seq_q * p.n_head_kv * rows;
    fattn_combine_kernel<<<rows_total, p.D, 0, stream>>>(p, part_o, part_ml, n_splits, G, rows);
}

} // namespace llamafuse::cuda
