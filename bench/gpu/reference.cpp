#include "reference.h"

#include "../../native/kernels/attn_reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

namespace fattn_bench {

std::string problem::describe() const {
    std::ostringstream o;
    o << "D=" << D << " T=" << n_tokens << " H=" << n_head << "/" << n_head_kv << " kv=" << n_kv
      << " seq=" << n_seq << " " << (type == kv_kind::f16 ? "f16" : "q8_0");
    if (!mask) o << " nomask";
    if (causal) o << " causal";
    if (n_kv_valid >= 0) o << " valid=" << n_kv_valid;
    if (sinks) o << " sinks";
    if (max_bias != 0.0f) o << " alibi=" << max_bias;
    if (softcap != 0.0f) o << " cap=" << softcap;
    if (!masked_rows.empty()) o << " masked_rows=" << masked_rows.size();
    return o.str();
}

// ---- f16 -------------------------------------------------------------------------------------

uint16_t float_to_half(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {                       // inf or nan
        return (uint16_t) (sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    }
    if (ax >= 0x477ff000u) {                       // rounds to >= 65520: overflow to inf
        return (uint16_t) (sign | 0x7c00u);
    }
    if (ax < 0x38800000u) {                        // below the smallest normal half: subnormal
        // value = ax as float; half subnormal unit is 2^-24
        float a;
        std::memcpy(&a, &ax, 4);
        const float scaled = a * 16777216.0f;      // a / 2^-24, exact in float
        const float r = std::nearbyint(scaled);    // round to nearest even (default mode)
        return (uint16_t) (sign | (uint32_t) r);
    }
    // normal: rebias exponent, round mantissa 23 -> 10 bits to nearest even
    uint32_t h = ((ax >> 13) - (112u << 10));
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) {
        h += 1;                                    // may carry into the exponent: still right
    }
    return (uint16_t) (sign | h);
}

float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    float f;
    if (exp == 0) {
        f = std::ldexp((float) man, -24);
        uint32_t x;
        std::memcpy(&x, &f, 4);
        x |= sign;
        std::memcpy(&f, &x, 4);
        return f;
    }
    uint32_t x;
    if (exp == 31) {
        x = sign | 0x7f800000u | (man << 13);
    } else {
        x = sign | ((exp + 112u) << 23) | (man << 13);
    }
    std::memcpy(&f, &x, 4);
    return f;
}

// ---- q8_0 ------------------------------------------------------------------------------------

void quantize_row_q8_0(const float * x, uint8_t * out, int n) {
    for (int b = 0; b < n / 32; ++b) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t dh = float_to_half(d);
        std::memcpy(out + b * 34, &dh, 2);
        for (int j = 0; j < 32; ++j) {
            out[b * 34 + 2 + j] = (uint8_t) (int8_t) std::lround(x[b * 32 + j] * id);
        }
    }
}

void dequantize_row_q8_0(const uint8_t * in, double * y, int n) {
    for (int b = 0; b < n / 32; ++b) {
        uint16_t dh;
        std::memcpy(&dh, in + b * 34, 2);
        const double d = half_to_float(dh);
        for (int j = 0; j < 32; ++j) y[b * 32 + j] = d * (double) (int8_t) in[b * 34 + 2 + j];
    }
}

// ---- data ------------------------------------------------------------------------------------

static void fill_cache(const problem & pr, rng & g, std::vector<uint8_t> & out) {
    out.assign(pr.kv_bytes(), 0);
    std::vector<float> row(pr.D);
    const size_t n_rows = (size_t) pr.n_seq * pr.n_kv * pr.n_head_kv;
    for (size_t r = 0; r < n_rows; ++r) {
        for (int i = 0; i < pr.D; ++i) row[i] = (float) g.uniform(-1.0, 1.0);
        uint8_t * dst = out.data() + r * pr.row_bytes();
        if (pr.type == kv_kind::f16) {
            for (int i = 0; i < pr.D; ++i) {
                const uint16_t h = float_to_half(row[i]);
                std::memcpy(dst + 2 * i, &h, 2);
            }
        } else {
            quantize_row_q8_0(row.data(), dst, pr.D);
        }
    }
}

bool row_fully_masked(const problem & pr, int token) {
    if (!pr.mask) return false;
    if (std::find(pr.masked_rows.begin(), pr.masked_rows.end(), token) != pr.masked_rows.end()) return true;
    if (pr.n_kv_valid == 0) return true;
    if (pr.causal && pr.n_kv - pr.n_tokens + token < 0) return true;
    return false;
}

host_data make_data(const problem & pr, uint64_t seed) {
    rng g(seed);
    host_data d;
    d.q.resize(pr.q_floats());
    for (float & x : d.q) x = (float) g.uniform(-1.0, 1.0);
    fill_cache(pr, g, d.k);
    fill_cache(pr, g, d.v);
    if (pr.mask) {
        const uint16_t ninf = 0xfc00u;
        d.mask.assign(pr.mask_halves(), 0);
        for (int s = 0; s < pr.n_seq; ++s) {
            for (int t = 0; t < pr.n_tokens; ++t) {
                const bool all = std::find(pr.masked_rows.begin(), pr.masked_rows.end(), t) != pr.masked_rows.end();
                for (int j = 0; j < pr.n_kv; ++j) {
                    bool m = all;
                    if (pr.causal && j > pr.n_kv - pr.n_tokens + t) m = true;
                    if (pr.n_kv_valid >= 0 && j >= pr.n_kv_valid) m = true;
                    // ALiBi reads the mask as a position bias: give unmasked keys a small
                    // random value so the slope is exercised (ggml adds slope * mask).
                    const float bias = pr.max_bias != 0.0f ? (float) -g.below(16) : 0.0f;
                    d.mask[((size_t) s * pr.n_tokens + t) * pr.n_kv + j] = m ? ninf : float_to_half(bias);
                }
            }
        }
    }
    if (pr.sinks) {
        d.sinks.resize(pr.n_head);
        for (float & x : d.sinks) x = (float) g.uniform(-4.0, 4.0);
    }
    return d;
}

// ---- reference -------------------------------------------------------------------------------

llamafuse::attn_op problem_op(const problem & pr, const float * q, int64_t q_nb1, int64_t q_nb2, int64_t q_nb3,
                              const void * k, const void * v, const void * mask, const float * sinks, float * dst) {
    llamafuse::attn_op op;
    op.q = reinterpret_cast<const char *>(q);
    op.q_nb1 = (size_t) q_nb1;  op.q_nb2 = (size_t) q_nb2;  op.q_nb3 = (size_t) q_nb3;
    op.k = static_cast<const char *>(k);
    op.v = static_cast<const char *>(v);
    op.k_nb1 = op.v_nb1 = (size_t) pr.k_nb1();
    op.k_nb2 = op.v_nb2 = (size_t) pr.k_nb2();
    op.k_nb3 = op.v_nb3 = (size_t) pr.k_nb3();
    op.type = pr.type == kv_kind::f16 ? llamafuse::attn_kv_type::f16 : llamafuse::attn_kv_type::q8_0;
    if (pr.mask) {
        op.mask = static_cast<const char *>(mask);
        op.m_nb1 = (size_t) pr.n_kv * 2;
        op.m_nb2 = 0;
        op.m_nb3 = (size_t) pr.n_tokens * pr.n_kv * 2;
        op.m_ne2 = 1;
        op.m_ne3 = pr.n_seq;
    }
    op.sinks = pr.sinks ? sinks : nullptr;
    op.dst = reinterpret_cast<char *>(dst);
    op.d_nb1 = (size_t) pr.D * 4;
    op.d_nb2 = (size_t) pr.n_head * pr.D * 4;
    op.d_nb3 = (size_t) pr.n_tokens * pr.n_head * pr.D * 4;
    op.DK = op.DV = pr.D;
    op.n_tokens = pr.n_tokens;
    op.n_head = pr.n_head;
    op.n_stream = pr.n_seq;
    op.n_kv = pr.n_kv;
    op.n_head_kv = pr.n_head_kv;
    op.n_stream_kv = pr.n_seq;
    op.scale = 1.0f / std::sqrt((float) pr.D);
    op.max_bias = pr.max_bias;
    op.softcap = pr.softcap;
    return op;
}

std::vector<double> reference(const problem & pr, const host_data & d) {
    // q as make_data writes it: [seq][head][token][D]
    const int64_t row = (int64_t) pr.D * 4;
    const llamafuse::attn_op op = problem_op(pr, d.q.data(), row, row * pr.n_tokens, row * pr.n_tokens * pr.n_head,
                                             d.k.data(), d.v.data(), d.mask.data(), d.sinks.data(), nullptr);
    return llamafuse::attn_reference(op);
}

compare_result compare(const problem & pr, const std::vector<float> & out, const std::vector<double> & ref) {
    compare_result c;
    double num = 0.0, den = 0.0;
    const size_t n = std::min(out.size(), ref.size());
    if (out.size() != ref.size()) c.n_nan += std::max(out.size(), ref.size()) - n;
    for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(out[i])) {
            ++c.n_nan;
            continue;
        }
        const double e = (double) out[i] - ref[i];
        num += e * e;
        den += ref[i] * ref[i];
        c.max_abs = std::max(c.max_abs, std::fabs(e));
    }
    c.rel_l2 = den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
    const size_t row = (size_t) pr.n_head * pr.D;
    for (int sq = 0; sq < pr.n_seq; ++sq) {
        for (int t = 0; t < pr.n_tokens; ++t) {
            if (!row_fully_masked(pr, t)) continue;
            const size_t base = ((size_t) sq * pr.n_tokens + t) * row;
            for (size_t i = 0; i < row && base + i < out.size(); ++i) {
                if (out[base + i] != 0.0f) {
                    ++c.n_bad_zero;
                    break;
                }
            }
        }
    }
    return c;
}

} // namespace fattn_bench
