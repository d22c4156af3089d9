#include "fattn_prefill_wgmma.cuh"
#include "fattn_prefill.cuh"
#include "fattn_prefill_wgmma_kernel.cuh"

namespace llamafuse::cuda {

bool fattn_prefill_wgmma_supported(const kernel_args & p) {
    return p.type == kv_type::f16 && fattn_prefill_supported(p);
}

template <int D, int VARIANT, int WG>
static void launch_wgmma(const kernel_args & p, cudaStream_t stream) {
    using C = wg_cfg<D, WG>;
    auto kernel = fattn_prefill_wgmma_kernel<D, VARIANT, WG>;
    raise_smem_limit_once<C>(kernel, C::SMEM);
    const dim3 grid((p.n_tokens + C::BQ - 1) / C::BQ, p.n_head, p.n_seq_q);
    kernel<<<grid, C::THREADS, C::SMEM, stream>>>(p);
}

template <int D, int WG> static void launch_wgmma_v(const kernel_args & p, int variant, cudaStream_t stream) {
    if (variant == 0) launch_wgmma<D, 0, WG>(p, stream);
    else              launch_wgmma<D, 1, WG>(p, stream);
}

void fattn_prefill_wgmma(const kernel_args & p, int variant, cudaStream_t stream, int warpgroups) {
    LF_CUDA_ASSERT(fattn_prefill_wgmma_supported(p));
    LF_CUDA_ASSERT(p.dst != nullptr && (variant == 0 || variant == 1) && (warpgroups == 1 || warpgroups == 2));
    if (p.D == 64) {
        warpgroups == 1 ? launch_wgmma_v<64, 1>(p, variant, stream) : launch_wgmma_v<64, 2>(p, variant, stream);
    } else {
        warpgroups == 1 ? launch_wgmma_v<128, 1>(p, variant, stream) : launch_wgmma_v<128, 2>(p, variant, stream);
    }
}

} // namespace llamafuse::cuda
