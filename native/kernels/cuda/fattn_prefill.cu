#include "fattn_prefill.cuh"
#include "fattn_prefill_kernel.cuh"

namespace llamafuse::cuda {

// ---- host side -------------------------------------------------------------------------------

bool fattn_prefill_supported(const attn_params & p) {
    if (p.D != 64 && p.D != 128) return false;
    if (p.type != kv_type::f16 && p.type != kv_type::q8_0) return false;
    if (p.n_head <= 0 || p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0) return false;
    if (p.n_seq_kv <= 0 || p.n_seq_q % p.n_seq_kv != 0) return false;
    if (p.n_kv <= 0 || p.n_tokens <= 0) return false;
    const int64_t qa = 16;
    if (reinterpret_cast<uintptr_t>(p.q) % qa || p.q_nb1 % qa || p.q_nb2 % qa || p.q_nb3 % qa) return false;
    const int64_t ka = p.type == kv_type::f16 ? 16 : 4;
    for (const int64_t nb : {p.k_nb1, p.k_nb2, p.k_nb3, p.v_nb1, p.v_nb2, p.v_nb3}) {
        if (nb % ka) return false;
    }
    if (reinterpret_cast<uintptr_t>(p.k) % ka || reinterpret_cast<uintptr_t>(p.v) % ka) return false;
    if (p.mask && (p.mask_nb1 % 2 || p.mask_nb3 % 2 || p.n_seq_mask <= 0)) return false;
    return true;
}

template <int D, kv_type T>
static void launch_prefill(const attn_params & p, cudaStream_t stream) {
    using C = prefill_cfg<D, T>;
    auto kernel = fattn_prefill_kernel<D, T>;
    raise_smem_limit_once<prefill_cfg<D, T>>(kernel, C::SMEM);
    const dim3 grid((p.n_tokens + C::BQ - 1) / C::BQ, p.n_head, p.n_seq_q);
    kernel<<<grid, C::THREADS, C::SMEM, stream>>>(p);
}

void fattn_prefill(const attn_params & p, cudaStream_t stream) {
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
