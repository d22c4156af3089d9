// Q8_0 x Q8_0 batch matmul on AVX-512 VNNI (see matmul_q8_0.h for where it runs and why).
//
// Layout (ggml-common.h), plain rows, no repacking: block_q8_0 d (f16), qs[32] (int8).
//
// What ggml's 1-row kernel (ggml_vec_dot_q8_0_q8_0, its AVX2 form, which AVX-512 builds run)
// and tinyBLAS both compute per (row, column), in 8 float lanes, block after block:
//   acc[k] = fma(d_w x d_row, float(L[k]), acc[k]),  L[k] = the exact dot of the block's
//   values 4k..4k+3,
// then the output is acc's horizontal sum in a fixed order (hsum_float_8). Both get L[k] from
// VPDPBUSD on |w| and the activations carrying w's signs, one 256-bit dot per (row, column,
// block). Here a 512-bit register holds two (row, column) pairs' 8 lanes: the two columns'
// blocks side by side (their magnitudes and signs taken once per block for all the rows), the
// row's block in both halves, given the weights' signs by a masked subtract. The integers are
// the same, the float steps are the same, so every output is bit for bit ggml's.
#include "matmul_q8_0.h"

#include <cstdint>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#define LLAMAFUSE_MATMUL_Q8_0 1
#include "matmul_plain_rows.h"
// GCC 12's avx512fintrin.h passes _mm512_undefined_*() as the unused source of unmasked
// intrinsics (extracti64x4), which -Wmaybe-uninitialized reports.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace llamafuse {
namespace cpu {

#if LLAMAFUSE_MATMUL_Q8_0
namespace {

struct block_q8_0 {
    uint16_t d;
    int8_t qs[32];
};
static_assert(sizeof(block_q8_0) == 34, "ggml's block size");

// A tile's row scales as floats, rows in fours per block: d[b * ROW_TILE + r] (zeros past the
// tile's R rows), for the scale products.
void prepare_scales(int R, int nb, const char * acts, size_t by, float * d) {
    for (int b = 0; b < nb; b++) {
        for (int r = 0; r < ROW_TILE; r++) {
            d[(size_t) b * ROW_TILE + r] = r < R ? _cvtsh_ss(reinterpret_cast<const block_q8_0 *>(acts + (size_t) r * by)[b].d) : 0.0f;
        }
    }
}

// Two weight columns' block, prepared for the rows: their values' magnitudes side by side,
// which of them are negative, and each half's scale in its 8 lanes.
struct column_pair {
    __m512i magnitude;
    __mmask64 negative;
    __m512 d;
};

inline column_pair prepare(const block_q8_0 & a, const block_q8_0 & b) {
    const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) a.qs)),
                                            _mm256_loadu_si256((const __m256i *) b.qs), 1);
    return { _mm512_abs_epi8(both), _mm512_movepi8_mask(both),
             _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16((short) b.d), _mm_set1_epi16((short) a.d))) };
}

// Row k's scale products from a pair's products with four rows (128-bit lane L: its column's
// scale times rows 0-3): each half's product with row k in its 8 lanes. One multiply per four
// rows and a shuffle per row, where VPDPBUSD and the FMA already keep Zen 4's multiply pipes
// busy.
inline __m512 row_products(__m512 four, int k) {
    switch (k) {
        case 0: return _mm512_shuffle_ps(four, four, 0x00);
        case 1: return _mm512_shuffle_ps(four, four, 0x55);
        case 2: return _mm512_shuffle_ps(four, four, 0xAA);
        default: return _mm512_shuffle_ps(four, four, 0xFF);
    }
}

// R rows (row r's blocks at acts + r * by, their scales at d + b * ROW_TILE + r) x P column
// pairs from weight column `col` (bx bytes apart).
// single: the last pair has one column (its second half repeats it and is not stored).
// prefetch: the tile is the first over these columns (see prefetch_block).
template <int R, int P>
void q8_0_group(int nb, const char * weights, size_t bx, const char * acts, size_t by, const float * d, float * s,
                size_t bs, bool single, bool prefetch) {
    const block_q8_0 * w[2 * P];
    for (int c = 0; c < 2 * P; c++) {
        const int col = single && c == 2 * P - 1 ? c - 1 : c;
        w[c] = reinterpret_cast<const block_q8_0 *>(weights + (size_t) col * bx);
    }
    __m512 acc[R][P];
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++) acc[r][p] = _mm512_setzero_ps();

    for (int b = 0; b < nb; b++) {
        if (prefetch) {
            // the next group's columns: the same block 2P rows on
            for (int c = 0; c < 2 * P; c++) prefetch_block(w[c] + b, 2 * P * bx, sizeof(block_q8_0));
        }
        column_pair pair[P];
        for (int p = 0; p < P; p++) pair[p] = prepare(w[2 * p][b], w[2 * p + 1][b]);
        __m512 four[P];
        // unrolled (r constant), so that acc[] stays in registers and row_products's switch goes
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            if (r % 4 == 0) {
                const __m512 rows_d = _mm512_broadcast_f32x4(_mm_loadu_ps(d + (size_t) b * ROW_TILE + r));
                for (int p = 0; p < P; p++) four[p] = _mm512_mul_ps(pair[p].d, rows_d);
            }
            const block_q8_0 & y = reinterpret_cast<const block_q8_0 *>(acts + (size_t) r * by)[b];
            const __m512i yv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) y.qs));
#pragma GCC unroll 4
            for (int p = 0; p < P; p++) {
                // the row's values with the weights' signs (VPDPBUSD: unsigned x signed)
                const __m512i signed_y = _mm512_mask_sub_epi8(yv, pair[p].negative, _mm512_setzero_si512(), yv);
                const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), pair[p].magnitude, signed_y);
                acc[r][p] = _mm512_fmadd_ps(row_products(four[p], r % 4), _mm512_cvtepi32_ps(dot), acc[r][p]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        for (int p = 0; p < P; p++) {
            float * out = s + (size_t) r * bs + 2 * p;
            out[0] = hsum_float_8(_mm512_castps512_ps256(acc[r][p]));
            if (!(single && p == P - 1)) {
                out[1] = hsum_float_8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[r][p]), 1)));
            }
        }
    }
}

// R rows against nc weight columns: groups of 4 columns, then a pair, then a single column.
template <int R>
void q8_0_tile(int nb, const char * weights, size_t bx, const char * acts, size_t by, float * s, size_t bs, int nc, bool prefetch) {
    thread_local std::vector<float> d;
    d.resize((size_t) nb * ROW_TILE);
    prepare_scales(R, nb, acts, by, d.data());
    int c = 0;
    for (; c + 4 <= nc; c += 4) q8_0_group<R, 2>(nb, weights + (size_t) c * bx, bx, acts, by, d.data(), s + c, bs, false, prefetch);
    if (c < nc) q8_0_group<R, 1>(nb, weights + (size_t) c * bx, bx, acts, by, d.data(), s + c, bs, nc - c == 1, prefetch);
    if (c + 2 < nc) q8_0_group<R, 1>(nb, weights + (size_t) (c + 2) * bx, bx, acts, by, d.data(), s + c + 2, bs, true, prefetch);
}

// The row tiles, as matmul_plain_rows.h walks them.
struct tiles {
    static constexpr int block_values = 32;
    static constexpr size_t weight_block_bytes = sizeof(block_q8_0);
    static constexpr size_t act_block_bytes = sizeof(block_q8_0);
    template <int R>
    static void tile(int nb, const char * weights, size_t bx, const char * acts, size_t by, float * s, size_t bs, int nc, bool prefetch) {
        q8_0_tile<R>(nb, weights, bx, acts, by, s, bs, nc, prefetch);
    }
};

} // namespace

bool matmul_q8_0_available() {
    return true;
}

bool matmul_q8_0_claims(int n, int nr) {
    return n > 0 && n % 32 == 0 && nr >= 2 && nr <= 16;
}

bool matmul_q8_0_rows(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nr, int nc) {
    return matmul_plain_rows<tiles>(n, s, bs, vx, bx, vy, by, nr, nc);
}

#else

bool matmul_q8_0_available() {
    return false;
}

bool matmul_q8_0_claims(int, int) {
    return false;
}

bool matmul_q8_0_rows(int, float *, size_t, const void *, size_t, const void *, size_t, int, int) {
    return false;
}

#endif

} // namespace cpu
} // namespace llamafuse
