#include "fattn_cuda.cuh"
#include "fattn_decode.cuh"
#include "fattn_decode_mma.cuh"
#include "fattn_prefill.cuh"

namespace llamafuse::cuda {

fattn_path fattn_choose(const kernel_args & p) {
    // Decode reads each K/V byte once per kv head for all its rows; once the rows outgrow a
    // few 8-row blocks the tensor-core kernel does the same work at matrix speed.
    if (p.n_tokens <= 4 && fattn_decode_supported(p)) {
        // f16 caches: the mma.sync decode, measured faster than the FFMA one on an H200
        // (Llama-3-8B shape, 1 token: 15.6 / 28.3 / 45.0 us against 16.3 / 34.0 / 55.3 us at
        // 4K / 16K / 32K keys; bench/gpu). q8_0 stays on the FFMA decode (dequantizes in registers).
        return fattn_decode_mma_supported(p) ? fattn_path::decode_mma : fattn_path::decode;
    }
    if (fattn_prefill_supported(p)) {
        return fattn_path::prefill;
    }
    return fattn_path::none;
}

bool fattn_supported(const attn_op & op) {
    kernel_args a;
    return kernel_args_of(op, a) && fattn_choose(a) != fattn_path::none;
}

size_t fattn_scratch_bytes(const kernel_args & p, int n_sm) {
    switch (fattn_choose(p)) {
        case fattn_path::decode: return fattn_decode_scratch_bytes(p, n_sm);
        case fattn_path::decode_mma: return fattn_decode_plan_scratch_bytes(fattn_decode_mma_make_plan(p, n_sm), p.D);
        default: return 0;
    }
}

void fattn_run(const kernel_args & p, void * scratch, size_t scratch_bytes, int n_sm, cudaStream_t stream) {
    switch (fattn_choose(p)) {
        case fattn_path::decode:
            fattn_decode(p, scratch, scratch_bytes, n_sm, stream);
            break;
        case fattn_path::decode_mma:
            fattn_decode_mma(p, scratch, scratch_bytes, n_sm, stream);
            break;
        case fattn_path::prefill:
            fattn_prefill(p, stream);
            break;
        case fattn_path::none:
            LF_CUDA_ASSERT(!"fattn_run: shape not supported");
    }
}

} // namespace llamafuse::cuda
