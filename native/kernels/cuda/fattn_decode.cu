#include "fattn_decode.cuh"
#include "fattn_decode_kernel.cuh"
#include "fattn_combine.cuh"

#include <algorithm>

namespace llamafuse::cuda {

// ---- host side -------------------------------------------------------------------------------

template <int D, int NQ, kv_type T>
static void launch_decode(const kernel_args & p, const decode_plan & pl, float * part_o, float2 * part_ml,
                          cudaStream_t stream) {
    using C = decode_cfg<D, NQ, T>;
    auto kernel = fattn_decode_kernel<D, NQ, T>;
    raise_smem_limit_once<decode_cfg<D, NQ, T>>(kernel, C::SMEM);
    const dim3 grid(pl.n_splits, p.n_head_kv * pl.row_groups, p.n_seq_q);
    kernel<<<grid, C::THREADS, C::SMEM, stream>>>(p, pl.G, pl.rows, pl.row_groups, pl.chunk, part_o, part_ml);
}

template <int D, kv_type T>
static void launch_decode_nq(const kernel_args & p, const decode_plan & pl, float * o, float2 * ml, cudaStream_t st) {
    switch (pl.nq) {
        case 1: launch_decode<D, 1, T>(p, pl, o, ml, st); break;
        case 2: launch_decode<D, 2, T>(p, pl, o, ml, st); break;
        case 4: launch_decode<D, 4, T>(p, pl, o, ml, st); break;
        default: launch_decode<D, 8, T>(p, pl, o, ml, st); break;
    }
}

void fattn_decode_with_plan(const kernel_args & p, const decode_plan & pl, void * scratch, size_t scratch_bytes,
                            cudaStream_t stream) {
    LF_CUDA_ASSERT(fattn_decode_supported(p));
    LF_CUDA_ASSERT(p.dst != nullptr && scratch != nullptr);
    LF_CUDA_ASSERT(scratch_bytes >= fattn_decode_plan_scratch_bytes(pl, p.D));
    LF_CUDA_ASSERT(pl.chunk % DECODE_TILE == 0 && (int64_t) pl.n_splits * pl.chunk >= p.n_kv);

    float * part_o = static_cast<float *>(scratch);
    float2 * part_ml = reinterpret_cast<float2 *>(static_cast<uint8_t *>(scratch) + fattn_decode_ml_offset(pl, p.D));

    if (p.type == kv_type::f16) {
        if (p.D == 64) launch_decode_nq<64, kv_type::f16>(p, pl, part_o, part_ml, stream);
        else           launch_decode_nq<128, kv_type::f16>(p, pl, part_o, part_ml, stream);
    } else {
        if (p.D == 64) launch_decode_nq<64, kv_type::q8_0>(p, pl, part_o, part_ml, stream);
        else           launch_decode_nq<128, kv_type::q8_0>(p, pl, part_o, part_ml, stream);
    }
    fattn_combine(p, part_o, part_ml, pl.n_splits, pl.G, pl.rows, stream);
}

void fattn_decode(const kernel_args & p, void * scratch, size_t scratch_bytes, int n_sm, cudaStream_t stream) {
    fattn_decode_with_plan(p, fattn_decode_make_plan(p, n_sm), scratch, scratch_bytes, stream);
}

} // namespace llamafuse::cuda
