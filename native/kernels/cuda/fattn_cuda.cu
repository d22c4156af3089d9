#include "fattn_cuda.cuh"
#include "fattn_decode.cuh"
#include "fattn_prefill.cuh"

namespace llamafuse::cuda {

fattn_path fattn_choose(const attn_params & p) {
    // Decode reads each K/V byte once per kv head for all its rows; once the rows outgrow a
    // few 8-row blocks the tensor-core kernel does the same work at matrix speed.
    if (p.n_tokens <= 4 && fattn_decode_supported(p)) {
        return fattn_path::decode;
    }
    if (fattn_prefill_supported(p)) {
        return fattn_path::prefill;
    }
    return fattn_path::none;
}

size_t fattn_scratch_bytes(const attn_params & p, int n_sm) {
    return fattn_choose(p) == fattn_path::decode ? fattn_decode_scratch_bytes(p, n_sm) : 0;
}

void fattn_run(const attn_params & p, void * scratch, size_t scratch_bytes, int n_sm, cudaStream_t stream) {
    switch (fattn_choose(p)) {
        case fattn_path::decode:
            fattn_decode(p, scratch, scratch_bytes, n_sm, stream);
            break;
        case fattn_path::prefill:
            fattn_prefill(p, stream);
            break;
        case fattn_path::none:
            LF_CUDA_ASSERT(!"fattn_run: shape not supported");
    }
}

} // namespace llamafuse::cuda
