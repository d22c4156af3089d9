// Q4_K x Q8_K batch matmul on AVX-512 VNNI (see matmul_q4_k.h for where it runs and why).
//
// A Q4_K super-block holds 256 weights as 8 sub-blocks of 32: weight = d x sc x q - dmin x mn,
// with q a nibble (0..15) and sc, mn 6-bit per sub-block. Layouts (ggml-cpu/repack.cpp,
// make_block_q4_Kx8 and ggml_quantize_mat_q8_K_4x8):
//   block_q4_Kx8  d[8], dmin[8] (f16, per column); scales[96]: sub-block sb's 8 scales and 8
//                 mins packed in 12 bytes at 12 sb; qs[1024]: column c's Q4_K byte t at
//                 qs[64 (t / 8) + 8c + t % 8], byte t = 32g + k holding weight k of sub-block 2g
//                 (low nibble) and of sub-block 2g + 1 (high).
//   block_q8_Kx4  d[4] (float), qs[1024]: row r's value e at qs[32 (e / 8) + 8r + e % 8];
//                 bsums[64]: row r's sum of values 16G..16G+15 at 16 (G / 4) + 4r + G % 4.
//   block_q8_K    d (float), qs[256], bsums[16]: the rows past a multiple of 4, one each.
//
// As in matmul_q4_0, each 32-bit lane of VPDPBUSD is one of 16 columns (two groups gathered by
// two permutes), its unsigned bytes four nibbles, the signed operand four of the row's values,
// broadcast. Per row and super-block, as ggml's 1-row kernel computes them (exact integers):
//   dot = sum over sub-blocks of sc x (sub-block's dot), min = sum of mn x (row's sub-block sum)
// and the floats: acc = fma(float(dot), d x d_row, acc), acc_min = fma(float(min), dmin x
// d_row, acc_min), out = acc - acc_min; so every output is bit for bit that kernel's (ggml's
// batch kernel for this layout rounds differently).
#include "matmul_q4_k.h"
#include "matmul_tiles.h"

#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#define LLAMAFUSE_MATMUL_Q4_K 1
// GCC 12's avx512fintrin.h passes _mm512_undefined_*() as the unused source of unmasked
// intrinsics (cvtph_ps, cvtepi32_ps), which -Wmaybe-uninitialized reports.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "matmul_lanes.h"
#endif

namespace llamafuse {
namespace cpu {

#if LLAMAFUSE_MATMUL_Q4_K
namespace {

struct block_q4_Kx8 {
    uint16_t d[8];
    uint16_t dmin[8];
    uint8_t scales[96];
    uint8_t qs[1024];
};
struct block_q8_Kx4 {
    float d[4];
    int8_t qs[1024];
    int16_t bsums[64];
};
struct block_q8_K {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
};
static_assert(sizeof(block_q4_Kx8) == 1152 && sizeof(block_q8_Kx4) == 1168 && sizeof(block_q8_K) == 292, "ggml's block sizes");


// A column group's super-block, unpacked once per call: the 6-bit scales sc[sb][c] and mins
// mn[sb][c] as bytes.
struct col_block {
    uint8_t sc[8][8];
    uint8_t mn[8][8];
};

// A row's super-block: its scale, and its sums of sub-blocks 2i and 2i + 1 as int16 pairs.
struct row_block {
    float d;
    int32_t sums[4];
};

// ggml's unpacking of the 6-bit values (arch/x86/repack.cpp), for all 8 sub-blocks at once:
// sub-block sb's 12 bytes are dwords u0, u1, u2 at 3 sb; its 8 scales are bytes of
// u0 & 0x3f3f3f3f and (u2 & 0x0f0f0f0f) | ((u0 >> 6) & 0x03030303) << 4, its 8 mins bytes of
// u1 & 0x3f3f3f3f and ((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 6) & 0x03030303) << 4.
void unpack_scales(const block_q4_Kx8 & w, col_block & out) {
    const __m512i lo16 = _mm512_loadu_si512(w.scales);  // dwords 0-15
    const __m512i hi8 = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) (w.scales + 64)));  // 16-23
    const __m512i u0 = _mm512_permutex2var_epi32(lo16, _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 21, 18, 15, 12, 9, 6, 3, 0), hi8);
    const __m512i u1 = _mm512_permutex2var_epi32(lo16, _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 22, 19, 16, 13, 10, 7, 4, 1), hi8);
    const __m512i u2 = _mm512_permutex2var_epi32(lo16, _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 23, 20, 17, 14, 11, 8, 5, 2), hi8);
    const __m512i k1 = _mm512_set1_epi32(0x3f3f3f3f), k2 = _mm512_set1_epi32(0x0f0f0f0f), k3 = _mm512_set1_epi32(0x03030303);
    const __m512i sc_lo = _mm512_and_si512(u0, k1);
    const __m512i sc_hi = _mm512_or_si512(_mm512_and_si512(u2, k2), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), k3), 4));
    const __m512i mn_lo = _mm512_and_si512(u1, k1);
    const __m512i mn_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), k2), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), k3), 4));
    // out.sc[sb] = (sc_lo[sb], sc_hi[sb]) as two dwords, sub-blocks in order
    const __m512i interleave = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    _mm512_storeu_si512(out.sc, _mm512_permutex2var_epi32(sc_lo, interleave, sc_hi));
    _mm512_storeu_si512(out.mn, _mm512_permutex2var_epi32(mn_lo, interleave, mn_hi));
}

inline int32_t pair16(int32_t lo, int32_t hi) {
    return (int32_t) (((uint32_t) lo & 0xFFFF) | ((uint32_t) hi << 16));
}

void prepare_rows(const block_q8_Kx4 * a, int groups, const block_q8_K * plain, int rest, int nb, row_block * pre) {
    for (int g = 0; g < groups; g++) {
        for (int b = 0; b < nb; b++) {
            const block_q8_Kx4 & blk = a[(size_t) g * nb + b];
            for (int r = 0; r < 4; r++) {
                row_block & p = pre[(size_t) (4 * g + r) * nb + b];
                p.d = blk.d[r];
                int32_t sums[8];
                for (int sb = 0; sb < 8; sb++) {
                    const int g16 = 2 * sb;  // the sub-block's two groups of 16: g16, g16 + 1
                    sums[sb] = blk.bsums[16 * (g16 / 4) + 4 * r + g16 % 4] + blk.bsums[16 * (g16 / 4) + 4 * r + g16 % 4 + 1];
                }
                for (int i = 0; i < 4; i++) p.sums[i] = pair16(sums[2 * i], sums[2 * i + 1]);
            }
        }
    }
    for (int i = 0; i < rest; i++) {
        for (int b = 0; b < nb; b++) {
            const block_q8_K & blk = plain[(size_t) i * nb + b];
            row_block & p = pre[(size_t) (4 * groups + i) * nb + b];
            p.d = blk.d;
            for (int k = 0; k < 4; k++) {
                p.sums[k] = pair16(blk.bsums[4 * k] + blk.bsums[4 * k + 1], blk.bsums[4 * k + 2] + blk.bsums[4 * k + 3]);
            }
        }
    }
}

// 16 bytes: two column groups' 8 (b's repeat a's when only 8 columns are left)
inline __m128i bytes16(const uint8_t * a, const uint8_t * b) {
    return _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *) a), _mm_loadl_epi64((const __m128i *) b));
}

// Sub-block sb's first value of row m in super-block b.
template <bool Grouped>
inline const int8_t * row_values(const void * rows, int m, int nb, int b, int sb) {
    if constexpr (Grouped) return static_cast<const block_q8_Kx4 *>(rows)[(size_t) (m / 4) * nb + b].qs + 128 * sb + 8 * (m % 4);
    else return static_cast<const block_q8_K *>(rows)[(size_t) m * nb + b].qs + 32 * sb;
}

// R rows x 16 columns (groups wa, wb and their unpacked scales ca, cb; wb == wa when only 8
// columns are left, of which only the first 8 are stored). first: the first tile over these
// columns, which prefetches their weights (later ones find them in cache) and unpacks their
// scales into ca, cb (while the block is in cache) for the later ones.
template <int R, bool Grouped>
void tile(int nb, const block_q4_Kx8 * wa, const block_q4_Kx8 * wb, col_block * ca, col_block * cb,
          const void * rows, const row_block * pre, float * s, size_t bs, bool only8, bool first) {
    static_assert(!Grouped || R % 4 == 0, "grouped rows come in fours");
    constexpr const int * off = Grouped ? GROUPED_OFFSETS : PLAIN_OFFSETS;
    const __m512i m0f = _mm512_set1_epi8(0x0F);

    __m512 acc[R], acc_min[R];
    for (int m = 0; m < R; m++) acc[m] = acc_min[m] = _mm512_setzero_ps();

    for (int b = 0; b < nb; b++) {
        if (first) {
            if (b + 1 < nb) {
                for (int line = 0; line < (int) sizeof(block_q4_Kx8); line += 64) {
                    _mm_prefetch((const char *) (wa + b + 1) + line, _MM_HINT_T0);
                    _mm_prefetch((const char *) (wb + b + 1) + line, _MM_HINT_T0);
                }
            }
            unpack_scales(wa[b], ca[b]);
            if (!only8) unpack_scales(wb[b], cb[b]);
        }
        __m512i dot[R];
        for (int m = 0; m < R; m++) dot[m] = _mm512_setzero_si512();
        for (int g = 0; g < 4; g++) {
            // sub-blocks 2g (low nibbles) and 2g + 1 (high) of 16 columns, one per lane
            // (matmul_lanes.h): lo[j], hi[j] hold each column's weights 4j..4j+3
            __m512i lo[8], hi[8];
            for (int u = 0; u < 4; u++) {
                const __m512i a = _mm512_loadu_si512(wa[b].qs + 64 * (4 * g + u));
                const __m512i c = _mm512_loadu_si512(wb[b].qs + 64 * (4 * g + u));
                const __m512i pe = columns_h0(a, c);
                const __m512i po = columns_h1(a, c);
                lo[2 * u] = _mm512_and_si512(pe, m0f);
                lo[2 * u + 1] = _mm512_and_si512(po, m0f);
                hi[2 * u] = _mm512_and_si512(_mm512_srli_epi16(pe, 4), m0f);
                hi[2 * u + 1] = _mm512_and_si512(_mm512_srli_epi16(po, 4), m0f);
            }
            const __m512i sc_lo = _mm512_cvtepu8_epi32(bytes16(ca[b].sc[2 * g], cb[b].sc[2 * g]));
            const __m512i sc_hi = _mm512_cvtepu8_epi32(bytes16(ca[b].sc[2 * g + 1], cb[b].sc[2 * g + 1]));
#pragma GCC unroll 8
            for (int m = 0; m < R; m++) {
                const int8_t * q_lo = row_values<Grouped>(rows, m, nb, b, 2 * g);
                const int8_t * q_hi = row_values<Grouped>(rows, m, nb, b, 2 * g + 1);
                __m512i d_lo = _mm512_setzero_si512(), d_hi = _mm512_setzero_si512();
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    d_lo = _mm512_dpbusd_epi32(d_lo, lo[j], bcast32(q_lo + off[j]));
                    d_hi = _mm512_dpbusd_epi32(d_hi, hi[j], bcast32(q_hi + off[j]));
                }
                dot[m] = _mm512_add_epi32(dot[m], _mm512_add_epi32(_mm512_mullo_epi32(d_lo, sc_lo), _mm512_mullo_epi32(d_hi, sc_hi)));
            }
        }
        // per column, the mins of sub-blocks 2p and 2p + 1 as one lane of two int16
        __m512i mn[4];
        for (int p = 0; p < 4; p++) {
            const __m128i even_sb = bytes16(ca[b].mn[2 * p], cb[b].mn[2 * p]), odd_sb = bytes16(ca[b].mn[2 * p + 1], cb[b].mn[2 * p + 1]);
            const __m256i lo = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(even_sb, odd_sb));
            const __m256i hi = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(even_sb, odd_sb));
            mn[p] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        }
        __m128i da, db, ma, mb;
        std::memcpy(&da, wa[b].d, 16);
        std::memcpy(&db, wb[b].d, 16);
        std::memcpy(&ma, wa[b].dmin, 16);
        std::memcpy(&mb, wb[b].dmin, 16);
        const __m512 dw = _mm512_cvtph_ps(_mm256_set_m128i(db, da));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_set_m128i(mb, ma));
#pragma GCC unroll 8
        for (int m = 0; m < R; m++) {
            const row_block & p = pre[(size_t) m * nb + b];
            __m512i mins = _mm512_setzero_si512();
            for (int i = 0; i < 4; i++) mins = _mm512_dpwssd_epi32(mins, mn[i], _mm512_set1_epi32(p.sums[i]));
            const __m512 row_d = _mm512_set1_ps(p.d);
            acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[m]), _mm512_mul_ps(dw, row_d), acc[m]);
            acc_min[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mins), _mm512_mul_ps(dmin, row_d), acc_min[m]);
        }
    }
    for (int m = 0; m < R; m++) {
        const __m512 out = _mm512_sub_ps(acc[m], acc_min[m]);
        if (only8) _mm512_mask_storeu_ps(s + (size_t) m * bs, 0x00FF, out);
        else _mm512_storeu_ps(s + (size_t) m * bs, out);
    }
}

// One column tile of a chunk (for_each_row_tile walks its rows): rows<R, Grouped>(y) runs the
// tile of R rows from row y.
struct column_tile {
    int nb;
    const block_q4_Kx8 * wa, * wb;
    col_block * ca, * cb;
    const block_q8_Kx4 * grouped;
    const void * plain;
    const row_block * pre;
    float * out;
    size_t bs;
    bool only8;
    template <int R, bool Grouped>
    void rows(int y) const {
        const void * first = Grouped ? (const void *) (grouped + (size_t) (y / 4) * nb) : plain;
        tile<R, Grouped>(nb, wa, wb, ca, cb, first, pre + (size_t) y * nb, out + (size_t) y * bs, bs, only8, y == 0);
    }
};

} // namespace

bool matmul_q4_k_available() {
    return true;
}

bool matmul_q4_k_gemm(int n, float * s, size_t bs, const void * vx, const void * vy, int nr, int nc) {
    // One row stays on ggml's 1-row kernel (a single stream's decode step streams the weights).
    if (n <= 0 || n % 256 != 0 || nr < 2 || nc <= 0 || nc % 8 != 0) return false;
    const int nb = n / 256;
    const auto * w = static_cast<const block_q4_Kx8 *>(vx);
    const int groups = nr / 4, rest = nr % 4;
    const auto * grouped = static_cast<const block_q8_Kx4 *>(vy);
    const auto * plain = reinterpret_cast<const block_q8_K *>(grouped + (size_t) groups * nb);
    const int col_groups = nc / 8;

    // ggml calls this once per chunk of columns, with every row: the rows' sums are taken once
    // per call and the columns' scales unpacked once (by a column tile's first row tile), into
    // buffers each thread keeps.
    thread_local std::vector<col_block> cols;
    thread_local std::vector<row_block> pre;
    cols.resize((size_t) col_groups * nb);
    pre.resize((size_t) nr * nb);
    prepare_rows(grouped, groups, plain, rest, nb, pre.data());

    for (int x = 0; x < col_groups; x += 2) {
        const bool only8 = x + 1 == col_groups;
        const block_q4_Kx8 * wa = w + (size_t) x * nb;
        const block_q4_Kx8 * wb = only8 ? wa : wa + nb;
        col_block * ca = cols.data() + (size_t) x * nb;
        col_block * cb = only8 ? ca : ca + nb;
        float * out = s + (size_t) x * 8;
        const column_tile run{nb, wa, wb, ca, cb, grouped, plain, pre.data(), out, bs, only8};
        for_each_row_tile(groups, rest, run);
    }
    return true;
}

#else

bool matmul_q4_k_available() {
    return false;
}

bool matmul_q4_k_gemm(int, float *, size_t, const void *, const void *, int, int) {
    return false;
}

#endif

} // namespace cpu
} // namespace llamafuse
