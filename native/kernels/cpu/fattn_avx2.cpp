// AVX2/FMA/F16C inner loops. Compiled for those extensions by target pragma (so a portable
// build still carries them) and chosen at run time only when the CPU has them.
#include "fattn_common.h"
#include "fattn_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>
#include <type_traits>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace llamafuse {
namespace cpu {
namespace {

struct kv_f16 {
    // 8 values starting at d0 (d0 % 8 == 0)
    static inline __m256 load8(const char * row, int64_t d0) {
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) ((const uint16_t *) row + d0)));
    }
};

struct kv_q8_0 {
    // the block scale of element d0, broadcast (convert it once per block, not per 8 values)
    static inline __m256 scale(const char * row, int64_t d0) {
        return _mm256_set1_ps(_cvtsh_ss(((const block_q8_0 *) row + d0 / QK8_0)->d));
    }
    static inline __m256 load8(const char * row, int64_t d0, __m256 d) {
        const block_q8_0 * b = (const block_q8_0 *) row + d0 / QK8_0;
        const __m128i q = _mm_loadl_epi64((const __m128i *) (b->qs + d0 % QK8_0));
        return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
    }
    static inline __m256 load8(const char * row, int64_t d0) { return load8(row, d0, scale(row, d0)); }
};

template <class KV> constexpr bool is_q8_0 = std::is_same<KV, kv_q8_0>::value;

inline float hsum(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

// {Σa[0], ..., Σa[7]}: eight horizontal sums in one vector
inline __m256 hsum8(const __m256 * a) {
    const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// e^x, Cephes-style polynomial (about 1 ulp); exactly 0 below -87.3 (so e^-inf == 0).
inline __m256 exp8(__m256 x) {
    const __m256 zero_mask = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
    fx = _mm256_floor_ps(fx);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(zero_mask, y);
}

bool mask_avx2(const uint16_t * const * mrow, const float * slope, int R, int nk, float * mv) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 any = _mm256_setzero_ps();
    for (int r = 0; r < R; r++) {
        const __m256 sl = _mm256_set1_ps(slope[r]);
        int j = 0;
        for (; j + 8 <= nk; j += 8) {
            const __m256 x = _mm256_mul_ps(sl, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (mrow[r] + j))));
            _mm256_storeu_ps(mv + r * KB + j, x);
            any = _mm256_or_ps(any, _mm256_cmp_ps(x, ninf, _CMP_NEQ_UQ));
        }
        for (; j < nk; j++) {
            const float x = slope[r] * _cvtsh_ss(mrow[r][j]);
            mv[r * KB + j] = x;
            if (x != -INFINITY) any = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        }
    }
    return _mm256_movemask_ps(any) != 0;
}

// R rows × U keys per step: R·U independent accumulators (8 when R divides 8), each K/V
// vector loaded once and used by all R rows.
// Lines [base + len·j0/KB, base + len·j1/KB), each line once (start aligned down to 64 bytes).
inline void prefetch_part(const char * base, size_t len, int j0, int j1) {
    const uintptr_t a = ((uintptr_t) base + len * j0 / KB) & ~(uintptr_t) 63;
    const uintptr_t e = (uintptr_t) base + len * j1 / KB;
    for (uintptr_t p = a; p < e; p += 64) _mm_prefetch((const char *) p, _MM_HINT_T1);
}

template <int R, int U, class KV>
inline void scores_step(const float * qs, int64_t DK, const char * k, size_t k_nb1, int j, float * s, const prefetch_range * pf) {
    if (pf) {
        prefetch_part(pf->k, pf->k_len, j, j + U);
        prefetch_part(pf->v, pf->v_len, j, j + U);
    }
    __m256 acc[R * U];
    for (int i = 0; i < R * U; i++) acc[i] = _mm256_setzero_ps();
    __m256 sc[U];
    for (int u = 0; u < U; u++) sc[u] = _mm256_setzero_ps();  // set at d % 32 == 0 before use
    for (int64_t d = 0; d < DK; d += 8) {
        __m256 kv[U];
        if constexpr (is_q8_0<KV>) {
            if (d % QK8_0 == 0) for (int u = 0; u < U; u++) sc[u] = KV::scale(k + (j + u) * k_nb1, d);
            for (int u = 0; u < U; u++) kv[u] = KV::load8(k + (j + u) * k_nb1, d, sc[u]);
        } else {
            for (int u = 0; u < U; u++) kv[u] = KV::load8(k + (j + u) * k_nb1, d);
        }
        for (int r = 0; r < R; r++) {
            const __m256 q = _mm256_loadu_ps(qs + r * DK + d);
            for (int u = 0; u < U; u++) acc[r * U + u] = _mm256_fmadd_ps(q, kv[u], acc[r * U + u]);
        }
    }
    if constexpr (R * U == 8) {
        alignas(32) float out[8];
        _mm256_store_ps(out, hsum8(acc));
        for (int r = 0; r < R; r++) for (int u = 0; u < U; u++) s[r * KB + j + u] = out[r * U + u];
    } else {
        for (int r = 0; r < R; r++) for (int u = 0; u < U; u++) s[r * KB + j + u] = hsum(acc[r * U + u]);
    }
}

template <int R, class KV>
void scores_avx2(const float * qs, int64_t DK, const char * k, size_t k_nb1, int nk, float * s, const prefetch_range * pf) {
    constexpr int U = R >= 8 ? 1 : 8 / R;
    int j = 0;
    for (; j + U <= nk; j += U) scores_step<R, U, KV>(qs, DK, k, k_nb1, j, s, pf);
    for (; j < nk; j++) scores_step<R, 1, KV>(qs, DK, k, k_nb1, j, s, pf);
}

void softmax_avx2(float * s, const float * mv, float softcap, int R, int nk, float * m, float * l, float * o, int64_t DV) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int r = 0; r < R; r++) {
        float * row = s + r * KB;
        if (softcap != 0.0f) {
            // cap·tanh(x) = cap·sign(x)·(1 − e^{−2|x|}) / (1 + e^{−2|x|}); absolute error ~1e-7·cap
            const __m256 cap = _mm256_set1_ps(softcap), one = _mm256_set1_ps(1.0f);
            const __m256 sign = _mm256_set1_ps(-0.0f);
            int j = 0;
            for (; j + 8 <= nk; j += 8) {
                const __m256 x = _mm256_loadu_ps(row + j);
                const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), _mm256_andnot_ps(sign, x)));
                const __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
                _mm256_storeu_ps(row + j, _mm256_mul_ps(cap, _mm256_or_ps(t, _mm256_and_ps(sign, x))));
            }
            for (; j < nk; j++) row[j] = softcap * std::tanh(row[j]);
        }
        if (mv) {
            for (int j = 0; j < KB; j += 8) {
                const __m256 x  = _mm256_loadu_ps(row + j);
                const __m256 mk = _mm256_loadu_ps(mv + r * KB + j);
                // a masked key is -inf whatever its score (no NaN from inf - inf)
                _mm256_storeu_ps(row + j, _mm256_blendv_ps(_mm256_add_ps(x, mk), ninf, _mm256_cmp_ps(mk, ninf, _CMP_EQ_OQ)));
            }
        }
        for (int j = nk; j < KB; j++) row[j] = -INFINITY;  // pad so the vector loops see whole blocks
        __m256 bmv = ninf;
        for (int j = 0; j < KB; j += 8) bmv = _mm256_max_ps(bmv, _mm256_loadu_ps(row + j));
        float bm;
        {
            __m128 x = _mm_max_ps(_mm256_castps256_ps128(bmv), _mm256_extractf128_ps(bmv, 1));
            x = _mm_max_ps(x, _mm_movehl_ps(x, x));
            x = _mm_max_ss(x, _mm_movehdup_ps(x));
            bm = _mm_cvtss_f32(x);
        }
        if (bm == -INFINITY) {
            for (int j = 0; j < KB; j++) row[j] = 0.0f;
            continue;
        }
        if (bm > m[r]) {
            if (m[r] != -INFINITY) {
                const float alpha = std::exp(m[r] - bm);
                const __m256 a = _mm256_set1_ps(alpha);
                float * orow = o + r * DV;
                for (int64_t d = 0; d < DV; d += 8) _mm256_storeu_ps(orow + d, _mm256_mul_ps(a, _mm256_loadu_ps(orow + d)));
                l[r] *= alpha;
            }
            m[r] = bm;
        }
        const __m256 mm = _mm256_set1_ps(m[r]);
        __m256 sum = _mm256_setzero_ps();
        for (int j = 0; j < KB; j += 8) {
            const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), mm));
            _mm256_storeu_ps(row + j, e);
            sum = _mm256_add_ps(sum, e);
        }
        l[r] += hsum(sum);
    }
}

// o[r][d0 .. d0+8W) += Σ_j p[r][j]·v_j[d0 .. d0+8W): R·W accumulators in registers.
template <int R, int W, class KV>
inline void accum_cols(const float * p, const char * v, size_t v_nb1, int nk, float * o, int64_t DV, int64_t d0) {
    __m256 acc[R * W];
#pragma GCC unroll 16
    for (int i = 0; i < R * W; i++) acc[i] = _mm256_loadu_ps(o + (i / W) * DV + d0 + 8 * (i % W));
    for (int j = 0; j < nk; j++) {
        const char * row = v + j * v_nb1;
        __m256 vv[W];
        if constexpr (is_q8_0<KV>) {  // 8·W <= 32 and d0 % (8·W) == 0: one block, one scale
            const __m256 sc = KV::scale(row, d0);
#pragma GCC unroll 16
            for (int w = 0; w < W; w++) vv[w] = KV::load8(row, d0 + 8 * w, sc);
        } else {
#pragma GCC unroll 16
            for (int w = 0; w < W; w++) vv[w] = KV::load8(row, d0 + 8 * w);
        }
#pragma GCC unroll 16
        for (int i = 0; i < R * W; i++) acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + (i / W) * KB + j), vv[i % W], acc[i]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < R * W; i++) _mm256_storeu_ps(o + (i / W) * DV + d0 + 8 * (i % W), acc[i]);
}

template <int R, class KV>
void accum_avx2(const float * p, const char * v, size_t v_nb1, int nk, float * o, int64_t DV) {
    constexpr int W = R <= 2 ? 4 : R <= 4 ? 2 : 1;
    int64_t d = 0;
    for (; d + 8 * W <= DV; d += 8 * W) accum_cols<R, W, KV>(p, v, v_nb1, nk, o, DV, d);
    for (; d < DV; d += 8) accum_cols<R, 1, KV>(p, v, v_nb1, nk, o, DV, d);
}

// 8×8 transpose of r[0..7] in place (r[i] becomes column i).
inline void transpose8(__m256 * r) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

template <class KV>
void kconv_avx2(const char * k, size_t k_nb1, int nk, int64_t DK, float * kt) {
    for (int j0 = 0; j0 < KB; j0 += 8) {
        for (int64_t d = 0; d < DK; d += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) r[i] = j0 + i < nk ? KV::load8(k + (j0 + i) * k_nb1, d) : _mm256_setzero_ps();
            transpose8(r);
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(kt + (d + i) * KB + j0, r[i]);
        }
    }
}

template <class KV>
void vconv_avx2(const char * v, size_t v_nb1, int nk, int64_t DV, float * vf) {
    for (int j = 0; j < KB; j++) {
        for (int64_t d = 0; d < DV; d += 8) {
            _mm256_storeu_ps(vf + j * DV + d, j < nk ? KV::load8(v + j * v_nb1, d) : _mm256_setzero_ps());
        }
    }
}

// s[r][c0 .. c0+16) for RR rows: 2·RR accumulators; each kt vector feeds RR rows.
template <int RR>
inline void qk_rows(const float * qs, int64_t DK, const float * kt, float * s) {
    for (int c0 = 0; c0 < KB; c0 += 16) {
        __m256 acc[2 * RR];
#pragma GCC unroll 16
        for (int i = 0; i < 2 * RR; i++) acc[i] = _mm256_setzero_ps();
        for (int64_t d = 0; d < DK; d++) {
            const __m256 k0 = _mm256_loadu_ps(kt + d * KB + c0), k1 = _mm256_loadu_ps(kt + d * KB + c0 + 8);
#pragma GCC unroll 16
            for (int r = 0; r < RR; r++) {
                const __m256 q = _mm256_broadcast_ss(qs + r * DK + d);
                acc[2 * r]     = _mm256_fmadd_ps(q, k0, acc[2 * r]);
                acc[2 * r + 1] = _mm256_fmadd_ps(q, k1, acc[2 * r + 1]);
            }
        }
#pragma GCC unroll 16
        for (int r = 0; r < RR; r++) {
            _mm256_storeu_ps(s + r * KB + c0, acc[2 * r]);
            _mm256_storeu_ps(s + r * KB + c0 + 8, acc[2 * r + 1]);
        }
    }
}

void qk_avx2(const float * qs, int R, int64_t DK, const float * kt, float * s) {
    int r = 0;
    for (; r + 6 <= R; r += 6) qk_rows<6>(qs + r * DK, DK, kt, s + r * KB);
    for (; r + 2 <= R; r += 2) qk_rows<2>(qs + r * DK, DK, kt, s + r * KB);
    for (; r < R; r++) qk_rows<1>(qs + r * DK, DK, kt, s + r * KB);
}

// o[r][c0 .. c0+16) += Σ_j p[r][j]·vf[j][c0 .. c0+16) for RR rows.
template <int RR>
inline void pv_rows(const float * p, const float * vf, int64_t DV, float * o) {
    for (int64_t c0 = 0; c0 < DV; c0 += 16) {
        const bool two = c0 + 16 <= DV;  // DV % 8 == 0: the last step may be 8 wide
        __m256 acc[2 * RR];
#pragma GCC unroll 16
        for (int r = 0; r < RR; r++) {
            acc[2 * r]     = _mm256_loadu_ps(o + r * DV + c0);
            acc[2 * r + 1] = two ? _mm256_loadu_ps(o + r * DV + c0 + 8) : _mm256_setzero_ps();
        }
        for (int j = 0; j < KB; j++) {
            const __m256 v0 = _mm256_loadu_ps(vf + j * DV + c0);
            const __m256 v1 = two ? _mm256_loadu_ps(vf + j * DV + c0 + 8) : _mm256_setzero_ps();
#pragma GCC unroll 16
            for (int r = 0; r < RR; r++) {
                const __m256 w = _mm256_broadcast_ss(p + r * KB + j);
                acc[2 * r]     = _mm256_fmadd_ps(w, v0, acc[2 * r]);
                acc[2 * r + 1] = _mm256_fmadd_ps(w, v1, acc[2 * r + 1]);
            }
        }
#pragma GCC unroll 16
        for (int r = 0; r < RR; r++) {
            _mm256_storeu_ps(o + r * DV + c0, acc[2 * r]);
            if (two) _mm256_storeu_ps(o + r * DV + c0 + 8, acc[2 * r + 1]);
        }
    }
}

void pv_avx2(const float * p, int R, const float * vf, int64_t DV, float * o) {
    int r = 0;
    for (; r + 6 <= R; r += 6) pv_rows<6>(p + r * KB, vf, DV, o + r * DV);
    for (; r + 2 <= R; r += 2) pv_rows<2>(p + r * KB, vf, DV, o + r * DV);
    for (; r < R; r++) pv_rows<1>(p + r * KB, vf, DV, o + r * DV);
}

template <class KV, int... Rs>
fattn_ops fill(fattn_ops ops, int t) {
    ((ops.scores[t][Rs - 1] = scores_avx2<Rs, KV>), ...);
    ((ops.accum[t][Rs - 1] = accum_avx2<Rs, KV>), ...);
    return ops;
}

fattn_ops make_ops() {
    fattn_ops ops = {};
    ops.mask    = mask_avx2;
    ops.softmax = softmax_avx2;
    ops = fill<kv_f16, 1, 2, 3, 4, 5, 6, 7, 8>(ops, (int) attn_kv_type::f16);
    ops = fill<kv_q8_0, 1, 2, 3, 4, 5, 6, 7, 8>(ops, (int) attn_kv_type::q8_0);
    ops.kconv[(int) attn_kv_type::f16]  = kconv_avx2<kv_f16>;
    ops.kconv[(int) attn_kv_type::q8_0] = kconv_avx2<kv_q8_0>;
    ops.vconv[(int) attn_kv_type::f16]  = vconv_avx2<kv_f16>;
    ops.vconv[(int) attn_kv_type::q8_0] = vconv_avx2<kv_q8_0>;
    ops.qk = qk_avx2;
    ops.pv = pv_avx2;
    return ops;
}

} // namespace

const fattn_ops * fattn_ops_avx2() {
    static const fattn_ops ops = make_ops();
    return &ops;
}

} // namespace cpu
} // namespace llamafuse

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#else

namespace llamafuse {
namespace cpu {
const fattn_ops * fattn_ops_avx2() { return nullptr; }
} // namespace cpu
} // namespace llamafuse

#endif
