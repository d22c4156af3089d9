#include "fattn_decode_mma.cuh"
#include "fattn_combine.cuh"
#include "fattn_decode_mma_kernel.cuh"

namespace llamafuse::cuda {

template <int D>
static void launch_decode_mma(const kernel_args & p, const decode_plan & pl, float * o, float2 * ml, cudaStream_t stream) {
    using C = decode_mma_cfg<D>;
    auto kernel = fattn_decode_mma_kernel<D>;
    raise_smem_limit_once<C>(kernel, C::SMEM);
    const dim3 grid(pl.n_splits, p.n_head_kv * pl.row_groups, p.n_seq_q);
    kernel<<<grid, C::THREADS, C::SMEM, stream>>>(p, pl.G, pl.rows, pl.row_groups, pl.chunk, o, ml);
}

void fattn_decode_mma(const kernel_args & p, void * scratch, size_t scratch_bytes, int n_sm, cudaStream_t stream) {
    LF_CUDA_ASSERT(fattn_decode_mma_supported(p));
    LF_CUDA_ASSERT(p.dst != nullptr && scratch != nullptr);
    const decode_plan pl = fattn_decode_mma_make_plan(p, n_sm);
    LF_CUDA_ASSERT(scratch_bytes >= fattn_decode_plan_scratch_bytes(pl, p.D));
    float * o = static_cast<float *>(scratch);
    float2 * ml = reinterpret_cast<float2 *>(static_cast<uint8_t *>(scratch) + fattn_decode_ml_offset(pl, p.D));
    if (p.D == 64) launch_decode_mma<64>(p, pl, o, ml, stream);
    else           launch_decode_mma<128>(p, pl, o, ml, stream);
    fattn_combine(p, o, ml, pl.n_splits, pl.G, pl.rows, stream);
}

} // namespace llamafuse::cuda
