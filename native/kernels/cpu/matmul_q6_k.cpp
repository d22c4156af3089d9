// Q6_K x Q8_K batch matmul on AVX-512 VNNI (see matmul_q6_k.h for where it runs and why).
//
// Layouts (ggml-common.h), plain rows, no repacking:
//   block_q6_K  ql[128]: low 4 bits, qh[64]: high 2 bits, scales[16] (int8, one per 16 values),
//               d (f16). Value 128j + 32v + i (j < 2, v < 4, i < 32) is q - 32 with q (0..63)
//               from ql[64j + 32(v % 2) + i] (low nibble for v < 2, high for v >= 2) and bits
//               2v..2v+1 of qh[32j + i].
//   block_q8_K  d (float), qs[256], bsums[16]: the sums of values 16g..16g+15.
//
// What ggml's 1-row kernel (ggml_vec_dot_q6_K_q8_K, its AVX2 form, which AVX-512 builds run)
// computes per block, in 8 int32 lanes, lane k exactly:
//   L[k] = sum over the block's 32-value vectors u of sc[(32u + 4k) / 16] x (q . y over values
//          32u + 4k .. 32u + 4k + 3)  -  32 x (bsums[2k] sc[2k] + bsums[2k+1] sc[2k+1])
// (the -32 of Q6_K is paid through the row's sums), then acc[k] = fma(d_row x d_w, float(L[k]),
// acc[k]) block after block, and the output is acc's horizontal sum in its fixed order. Here the
// same integers come from VPMADDUBSW + VPDPWSSD over two of those vectors per 512-bit register
// (lanes k and k + 8 then add up to lane k), the weights unpacked once per block for up to 8
// rows; the float steps are the same, so every output is bit for bit ggml's.
#include "matmul_q6_k.h"

#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#define LLAMAFUSE_MATMUL_Q6_K 1
#include "matmul_plain_rows.h"
// GCC 12's avx512fintrin.h passes _mm512_undefined_*() as the unused source of unmasked
// intrinsics (extracti64x4), which -Wmaybe-uninitialized reports.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace llamafuse {
namespace cpu {

#if LLAMAFUSE_MATMUL_Q6_K
namespace {

struct block_q6_K {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
};
static_assert(sizeof(block_q6_K) == 210, "ggml's block size");

// One weight block, unpacked for the rows: q[h] holds values 64h..64h+63 as unsigned bytes
// (0..63), scale[h] each 32-bit lane's sub-block scale in both 16-bit halves (VPDPWSSD's
// operand), neg32_scales the 16 scales x -32 (for the row-sum term), d the block's scale.
struct unpacked_block {
    __m512i q[4];
    __m512i scale[4];
    __m256i neg32_scales;
    float d;
};

inline void unpack(const block_q6_K & x, unpacked_block & u) {
    const __m512i m0f = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    // qh's bits 2v..2v+1 to bits 4..5: v = 0, 1 (low, high half) and v = 2, 3; the bits a
    // 64-bit shift carries in from the neighbouring byte fall outside 0x30
    const __m512i shift_v01 = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4);
    const __m512i shift_v23 = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
    for (int j = 0; j < 2; j++) {
        const __m512i low = _mm512_loadu_si512(x.ql + 64 * j);  // v = 0 | v = 1
        const __m512i high = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) (x.qh + 32 * j)));
        const __m512i h01 = _mm512_and_si512(_mm512_sllv_epi64(high, shift_v01), m30);
        const __m512i h23 = _mm512_and_si512(_mm512_srlv_epi64(high, shift_v23), m30);
        // ternlog 0xEA: (a & b) | c
        u.q[2 * j] = _mm512_ternarylogic_epi32(low, m0f, h01, 0xEA);
        u.q[2 * j + 1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(low, 4), m0f, h23, 0xEA);
    }
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) x.scales));
    const __m512i sc16z = _mm512_castsi256_si512(sc16);
    // 16-bit lane i of register h: the scale of value 64h + 2i, sub-block 4h + i / 8
    for (int h = 0; h < 4; h++) {
        const __m512i idx = _mm512_add_epi16(_mm512_set1_epi16((short) (4 * h)),
            _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0));
        u.scale[h] = _mm512_permutexvar_epi16(idx, sc16z);
    }
    u.neg32_scales = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5));
    u.d = _cvtsh_ss(x.d);
}

// R rows (row r's blocks at acts + r * by) x nc weight rows (bx bytes apart). prefetch: the
// tile is the first over these weights (prefetch_block measured here: 2 threads over 2048 x
// 65536 weights and 8 rows, 12.4 -> 9.4 ms; a 1B Q4_K_M model's 8-stream step, 93-109 ->
// 87-100 ms; Zen 4).
template <int R>
void q6_k_tile(int nb, const char * weights, size_t bx, const char * acts, size_t by, float * s, size_t bs, int nc, bool prefetch) {
    for (int c = 0; c < nc; c++) {
        const auto * w = reinterpret_cast<const block_q6_K *>(weights + (size_t) c * bx);
        __m256 acc[R];
        for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            if (prefetch) prefetch_block(w + b, bx, sizeof(block_q6_K));
            unpacked_block u;
            unpack(w[b], u);
            // unrolled, so that acc[] stays in registers
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const block_q8_K & y = reinterpret_cast<const block_q8_K *>(acts + (size_t) r * by)[b];
                const __m256i row_term = _mm256_dpwssd_epi32(_mm256_setzero_si256(),
                    _mm256_loadu_si256((const __m256i *) y.bsums), u.neg32_scales);
                __m512i dot = _mm512_zextsi256_si512(row_term);
#pragma GCC unroll 4
                for (int h = 0; h < 4; h++) {
                    const __m512i pairs = _mm512_maddubs_epi16(u.q[h], _mm512_loadu_si512(y.qs + 64 * h));
                    dot = _mm512_dpwssd_epi32(dot, pairs, u.scale[h]);
                }
                const __m256i lanes = _mm256_add_epi32(_mm512_castsi512_si256(dot), _mm512_extracti64x4_epi64(dot, 1));
                const float d = y.d * u.d;
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(lanes), acc[r]);
            }
        }
        for (int r = 0; r < R; r++) s[(size_t) r * bs + c] = hsum_float_8(acc[r]);
    }
}

// The row tiles, as matmul_plain_rows.h walks them.
struct tiles {
    static constexpr int block_values = 256;
    static constexpr size_t weight_block_bytes = sizeof(block_q6_K);
    static constexpr size_t act_block_bytes = sizeof(block_q8_K);
    template <int R>
    static void tile(int nb, const char * weights, size_t bx, const char * acts, size_t by, float * s, size_t bs, int nc, bool prefetch) {
        q6_k_tile<R>(nb, weights, bx, acts, by, s, bs, nc, prefetch);
    }
};

} // namespace

bool matmul_q6_k_available() {
    return true;
}

bool matmul_q6_k_rows(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nr, int nc) {
    return matmul_plain_rows<tiles>(n, s, bs, vx, bx, vy, by, nr, nc);
}

#else

bool matmul_q6_k_available() {
    return false;
}

bool matmul_q6_k_rows(int, float *, size_t, const void *, size_t, const void *, size_t, int, int) {
    return false;
}

#endif

} // namespace cpu
} // namespace llamafuse
