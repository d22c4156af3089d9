// Q5_K x Q8_K batch matmul on AVX-512 VNNI (see matmul_q5_k.h for where it runs and why).
//
// Layouts (ggml-common.h), plain rows, no repacking:
//   block_q5_K  d, dmin (f16); scales[12]: 8 6-bit scales and 8 6-bit mins (get_scale_min_k4);
//               qh[32]; qs[128]. Value 64j + 32h + l (j < 4, h < 2, l < 32) of sub-block
//               2j + h is d sc q - dmin m with q = (low nibble for h = 0, high for h = 1, of
//               qs[32j + l]) | (bit 2j + h of qh[l]) << 4.
//   block_q8_K  d (float), qs[256], bsums[16]: the sums of values 16g..16g+15.
//
// What ggml's 1-row kernel (ggml_vec_dot_q5_K_q8_K, its AVX2 form, which AVX-512 builds run)
// computes per block, exactly:
//   lane k of 8: L[k] = sum over sub-blocks sb of sc[sb] x (q . y over values 32 sb + 4k ..
//                32 sb + 4k + 3)
//   and the mins' term M = sum over sb of m[sb] x (the row's sum over sub-block sb)
// then acc[k] = fma(d_row x d, float(L[k]), acc[k]) and summs = fma(-d_row x dmin, float(M), summs),
// block after block, and the output is acc's horizontal sum in its fixed order plus summs.
// Here L comes from VPMADDUBSW + VPDPWSSD over two sub-blocks per 512-bit register (lanes k
// and k + 8 then add up to lane k), the weights unpacked once per block for up to 8 rows, and
// M for 8 rows at once; the float steps are the same, so every output is bit for bit ggml's.
#include "matmul_q5_k.h"

#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#define LLAMAFUSE_MATMUL_Q5_K 1
#include "matmul_plain_rows.h"
// GCC 12's avx512fintrin.h passes _mm512_undefined_*() as the unused source of unmasked
// intrinsics (extracti64x4), which -Wmaybe-uninitialized reports.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace llamafuse {
namespace cpu {

#if LLAMAFUSE_MATMUL_Q5_K
namespace {

struct block_q5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
};
static_assert(sizeof(block_q5_K) == 176, "ggml's block size");

// One weight block, unpacked for the rows: q[j] holds sub-blocks 2j and 2j + 1 as unsigned
// bytes (0..31), scale[j] each 32-bit lane's sub-block scale in both 16-bit halves (VPDPWSSD's
// operand), mins the 8 mins as 16-bit values, d and dmin the block's scales.
struct unpacked_block {
    __m512i q[4];
    __m512i scale[4];
    __m128i mins;
    float d, dmin;
};

inline void unpack(const block_q5_K & x, unpacked_block & u) {
    // ggml's unpacking of the 6-bit scales and mins (get_scale_min_k4, as its kernel does it)
    constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    uint32_t t[4];
    std::memcpy(t, x.scales, 12);
    t[3] = ((t[2] >> 4) & kmask2) | (((t[1] >> 6) & kmask3) << 4);
    const uint32_t mins_lo = t[1] & kmask1;
    t[1] = (t[2] & kmask2) | (((t[0] >> 6) & kmask3) << 4);
    t[2] = mins_lo;
    t[0] &= kmask1;
    const __m128i sc16 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int) t[1], (int) t[0]));
    u.mins = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int) t[3], (int) t[2]));
    const __m512i sc16z = _mm512_castsi128_si512(sc16);
    // 16-bit lane i of register j: sub-block 2j + i / 16
    const __m512i halves = _mm512_set_epi16(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int j = 0; j < 4; j++) u.scale[j] = _mm512_permutexvar_epi16(_mm512_add_epi16(halves, _mm512_set1_epi16((short) (2 * j))), sc16z);

    const __m512i m0f = _mm512_set1_epi8(0x0F), m10 = _mm512_set1_epi8(0x10);
    const __m512i nibble_shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);  // low half: low nibbles, high half: high
    const __m512i high = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) x.qh));
    for (int j = 0; j < 4; j++) {
        const __m512i low = _mm512_srlv_epi64(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) (x.qs + 32 * j))), nibble_shift);
        // qh's bit 2j (low half) and 2j + 1 (high half) to bit 4 of each byte: a 64-bit rotate
        // by less than 8 keeps a byte's bits in the byte
        const long long bit0 = 2 * j, bit1 = 2 * j + 1;
        const __m512i rotate = _mm512_set_epi64((68 - bit1) % 64, (68 - bit1) % 64, (68 - bit1) % 64, (68 - bit1) % 64,
                                                (68 - bit0) % 64, (68 - bit0) % 64, (68 - bit0) % 64, (68 - bit0) % 64);
        const __m512i h = _mm512_and_si512(_mm512_rolv_epi64(high, rotate), m10);
        u.q[j] = _mm512_ternarylogic_epi32(low, m0f, h, 0xEA);  // (low & 0x0F) | h
    }
    u.d = _cvtsh_ss(x.d);
    u.dmin = _cvtsh_ss(x.dmin);
}

// The mins' term of up to 8 rows at once, prepared per tile and block: sums[h] holds rows
// 4h..4h+3's 8 sub-block sums (pairs of bsums) as 16-bit values, a row per 128-bit lane, and
// neg_d their -d (rows past R: zeros, which add nothing).
struct rows_block {
    __m512i sums[2];
    __m256 neg_d;
};

void prepare_rows(int R, int nb, const char * acts, size_t by, rows_block * out) {
    for (int b = 0; b < nb; b++) {
        alignas(64) int16_t sums[8][8] = {};
        alignas(32) float neg_d[8] = {};
        for (int r = 0; r < R; r++) {
            const block_q8_K & y = reinterpret_cast<const block_q8_K *>(acts + (size_t) r * by)[b];
            const __m256i bsums = _mm256_loadu_si256((const __m256i *) y.bsums);
            _mm_store_si128((__m128i *) sums[r], _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1)));
            neg_d[r] = -y.d;
        }
        out[b].sums[0] = _mm512_load_si512(sums[0]);
        out[b].sums[1] = _mm512_load_si512(sums[4]);
        out[b].neg_d = _mm256_load_ps(neg_d);
    }
}

// Each of 8 rows' integer mins' term M = sum over sub-blocks of m x the row's sum, one per lane.
inline __m256i mins_terms(const rows_block & rb, __m128i mins) {
    const __m512i m = _mm512_broadcast_i32x4(mins);
    __m512i p0 = _mm512_madd_epi16(rb.sums[0], m), p1 = _mm512_madd_epi16(rb.sums[1], m);
    // each 128-bit lane's 4 sums to all its lanes
    p0 = _mm512_add_epi32(p0, _mm512_shuffle_epi32(p0, _MM_PERM_CDAB));
    p1 = _mm512_add_epi32(p1, _mm512_shuffle_epi32(p1, _MM_PERM_CDAB));
    p0 = _mm512_add_epi32(p0, _mm512_shuffle_epi32(p0, _MM_PERM_BADC));
    p1 = _mm512_add_epi32(p1, _mm512_shuffle_epi32(p1, _MM_PERM_BADC));
    const __m512i first_lanes = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 28, 24, 20, 16, 12, 8, 4, 0);
    return _mm512_castsi512_si256(_mm512_permutex2var_epi32(p0, first_lanes, p1));
}

// R rows (row r's blocks at acts + r * by) x nc weight rows (bx bytes apart); prefetch: the
// tile is the first over these weights.
template <int R>
void q5_k_tile(int nb, const char * weights, size_t bx, const char * acts, size_t by, float * s, size_t bs, int nc, bool prefetch) {
    thread_local std::vector<rows_block> rows;
    rows.resize(nb);
    prepare_rows(R, nb, acts, by, rows.data());
    for (int c = 0; c < nc; c++) {
        const auto * w = reinterpret_cast<const block_q5_K *>(weights + (size_t) c * bx);
        __m256 acc[R];
        for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
        __m256 summs = _mm256_setzero_ps();  // lane r: row r's
        for (int b = 0; b < nb; b++) {
            if (prefetch) prefetch_block(w + b, bx, sizeof(block_q5_K));
            unpacked_block u;
            unpack(w[b], u);
            // unrolled, so that acc[] stays in registers
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const block_q8_K & y = reinterpret_cast<const block_q8_K *>(acts + (size_t) r * by)[b];
                __m512i dot = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    const __m512i pairs = _mm512_maddubs_epi16(u.q[j], _mm512_loadu_si512(y.qs + 64 * j));
                    dot = _mm512_dpwssd_epi32(dot, pairs, u.scale[j]);
                }
                const __m256i lanes = _mm256_add_epi32(_mm512_castsi512_si256(dot), _mm512_extracti64x4_epi64(dot, 1));
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(y.d * u.d), _mm256_cvtepi32_ps(lanes), acc[r]);
            }
            // ggml's `summs += dmin * M` with dmin = -d_row x dmin: one FMA per row (GCC and
            // clang contract it by default; computed in two roundings, 9 of the kernel tests
            // fail), here for all rows at once, each lane as ggml's scalar
            const __m256 dmin = _mm256_mul_ps(rows[b].neg_d, _mm256_set1_ps(u.dmin));
            summs = _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(mins_terms(rows[b], u.mins)), summs);
        }
        alignas(32) float row_summs[8];
        _mm256_store_ps(row_summs, summs);
        for (int r = 0; r < R; r++) s[(size_t) r * bs + c] = hsum_float_8(acc[r]) + row_summs[r];
    }
}

// The row tiles, as matmul_plain_rows.h walks them.
struct tiles {
    static constexpr int block_values = 256;
    static constexpr size_t weight_block_bytes = sizeof(block_q5_K);
    static constexpr size_t act_block_bytes = sizeof(block_q8_K);
    template <int R>
    static void tile(int nb, const char * weights, size_t bx, const char * acts, size_t by, float * s, size_t bs, int nc, bool prefetch) {
        q5_k_tile<R>(nb, weights, bx, acts, by, s, bs, nc, prefetch);
    }
};

} // namespace

bool matmul_q5_k_available() {
    return true;
}

bool matmul_q5_k_rows(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nr, int nc) {
    return matmul_plain_rows<tiles>(n, s, bs, vx, bx, vy, by, nr, nc);
}

#else

bool matmul_q5_k_available() {
    return false;
}

bool matmul_q5_k_rows(int, float *, size_t, const void *, size_t, const void *, size_t, int, int) {
    return false;
}

#endif

} // namespace cpu
} // namespace llamafuse
