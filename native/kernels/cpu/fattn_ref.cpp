// Plain reference for the fused CPU attention: one query row at a time, K/V dequantized
// exactly, double accumulation, two passes (max, then weights). Slow and obviously right.
#include "fattn_common.h"
#include "fattn_cpu.h"

#include <vector>

namespace llamafuse {
namespace cpu {

static void load_row(kv_type type, const char * row, int64_t n, double * out) {
    if (type == kv_type::f16) {
        const uint16_t * h = (const uint16_t *) row;
        for (int64_t i = 0; i < n; i++) out[i] = half_to_float(h[i]);
    } else {
        const block_q8_0 * b = (const block_q8_0 *) row;
        for (int64_t i = 0; i < n; i++) out[i] = (double) half_to_float(b[i / QK8_0].d) * b[i / QK8_0].qs[i % QK8_0];
    }
}

void fattn_reference(const fattn_params & p) {
    const int64_t G = p.n_head / p.n_head_kv;
    const int64_t S = p.n_stream / p.n_stream_kv;
    std::vector<double> kr(p.DK), vr(p.DV), s(p.n_kv), o(p.DV);
    for (int64_t st = 0; st < p.n_stream; st++) {
        for (int64_t h = 0; h < p.n_head; h++) {
            const float slope = alibi_slope(p.max_bias, p.n_head, h);
            const char * kb = p.k + (h / G) * p.k_nb2 + (st / S) * p.k_nb3;
            const char * vb = p.v + (h / G) * p.v_nb2 + (st / S) * p.v_nb3;
            for (int64_t t = 0; t < p.n_tokens; t++) {
                const float * q = (const float *) (p.q + t * p.q_nb1 + h * p.q_nb2 + st * p.q_nb3);
                const uint16_t * m = p.mask ? (const uint16_t *) (p.mask + t * p.m_nb1 + (h % p.m_ne2) * p.m_nb2 + (st % p.m_ne3) * p.m_nb3) : nullptr;
                double mx = -INFINITY;
                for (int64_t j = 0; j < p.n_kv; j++) {
                    const double mv = m ? (double) slope * half_to_float(m[j]) : 0.0;
                    if (mv == -INFINITY) { s[j] = -INFINITY; continue; }
                    load_row(p.type, kb + j * p.k_nb1, p.DK, kr.data());
                    double dot = 0;
                    for (int64_t d = 0; d < p.DK; d++) dot += (double) q[d] * kr[d];
                    dot *= p.scale;
                    if (p.softcap != 0.0f) dot = p.softcap * std::tanh(dot / p.softcap);
                    s[j] = dot + mv;
                    if (s[j] > mx) mx = s[j];
                }
                float * out = (float *) (p.dst + h * p.d_nb1 + t * p.d_nb2 + st * p.d_nb3);
                if (mx == -INFINITY) {  // fully masked row: exactly 0
                    for (int64_t d = 0; d < p.DV; d++) out[d] = 0.0f;
                    continue;
                }
                double l = 0;
                std::fill(o.begin(), o.end(), 0.0);
                if (p.sinks && p.sinks[h] > mx) mx = p.sinks[h];
                for (int64_t j = 0; j < p.n_kv; j++) {
                    if (s[j] == -INFINITY) continue;
                    const double w = std::exp(s[j] - mx);
                    l += w;
                    load_row(p.type, vb + j * p.v_nb1, p.DV, vr.data());
                    for (int64_t d = 0; d < p.DV; d++) o[d] += w * vr[d];
                }
                if (p.sinks) l += std::exp((double) p.sinks[h] - mx);
                for (int64_t d = 0; d < p.DV; d++) out[d] = (float) (o[d] / l);
            }
        }
    }
}

} // namespace cpu
} // namespace llamafuse
