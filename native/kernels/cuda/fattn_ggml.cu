#include "fattn_ggml.cuh"
#include "fattn_cuda.cuh"

#include "ggml.h"

#include <cstdint>
#include <cstring>

namespace llamafuse::cuda {
namespace {

bool is_row_contiguous(const ggml_tensor * t) {
    return t->nb[0] == ggml_type_size(t->type);
}

} // namespace

bool fattn_params_from_node(const ggml_tensor * dst, attn_params & p) {
    if (dst->op != GGML_OP_FLASH_ATTN_EXT) return false;
    const ggml_tensor * q = dst->src[0];
    const ggml_tensor * k = dst->src[1];
    const ggml_tensor * v = dst->src[2];
    const ggml_tensor * mask = dst->src[3];
    const ggml_tensor * sinks = dst->src[4];
    if (!q || !k || !v) return false;

    if (q->type != GGML_TYPE_F32 || dst->type != GGML_TYPE_F32) return false;
    if (k->type != v->type) return false;
    if (k->type == GGML_TYPE_F16) {
        p.type = kv_type::f16;
    } else if (k->type == GGML_TYPE_Q8_0) {
        p.type = kv_type::q8_0;
    } else {
        return false;
    }
    const int64_t D = q->ne[0];
    if (k->ne[0] != D || v->ne[0] != D || dst->ne[0] != D) return false;
    if (!is_row_contiguous(q) || !is_row_contiguous(k) || !is_row_contiguous(v)) return false;
    if (!ggml_is_contiguous(dst)) return false;
    // V must match K in every dim (a view of K with a smaller head dim is MLA: declined above)
    for (int i = 1; i < 4; ++i) {
        if (v->ne[i] != k->ne[i]) return false;
    }
    // dst [D, n_head, n_tokens, n_seq]
    if (dst->ne[1] != q->ne[2] || dst->ne[2] != q->ne[1] || dst->ne[3] != q->ne[3]) return false;
    if (q->ne[2] % k->ne[2] != 0 || q->ne[3] % k->ne[3] != 0) return false;
    if (q->ne[1] > INT32_MAX || k->ne[1] > INT32_MAX) return false;

    if (mask) {
        if (mask->type != GGML_TYPE_F16 || !is_row_contiguous(mask)) return false;
        if (mask->ne[0] < k->ne[1] || mask->ne[1] < q->ne[1] || mask->ne[2] != 1) return false;
        if (q->ne[3] % mask->ne[3] != 0) return false;
    }
    if (sinks) {
        if (sinks->type != GGML_TYPE_F32 || !ggml_is_contiguous(sinks) || sinks->ne[0] < q->ne[2]) return false;
    }

    p.q = static_cast<const float *>(q->data);
    p.q_nb1 = q->nb[1];
    p.q_nb2 = q->nb[2];
    p.q_nb3 = q->nb[3];
    p.k = k->data;
    p.k_nb1 = k->nb[1];
    p.k_nb2 = k->nb[2];
    p.k_nb3 = k->nb[3];
    p.v = v->data;
    p.v_nb1 = v->nb[1];
    p.v_nb2 = v->nb[2];
    p.v_nb3 = v->nb[3];
    p.mask = mask ? static_cast<const __half *>(mask->data) : nullptr;
    p.mask_nb1 = mask ? mask->nb[1] : 0;
    p.mask_nb3 = mask ? mask->nb[3] : 0;
    p.n_seq_mask = mask ? (int) mask->ne[3] : 1;
    p.sinks = sinks ? static_cast<const float *>(sinks->data) : nullptr;
    p.dst = static_cast<float *>(dst->data);
    p.D = (int) D;
    p.n_tokens = (int) q->ne[1];
    p.n_head = (int) q->ne[2];
    p.n_head_kv = (int) k->ne[2];
    p.n_kv = (int) k->ne[1];
    p.n_seq_q = (int) q->ne[3];
    p.n_seq_kv = (int) k->ne[3];
    memcpy(&p.scale, (const float *) dst->op_params + 0, sizeof(float));
    memcpy(&p.max_bias, (const float *) dst->op_params + 1, sizeof(float));
    memcpy(&p.softcap, (const float *) dst->op_params + 2, sizeof(float));
    // op_params[3] (precision) is moot: we accumulate in f32 always. op_params[4]
    // (n_kv_max) only bounds the finite mask entries: a hint we may ignore.
    return fattn_choose(p) != fattn_path::none;
}

} // namespace llamafuse::cuda
