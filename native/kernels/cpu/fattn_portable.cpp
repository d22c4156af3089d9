// Portable inner loops (plain C++, any CPU). Same blocking as the AVX2 path, so the driver
// and its GQA packing are exercised identically; the compiler may vectorise the d loops.
#include "fattn_common.h"
#include "fattn_kernels.h"

#include <cmath>

namespace llamafuse {
namespace cpu {
namespace {

struct kv_f16 {
    static void load(const char * row, int64_t d0, int n, float * out) {
        const uint16_t * h = (const uint16_t *) row + d0;
        for (int i = 0; i < n; i++) out[i] = half_to_float(h[i]);
    }
};

struct kv_q8_0 {
    // n <= 8 and d0 % 8 == 0, so the run lies inside one 32-wide block
    static void load(const char * row, int64_t d0, int n, float * out) {
        const block_q8_0 * b = (const block_q8_0 *) row + d0 / QK8_0;
        const float d = half_to_float(b->d);
        const int8_t * qs = b->qs + d0 % QK8_0;
        for (int i = 0; i < n; i++) out[i] = d * qs[i];
    }
};

bool mask_portable(const uint16_t * const * mrow, const float * slope, int R, int nk, float * mv) {
    bool any = false;
    for (int r = 0; r < R; r++) {
        for (int j = 0; j < nk; j++) {
            const float x = slope[r] * half_to_float(mrow[r][j]);
            mv[r * KB + j] = x;
            any |= x != -INFINITY;
        }
    }
    return any;
}

template <int R, class KV>
void scores_portable(const float * qs, int64_t DK, const char * k, size_t k_nb1, int nk, float * s, const prefetch_range *) {
    float kf[8];
    for (int j = 0; j < nk; j++) {
        const char * row = k + j * k_nb1;
        float acc[R] = {};
        for (int64_t d = 0; d < DK; d += 8) {
            KV::load(row, d, 8, kf);
            for (int r = 0; r < R; r++) {
                const float * q = qs + r * DK + d;
                float a = 0;
                for (int i = 0; i < 8; i++) a += q[i] * kf[i];
                acc[r] += a;
            }
        }
        for (int r = 0; r < R; r++) s[r * KB + j] = acc[r];
    }
}

void softmax_portable(float * s, const float * mv, float softcap, int R, int nk, float * m, float * l, float * o, int64_t DV) {
    for (int r = 0; r < R; r++) {
        float * row = s + r * KB;
        float bm = -INFINITY;
        for (int j = 0; j < nk; j++) {
            float x = row[j];
            if (softcap != 0.0f) x = softcap * std::tanh(x);
            if (mv) x = mv[r * KB + j] == -INFINITY ? -INFINITY : x + mv[r * KB + j];
            row[j] = x;
            bm = x > bm ? x : bm;
        }
        if (bm == -INFINITY) {  // nothing visible in this block for this row
            for (int j = 0; j < nk; j++) row[j] = 0.0f;
            continue;
        }
        if (bm > m[r]) {
            if (m[r] != -INFINITY) {
                const float alpha = std::exp(m[r] - bm);
                for (int64_t d = 0; d < DV; d++) o[r * DV + d] *= alpha;
                l[r] *= alpha;
            }
            m[r] = bm;
        }
        float sum = 0;
        for (int j = 0; j < nk; j++) {
            row[j] = std::exp(row[j] - m[r]);
            sum += row[j];
        }
        l[r] += sum;
    }
}

template <int R, class KV>
void accum_portable(const float * p, const char * v, size_t v_nb1, int nk, float * o, int64_t DV) {
    float vf[8];
    for (int64_t d = 0; d < DV; d += 8) {
        float acc[R][8];
        for (int r = 0; r < R; r++) for (int i = 0; i < 8; i++) acc[r][i] = o[r * DV + d + i];
        for (int j = 0; j < nk; j++) {
            KV::load(v + j * v_nb1, d, 8, vf);
            for (int r = 0; r < R; r++) {
                const float w = p[r * KB + j];
                for (int i = 0; i < 8; i++) acc[r][i] += w * vf[i];
            }
        }
        for (int r = 0; r < R; r++) for (int i = 0; i < 8; i++) o[r * DV + d + i] = acc[r][i];
    }
}

template <class KV>
void kconv_portable(const char * k, size_t k_nb1, int nk, int64_t DK, float * kt) {
    float tmp[8];
    for (int j = 0; j < KB; j++) {
        for (int64_t d = 0; d < DK; d += 8) {
            if (j < nk) KV::load(k + j * k_nb1, d, 8, tmp);
            for (int i = 0; i < 8; i++) kt[(d + i) * KB + j] = j < nk ? tmp[i] : 0.0f;
        }
    }
}

template <class KV>
void vconv_portable(const char * v, size_t v_nb1, int nk, int64_t DV, float * vf) {
    for (int j = 0; j < KB; j++) {
        for (int64_t d = 0; d < DV; d += 8) {
            if (j < nk) KV::load(v + j * v_nb1, d, 8, vf + j * DV + d);
            else for (int i = 0; i < 8; i++) vf[j * DV + d + i] = 0.0f;
        }
    }
}

void qk_portable(const float * qs, int R, int64_t DK, const float * kt, float * s) {
    for (int r = 0; r < R; r++) {
        float acc[KB] = {};
        for (int64_t d = 0; d < DK; d++) {
            const float q = qs[r * DK + d];
            for (int j = 0; j < KB; j++) acc[j] += q * kt[d * KB + j];
        }
        for (int j = 0; j < KB; j++) s[r * KB + j] = acc[j];
    }
}

void pv_portable(const float * p, int R, const float * vf, int64_t DV, float * o) {
    for (int r = 0; r < R; r++) {
        for (int j = 0; j < KB; j++) {
            const float w = p[r * KB + j];
            if (w == 0.0f) continue;
            for (int64_t d = 0; d < DV; d++) o[r * DV + d] += w * vf[j * DV + d];
        }
    }
}

template <class KV, int... Rs>
fattn_ops fill(fattn_ops ops, int t) {
    ((ops.scores[t][Rs - 1] = scores_portable<Rs, KV>), ...);
    ((ops.accum[t][Rs - 1] = accum_portable<Rs, KV>), ...);
    return ops;
}

fattn_ops make_ops() {
    fattn_ops ops = {};
    ops.mask    = mask_portable;
    ops.softmax = softmax_portable;
    ops = fill<kv_f16, 1, 2, 3, 4, 5, 6, 7, 8>(ops, (int) attn_kv_type::f16);
    ops = fill<kv_q8_0, 1, 2, 3, 4, 5, 6, 7, 8>(ops, (int) attn_kv_type::q8_0);
    ops.kconv[(int) attn_kv_type::f16]  = kconv_portable<kv_f16>;
    ops.kconv[(int) attn_kv_type::q8_0] = kconv_portable<kv_q8_0>;
    ops.vconv[(int) attn_kv_type::f16]  = vconv_portable<kv_f16>;
    ops.vconv[(int) attn_kv_type::q8_0] = vconv_portable<kv_q8_0>;
    ops.qk = qk_portable;
    ops.pv = pv_portable;
    return ops;
}

} // namespace

const fattn_ops * fattn_ops_portable() {
    static const fattn_ops ops = make_ops();
    return &ops;
}

} // namespace cpu
} // namespace llamafuse
