#include "attn_ggml.h"

#include "ggml.h"

#include <cstring>

namespace llamafuse {

bool attn_op_from_node(const ggml_tensor * dst, attn_op & p) {
    if (dst == nullptr || dst->op != GGML_OP_FLASH_ATTN_EXT) return false;
    const ggml_tensor * q = dst->src[0], * k = dst->src[1], * v = dst->src[2];
    const ggml_tensor * mask = dst->src[3], * sinks = dst->src[4];
    if (!q || !k || !v || dst->type != GGML_TYPE_F32 || q->type != GGML_TYPE_F32) return false;
    if (k->type != v->type) return false;
    if (k->type == GGML_TYPE_F16) p.type = attn_kv_type::f16;
    else if (k->type == GGML_TYPE_Q8_0) p.type = attn_kv_type::q8_0;
    else return false;
    // op_params: [0] scale, [1] max_bias, [2] logit softcap (f32 bits), [3] precision; our
    // kernels accumulate in f32 always. [4] (n_kv_max) only bounds the finite mask entries.
    const int32_t prec = dst->op_params[3];
    if (prec != GGML_PREC_DEFAULT && prec != GGML_PREC_F32) return false;

    if (q->nb[0] != sizeof(float) || k->nb[0] != ggml_type_size(k->type) || v->nb[0] != ggml_type_size(v->type)) return false;
    if (dst->nb[0] != sizeof(float)) return false;
    p.DK = q->ne[0];  p.n_tokens = q->ne[1];  p.n_head = q->ne[2];  p.n_stream = q->ne[3];
    p.DV = v->ne[0];  p.n_kv = k->ne[1];  p.n_head_kv = k->ne[2];  p.n_stream_kv = k->ne[3];
    // V matches K in every dim but the head size (DK != DV is MLA's shape)
    if (k->ne[0] != p.DK || v->ne[1] != p.n_kv || v->ne[2] != p.n_head_kv || v->ne[3] != p.n_stream_kv) return false;
    // dst [DV, n_head, n_tokens, n_stream]
    if (dst->ne[0] != p.DV || dst->ne[1] != p.n_head || dst->ne[2] != p.n_tokens || dst->ne[3] != p.n_stream) return false;

    p.q = (const char *) q->data;  p.q_nb1 = q->nb[1];  p.q_nb2 = q->nb[2];  p.q_nb3 = q->nb[3];
    p.k = (const char *) k->data;  p.k_nb1 = k->nb[1];  p.k_nb2 = k->nb[2];  p.k_nb3 = k->nb[3];
    p.v = (const char *) v->data;  p.v_nb1 = v->nb[1];  p.v_nb2 = v->nb[2];  p.v_nb3 = v->nb[3];
    p.dst = (char *) dst->data;    p.d_nb1 = dst->nb[1]; p.d_nb2 = dst->nb[2]; p.d_nb3 = dst->nb[3];

    p.mask = nullptr;  p.m_nb1 = p.m_nb2 = p.m_nb3 = 0;  p.m_ne2 = p.m_ne3 = 1;
    if (mask) {
        if (mask->type != GGML_TYPE_F16 || mask->nb[0] != sizeof(ggml_fp16_t)) return false;
        if (mask->ne[0] < p.n_kv || mask->ne[1] < p.n_tokens) return false;
        p.mask = (const char *) mask->data;
        p.m_nb1 = mask->nb[1];  p.m_nb2 = mask->nb[2];  p.m_nb3 = mask->nb[3];
        p.m_ne2 = mask->ne[2];  p.m_ne3 = mask->ne[3];
    }
    p.sinks = nullptr;
    if (sinks) {
        if (sinks->type != GGML_TYPE_F32 || sinks->nb[0] != sizeof(float) || sinks->ne[0] < p.n_head) return false;
        p.sinks = (const float *) sinks->data;
    }
    std::memcpy(&p.scale,    &dst->op_params[0], sizeof(float));
    std::memcpy(&p.max_bias, &dst->op_params[1], sizeof(float));
    std::memcpy(&p.softcap,  &dst->op_params[2], sizeof(float));
    return true;
}

} // namespace llamafuse
