#include "emulate.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace fattn_bench {

static const float LOG2E = 1.4426950408889634f;
static const float NINF = -std::numeric_limits<float>::infinity();

static float exp2_diff(float a, float b) { return a == NINF ? 0.0f : std::exp2(a - b); }
static float round_f16(float x) { return half_to_float(float_to_half(x)); }

static void load_row_f32(const problem & pr, const uint8_t * p, float * out) {
    if (pr.type == kv_kind::f16) {
        for (int i = 0; i < pr.D; ++i) {
            uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            out[i] = half_to_float(h);
        }
    } else {
        for (int b = 0; b < pr.D / 32; ++b) {
            uint16_t dh;
            std::memcpy(&dh, p + b * 34, 2);
            const float dd = half_to_float(dh);
            for (int j = 0; j < 32; ++j) out[b * 32 + j] = dd * (float) (int8_t) p[b * 34 + 2 + j];
        }
    }
}

std::vector<float> emulate(const problem & pr, const host_data & d, const emulate_opts & o) {
    const int D = pr.D, T = pr.n_tokens, H = pr.n_head, G = pr.n_head / pr.n_head_kv;
    std::vector<float> out((size_t) pr.n_seq * T * H * D, 0.0f);
    const bool cap = pr.softcap != 0.0f;
    const float scale = 1.0f / std::sqrt((float) D);
    const float q_scale = cap ? scale / pr.softcap : scale * LOG2E;
    const float cap_l2 = pr.softcap * LOG2E;
    const int n_head_log2 = 1 << (int) std::floor(std::log2((float) H));
    const float m0 = std::exp2(-pr.max_bias / n_head_log2);
    const float m1 = std::exp2(-(pr.max_bias / 2.0f) / n_head_log2);

    const int chunk = ((pr.n_kv + o.n_splits - 1) / o.n_splits + o.tile - 1) / o.tile * o.tile;
    std::vector<float> q(D), k(D), v(D), acc(D), O(D), s(o.tile);

    for (int sq = 0; sq < pr.n_seq; ++sq) {
        for (int t = 0; t < T; ++t) {
            for (int h = 0; h < H; ++h) {
                const int kvh = h / G;
                const float slope = pr.max_bias > 0.0f
                    ? (h < n_head_log2 ? std::pow(m0, (float) (h + 1)) : std::pow(m1, (float) (2 * (h - n_head_log2) + 1)))
                    : 1.0f;
                const float slope_l2 = slope * LOG2E;
                const float * qs = &d.q[(((size_t) sq * H + h) * T + t) * D];
                for (int i = 0; i < D; ++i) q[i] = o.f16_q ? round_f16(qs[i] * q_scale) : qs[i] * q_scale;

                // split partials, merged as fattn_combine does
                float M_all = NINF;
                std::vector<float> pm, pl;
                std::vector<std::vector<float>> po;
                for (int k0 = 0; k0 < pr.n_kv; k0 += chunk) {
                    const int k1 = std::min(pr.n_kv, k0 + chunk);
                    float m = NINF, l = 0.0f;
                    std::fill(acc.begin(), acc.end(), 0.0f);
                    for (int kt = k0; kt < k1; kt += o.tile) {
                        const int n = std::min(o.tile, k1 - kt);
                        float mt = NINF;
                        for (int u = 0; u < n; ++u) {
                            const int key = kt + u;
                            const size_t row = ((size_t) sq * pr.n_kv + key) * pr.n_head_kv + kvh;
                            load_row_f32(pr, d.k.data() + row * pr.row_bytes(), k.data());
                            float dot = 0.0f;
                            for (int i = 0; i < D; ++i) dot = std::fma(q[i], k[i], dot);
                            const float x = cap ? cap_l2 * std::tanh(dot) : dot;
                            const float mv = pr.mask ? half_to_float(d.mask[((size_t) sq * T + t) * pr.n_kv + key]) : 0.0f;
                            s[u] = mv == NINF ? NINF : std::fma(slope_l2, mv, x);
                            mt = std::max(mt, s[u]);
                        }
                        const float mn = std::max(m, mt);
                        const float a = exp2_diff(m, mn);
                        m = mn;
                        l *= a;
                        for (int i = 0; i < D; ++i) acc[i] *= a;
                        for (int u = 0; u < n; ++u) {
                            float p = s[u] == NINF ? 0.0f : std::exp2(s[u] - mn);
                            l += p;                       // the sum uses the f32 value, as the kernels do
                            if (o.f16_p) p = round_f16(p);
                            if (p == 0.0f) continue;
                            const size_t row = ((size_t) sq * pr.n_kv + kt + u) * pr.n_head_kv + kvh;
                            load_row_f32(pr, d.v.data() + row * pr.row_bytes(), v.data());
                            for (int i = 0; i < D; ++i) acc[i] = std::fma(p, v[i], acc[i]);
                        }
                    }
                    pm.push_back(m);
                    pl.push_back(l);
                    po.push_back(acc);
                    M_all = std::max(M_all, m);
                }
                const float sink = pr.sinks ? d.sinks[h] * LOG2E : NINF;
                M_all = std::max(M_all, sink);
                float L = 0.0f;
                std::fill(O.begin(), O.end(), 0.0f);
                for (size_t sp = 0; sp < pm.size(); ++sp) {
                    const float w = exp2_diff(pm[sp], M_all);
                    L += pl[sp] * w;
                    for (int i = 0; i < D; ++i) O[i] += po[sp][i] * w;
                }
                L += exp2_diff(sink, M_all);
                float * dst = &out[(((size_t) sq * T + t) * H + h) * D];
                for (int i = 0; i < D; ++i) dst[i] = L > 0.0f ? O[i] / L : 0.0f;
            }
        }
    }
    return out;
}

} // namespace fattn_bench
