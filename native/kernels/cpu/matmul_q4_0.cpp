// Q4_0 x Q8_0 batch matmul on AVX-512 VNNI (see matmul_q4_0.h for where it runs and why).
//
// Layouts (ggml-cpu/repack.cpp, make_block_q4_0x8 and ggml_quantize_mat_q8_0_4x8):
//   block_q4_0x8  d[8] (f16, one per column), qs[128]: eight columns' 32-weight blocks in 8-byte
//                 chunks, column c's bytes 0-7 at qs[8c], its bytes 8-15 at qs[64 + 8c]; byte j
//                 of a block holds weight j (low nibble) and j + 16 (high), each XORed with 8.
//   block_q8_0x4  d[4] (f16, one per row), qs[128]: four rows' 32-value blocks in 8-byte
//                 chunks, row r's values 8k..8k+7 at qs[32k + 8r].
//   block_q8_0    d (f16), qs[32]: the rows past a multiple of 4, one plain row each.
//
// The products: VPDPBUSD multiplies unsigned bytes by signed ones, four per 32-bit lane. Each
// lane here is one column (16 columns, two repacked groups, per register), its unsigned bytes
// four of the column's weights as stored (0..15, the nibble q where the weight is q - 8); the
// signed operand is the row's matching four activations, the same for every lane (a broadcast
// load). So a block of 32 takes 8 instructions per row for 16 columns, and the -8 is paid once
// per row and block: the 32-bit sum starts at -8 x (the row's block sum). ggml's kernel instead
// sign-extends the weights and moves their signs onto the activations before every multiply.
//
// Rounding: per block the exact integer dot becomes a float and is added as
// acc = fma(float(dot), d_weight * d_row, acc), blocks in order, which is what ggml's gemv and
// gemm for this layout do; so every output is bit for bit theirs.
#include "matmul_q4_0.h"
#include "matmul_tiles.h"

#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#define LLAMAFUSE_MATMUL_Q4_0 1
// GCC 12's avx512fintrin.h passes _mm512_undefined_*() as the unused source of unmasked
// intrinsics (cvtph_ps, cvtepi32_ps, extracti64x4), which -Wmaybe-uninitialized reports.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "matmul_lanes.h"
#endif

namespace llamafuse {
namespace cpu {

#if LLAMAFUSE_MATMUL_Q4_0
namespace {

struct block_q4_0x8 {
    uint16_t d[8];
    uint8_t qs[128];
};
struct block_q8_0x4 {
    uint16_t d[4];
    int8_t qs[128];
};
struct block_q8_0 {
    uint16_t d;
    int8_t qs[32];
};
static_assert(sizeof(block_q4_0x8) == 144 && sizeof(block_q8_0x4) == 136 && sizeof(block_q8_0) == 34, "ggml's block sizes");

// 8 x 144 bytes ahead per group: the best of 0/4/8/16/32 with 2 threads streaming 151 MB on
// Zen 4 (about 15% over none)
constexpr int PREFETCH_BLOCKS = 8;

// A row's block, prepared once per call: its scale as float and -8 x the sum of its values.
struct row_block {
    float d;
    int32_t corr;
};

inline float f16_to_f32(uint16_t h) {
    return _cvtsh_ss(h);
}

// pre[row * nb + b] for every row and block of the call's activations: groups of 4 rows, then
// the plain rows.
void prepare_rows(const block_q8_0x4 * a, int groups, const block_q8_0 * plain, int rest, int nb, row_block * pre) {
    const __m512i ones = _mm512_set1_epi8(1);
    for (int g = 0; g < groups; g++) {
        for (int b = 0; b < nb; b++) {
            const block_q8_0x4 & blk = a[(size_t) g * nb + b];
            // lane 2r + h (+ 8 for values 8..15 and 24..31): four of row r's values
            __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_loadu_si512(blk.qs));
            sums = _mm512_dpbusd_epi32(sums, ones, _mm512_loadu_si512(blk.qs + 64));
            const __m256i half = _mm256_add_epi32(_mm512_castsi512_si256(sums), _mm512_extracti64x4_epi64(sums, 1));
            int32_t lane[8];
            _mm256_storeu_si256((__m256i *) lane, half);
            for (int r = 0; r < 4; r++) {
                row_block & p = pre[(size_t) (4 * g + r) * nb + b];
                p.d = f16_to_f32(blk.d[r]);
                p.corr = -8 * (lane[2 * r] + lane[2 * r + 1]);
            }
        }
    }
    for (int i = 0; i < rest; i++) {
        for (int b = 0; b < nb; b++) {
            const block_q8_0 & blk = plain[(size_t) i * nb + b];
            int32_t sum = 0;
            for (int8_t v : blk.qs) sum += v;
            row_block & p = pre[(size_t) (4 * groups + i) * nb + b];
            p.d = f16_to_f32(blk.d);
            p.corr = -8 * sum;
        }
    }
}

// Four weights of each of 16 columns as unsigned bytes: the stored nibbles (low or high) of
// the packed bytes, XORed back with 8. ternlog 0x6A is (x & 0x0F) ^ 0x08.
inline __m512i low_nibbles(__m512i packed, __m512i m0f, __m512i m08) {
    return _mm512_ternarylogic_epi32(packed, m0f, m08, 0x6A);
}
inline __m512i high_nibbles(__m512i packed, __m512i m0f, __m512i m08) {
    return _mm512_ternarylogic_epi32(_mm512_srli_epi16(packed, 4), m0f, m08, 0x6A);
}

// The first value of row m's block b: rows in q8_0x4 groups (from a group's first row), or
// plain q8_0 rows.
template <bool Grouped>
inline const int8_t * row_values(const void * rows, int m, int nb, int b) {
    if constexpr (Grouped) return static_cast<const block_q8_0x4 *>(rows)[(size_t) (m / 4) * nb + b].qs + 8 * (m % 4);
    else return static_cast<const block_q8_0 *>(rows)[(size_t) m * nb + b].qs;
}

// R rows x 16 columns (groups wa and wb; wb == wa when only 8 columns are left, of which only
// the first 8 are stored). Grouped: the rows are whole q8_0x4 groups; else plain q8_0 rows.
// prefetch: the tile is the first over these columns (later ones find them in cache).
template <int R, bool Grouped>
void tile(int nb, const block_q4_0x8 * wa, const block_q4_0x8 * wb, const void * rows,
          const row_block * pre, float * s, size_t bs, bool only8, bool prefetch) {
    static_assert(!Grouped || R % 4 == 0, "grouped rows come in fours");
    constexpr const int * off = Grouped ? GROUPED_OFFSETS : PLAIN_OFFSETS;
    const __m512i m0f = _mm512_set1_epi8(0x0F);
    const __m512i m08 = _mm512_set1_epi8(0x08);

    __m512 acc[R];
    for (int m = 0; m < R; m++) acc[m] = _mm512_setzero_ps();

    for (int b = 0; b < nb; b++) {
        // The weights stream from memory once per step of a few rows, and the hardware
        // prefetchers alone leave the tile waiting on them: fetch both groups 8 blocks ahead
        // (past the last block these are the next groups' first, which come next).
        if (prefetch) {
            // addresses as integers: past the last group they may point beyond the tensor
            // (a prefetch never faults, but such a pointer would be undefined)
            const uintptr_t ahead = (uintptr_t) (b + PREFETCH_BLOCKS) * sizeof(block_q4_0x8);
            for (uintptr_t line = 0; line < sizeof(block_q4_0x8); line += 64) {
                _mm_prefetch((const char *) ((uintptr_t) wa + ahead + line), _MM_HINT_T0);
                _mm_prefetch((const char *) ((uintptr_t) wb + ahead + line), _MM_HINT_T0);
            }
        }
        // one column per lane (matmul_lanes.h), four of its packed bytes:
        const __m512i a0 = _mm512_loadu_si512(wa[b].qs), a1 = _mm512_loadu_si512(wa[b].qs + 64);
        const __m512i b0 = _mm512_loadu_si512(wb[b].qs), b1 = _mm512_loadu_si512(wb[b].qs + 64);
        const __m512i p0 = columns_h0(a0, b0);  // bytes 0-3:   weights 0-3, 16-19
        const __m512i p1 = columns_h1(a0, b0);  // bytes 4-7:   weights 4-7, 20-23
        const __m512i p2 = columns_h0(a1, b1);  // bytes 8-11:  weights 8-11, 24-27
        const __m512i p3 = columns_h1(a1, b1);  // bytes 12-15: weights 12-15, 28-31
        const __m512i w[8] = {
            low_nibbles(p0, m0f, m08), low_nibbles(p1, m0f, m08), low_nibbles(p2, m0f, m08), low_nibbles(p3, m0f, m08),
            high_nibbles(p0, m0f, m08), high_nibbles(p1, m0f, m08), high_nibbles(p2, m0f, m08), high_nibbles(p3, m0f, m08),
        };
        __m128i da, db;
        std::memcpy(&da, wa[b].d, 16);
        std::memcpy(&db, wb[b].d, 16);
        const __m512 dw = _mm512_cvtph_ps(_mm256_set_m128i(db, da));

        // unrolled, so that acc[] stays in registers (GCC keeps the row loop otherwise)
#pragma GCC unroll 8
        for (int m = 0; m < R; m++) {
            const int8_t * q = row_values<Grouped>(rows, m, nb, b);
            const row_block & p = pre[(size_t) m * nb + b];
            __m512i dot = _mm512_set1_epi32(p.corr);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) dot = _mm512_dpbusd_epi32(dot, w[j], bcast32(q + off[j]));
            acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, _mm512_set1_ps(p.d)), acc[m]);
        }
    }
    for (int m = 0; m < R; m++) {
        if (only8) _mm512_mask_storeu_ps(s + (size_t) m * bs, 0x00FF, acc[m]);
        else _mm512_storeu_ps(s + (size_t) m * bs, acc[m]);
    }
}

// One column tile of a chunk (for_each_row_tile walks its rows): rows<R, Grouped>(y) runs the
// tile of R rows from row y.
struct column_tile {
    int nb;
    const block_q4_0x8 * wa, * wb;
    const block_q8_0x4 * grouped;
    const void * plain;
    const row_block * pre;
    float * out;
    size_t bs;
    bool only8;
    template <int R, bool Grouped>
    void rows(int y) const {
        const void * first = Grouped ? (const void *) (grouped + (size_t) (y / 4) * nb) : plain;
        tile<R, Grouped>(nb, wa, wb, first, pre + (size_t) y * nb, out + (size_t) y * bs, bs, only8, y == 0);
    }
};

} // namespace

bool matmul_q4_0_available() {
    return true;
}

bool matmul_q4_0_gemm(int n, float * s, size_t bs, const void * vx, const void * vy, int nr, int nc) {
    // One row (a single stream's decode step) stays on ggml's 1-row kernel: it streams the
    // weights as fast as this one does (2 threads, 151 MB of weights: 6.6-7.1 against 7.0-7.2
    // ms), and from 2 rows on this one reads them once where ggml reads them once per row.
    if (n <= 0 || n % 32 != 0 || nr < 2 || nc <= 0 || nc % 8 != 0) return false;
    const int nb = n / 32;
    const auto * w = static_cast<const block_q4_0x8 *>(vx);
    const int groups = nr / 4, rest = nr % 4;
    const auto * grouped = static_cast<const block_q8_0x4 *>(vy);
    const auto * plain = reinterpret_cast<const block_q8_0 *>(grouped + (size_t) groups * nb);

    // ggml calls this once per chunk of columns, with every row: the rows' sums are taken once
    // per call (about 1% of an 8-stream decode step in a profile), in a buffer each thread keeps.
    thread_local std::vector<row_block> pre;
    pre.resize((size_t) nr * nb);
    prepare_rows(grouped, groups, plain, rest, nb, pre.data());

    const int col_groups = nc / 8;
    for (int x = 0; x < col_groups; x += 2) {
        const block_q4_0x8 * wa = w + (size_t) x * nb;
        const bool only8 = x + 1 == col_groups;
        const block_q4_0x8 * wb = only8 ? wa : wa + nb;
        float * out = s + (size_t) x * 8;
        const column_tile run{nb, wa, wb, grouped, plain, pre.data(), out, bs, only8};
        for_each_row_tile(groups, rest, run);
    }
    return true;
}

#else

bool matmul_q4_0_available() {
    return false;
}

bool matmul_q4_0_gemm(int, float *, size_t, const void *, const void *, int, int) {
    return false;
}

#endif

} // namespace cpu
} // namespace llamafuse
