#include "fattn_prefill_wgmma.cuh"
#include "fattn_prefill.cuh"
#include "fattn_prefill_wgmma_kernel.cuh"

namespace llamafuse::cuda {

bool fattn_prefill_wgmma_supported(const attn_params & p) {
    return p.type == kv_type::f16 && fattn_prefill_supported(p);
}

template <int D, int VARIANT>
static void launch_wgmma(const attn_params & p, cudaStream_t stream) {
    using C = wg_cfg<D>;
    auto kernel = fattn_prefill_wgmma_kernel<D, VARIANT>;
    raise_smem_limit_once<wg_cfg<D>>(kernel, C::SMEM);
    const dim3 grid((p.n_tokens + C::BQ - 1) / C::BQ, p.n_head, p.n_seq_q);
    kernel<<<grid, C::THREADS, C::SMEM, stream>>>(p);
}

void fattn_prefill_wgmma(const attn_params & p, int variant, cudaStream_t stream) {
    LF_CUDA_ASSERT(fattn_prefill_wgmma_supported(p));
    LF_CUDA_ASSERT(p.dst != nullptr && (variant == 0 || variant == 1));
    if (p.D == 64) {
        variant == 0 ? launch_wgmma<64, 0>(p, stream) : launch_wgmma<64, 1>(p, stream);
    } else {
        variant == 0 ? launch_wgmma<128, 0>(p, stream) : launch_wgmma<128, 1>(p, stream);
    }
}

} // namespace llamafuse::cuda
