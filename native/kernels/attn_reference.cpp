#include "attn_reference.h"

#include "cpu/fattn_common.h"

#include <cmath>

namespace llamafuse {
namespace {

void load_row(attn_kv_type type, const char * row, int64_t n, double * out) {
    if (type == attn_kv_type::f16) {
        const uint16_t * h = (const uint16_t *) row;
        for (int64_t i = 0; i < n; i++) out[i] = cpu::half_to_float(h[i]);
    } else {
        const cpu::block_q8_0 * b = (const cpu::block_q8_0 *) row;
        for (int64_t i = 0; i < n; i++) out[i] = (double) cpu::half_to_float(b[i / cpu::QK8_0].d) * b[i / cpu::QK8_0].qs[i % cpu::QK8_0];
    }
}

} // namespace

std::vector<double> attn_reference(const attn_op & p) {
    std::vector<double> out((size_t) (p.n_stream * p.n_tokens * p.n_head * p.DV), 0.0);
    const int64_t G = p.n_head / p.n_head_kv;
    const int64_t S = p.n_stream / p.n_stream_kv;
    std::vector<double> kr(p.DK), vr(p.DV), s(p.n_kv);
    for (int64_t st = 0; st < p.n_stream; st++) {
        for (int64_t h = 0; h < p.n_head; h++) {
            // ALiBi's slope exactly as ggml computes it (f32), 1 without ALiBi
            const float slope = cpu::alibi_slope(p.max_bias, p.n_head, h);
            const char * kb = p.k + (h / G) * p.k_nb2 + (st / S) * p.k_nb3;
            const char * vb = p.v + (h / G) * p.v_nb2 + (st / S) * p.v_nb3;
            for (int64_t t = 0; t < p.n_tokens; t++) {
                const float * q = (const float *) (p.q + t * p.q_nb1 + h * p.q_nb2 + st * p.q_nb3);
                const uint16_t * m = p.mask ? (const uint16_t *) (p.mask + t * p.m_nb1 + (h % p.m_ne2) * p.m_nb2 + (st % p.m_ne3) * p.m_nb3) : nullptr;
                double mx = -INFINITY;
                for (int64_t j = 0; j < p.n_kv; j++) {
                    const double mv = m ? (double) slope * cpu::half_to_float(m[j]) : 0.0;
                    if (mv == -INFINITY) { s[j] = -INFINITY; continue; }
                    load_row(p.type, kb + j * p.k_nb1, p.DK, kr.data());
                    double dot = 0;
                    for (int64_t d = 0; d < p.DK; d++) dot += (double) q[d] * kr[d];
                    dot *= p.scale;
                    if (p.softcap != 0.0f) dot = p.softcap * std::tanh(dot / p.softcap);
                    s[j] = dot + mv;
                    if (s[j] > mx) mx = s[j];
                }
                double * o = &out[(size_t) (((st * p.n_tokens + t) * p.n_head + h) * p.DV)];
                if (mx == -INFINITY) continue;  // every key masked: exactly 0
                if (p.sinks && p.sinks[h] > mx) mx = p.sinks[h];
                double l = p.sinks ? std::exp((double) p.sinks[h] - mx) : 0.0;
                for (int64_t j = 0; j < p.n_kv; j++) {
                    if (s[j] == -INFINITY) continue;
                    const double w = std::exp(s[j] - mx);
                    l += w;
                    load_row(p.type, vb + j * p.v_nb1, p.DV, vr.data());
                    for (int64_t d = 0; d < p.DV; d++) o[d] += w * vr[d];
                }
                for (int64_t d = 0; d < p.DV; d++) o[d] /= l;
            }
        }
    }
    return out;
}

void attn_reference_store(const attn_op & p) {
    const std::vector<double> ref = attn_reference(p);
    for (int64_t st = 0; st < p.n_stream; st++) {
        for (int64_t t = 0; t < p.n_tokens; t++) {
            for (int64_t h = 0; h < p.n_head; h++) {
                const double * r = &ref[(size_t) (((st * p.n_tokens + t) * p.n_head + h) * p.DV)];
                float * out = (float *) (p.dst + h * p.d_nb1 + t * p.d_nb2 + st * p.d_nb3);
                for (int64_t d = 0; d < p.DV; d++) out[d] = (float) r[d];
            }
        }
    }
}

} // namespace llamafuse
