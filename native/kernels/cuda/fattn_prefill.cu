#include "fattn_prefill.cuh"
#include "fattn_prefill_kernel.cuh"

namespace llamafuse::cuda {

// ---- host side -------------------------------------------------------------------------------

bool fattn_prefill_supported(const kernel_args & p) { return fattn_layout_supported(p); }

template <int D, kv_type T>
static void launch_prefill(const kernel_args & p, cudaStream_t stream) {
    using C = prefill_cfg<D, T>;
    auto kernel = fattn_prefill_kernel<D, T>;
    raise_smem_limit_once<prefill_cfg<D, T>>(kernel, C::SMEM);
    const dim3 grid((p.n_tokens + C::BQ - 1) / C::BQ, p.n_head, p.n_seq_q);
    kernel<<<grid, C::THREADS, C::SMEM, stream>>>(p);
}

void fattn_prefill(const kernel_args & p, cudaStream_t stream) {
    LF_CUDA_ASSERT(fattn_prefill_supported(p));
    LF_CUDA_ASSERT(p.dst != nullptr);
    if (p.type == kv_type::f16) {
        if (p.D == 64) launch_prefill<64, kv_type::f16>(p, stream);
        else           launch_prefill<128, kv_type::f16>(p, stream);
    } else {
        if (p.D == 64) launch_prefill<64, kv_type::q8_0>(p, stream);
        else           launch_prefill<128, kv_type::q8_0>(p, stream);
    }
}

} // namespace llamafuse::cuda
