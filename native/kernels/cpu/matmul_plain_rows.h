// What the batch kernels for ggml's generic matmul (matmul_q5_k, matmul_q6_k, matmul_q8_0) share:
// their rows are plain rows of the type's vec_dot_type (Q8_K, Q8_0), taken up to 8 at a time,
// each output is ggml's 1-row kernel's 8-lane float accumulator summed in its fixed order, and
// the entry checks and walks a chunk the same way. Include only where AVX-512 is compiled.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace llamafuse {
namespace cpu {

// Rows per tile: each weight block is unpacked once per tile.
constexpr int ROW_TILE = 8;

// ggml's hsum_float_8 (ggml-cpu/arch/x86/quants.c), in its order
inline float hsum_float_8(__m256 x) {
    __m128 res = _mm256_extractf128_ps(x, 1);
    res = _mm_add_ps(res, _mm256_castps256_ps128(x));
    res = _mm_add_ps(res, _mm_movehl_ps(res, res));
    res = _mm_add_ss(res, _mm_movehdup_ps(res));
    return _mm_cvtss_f32(res);
}

// Calls run.template rows<R>(y, first) for each tile of R <= ROW_TILE rows from row y, R a
// compile-time constant; first: the tile is the first over the weights.
template <class Run>
void for_each_plain_row_tile(int nr, Run && run) {
    for (int y = 0; y < nr; y += ROW_TILE) {
        const bool first = y == 0;
        switch (nr - y < ROW_TILE ? nr - y : ROW_TILE) {
            case 1: run.template rows<1>(y, first); break;
            case 2: run.template rows<2>(y, first); break;
            case 3: run.template rows<3>(y, first); break;
            case 4: run.template rows<4>(y, first); break;
            case 5: run.template rows<5>(y, first); break;
            case 6: run.template rows<6>(y, first); break;
            case 7: run.template rows<7>(y, first); break;
            default: run.template rows<8>(y, first); break;
        }
    }
}

// The weight rows' next block, into L1 (rows are contiguous, so past the chunk's last row this
// is the next chunk's: addresses as integers, since past the tensor's end it may lie beyond
// it, and a prefetch never faults). ggml hands the threads chunks of 16 rows in turn, so a
// thread's weights are not one stream the hardware prefetchers follow.
inline void prefetch_block(const void * block, size_t row_bytes, size_t block_bytes) {
    const uintptr_t next = (uintptr_t) block + row_bytes;
    for (uintptr_t line = 0; line < block_bytes; line += 64) _mm_prefetch((const char *) (next + line), _MM_HINT_T0);
}

// ggml's block_q8_K: d (float), qs[256], bsums[16] (the sums of values 16g..16g+15).
struct block_q8_K {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
};
static_assert(sizeof(block_q8_K) == 292, "ggml's block size");

// One chunk's row tiles: Tiles::tile<R>(nb, weights, bx, acts, by, s, bs, nc, first) computes
// R rows (row r's blocks at acts + r * by) against the chunk's nc weight rows.
template <class Tiles>
struct plain_chunk {
    int nb;
    const char * weights;
    size_t bx;
    const char * acts;
    size_t by;
    float * s;
    size_t bs;
    int nc;
    template <int R>
    void rows(int y, bool first) const {
        Tiles::template tile<R>(nb, weights, bx, acts + (size_t) y * by, by, s + (size_t) y * bs, bs, nc, first);
    }
};

// The kernels' entry (matmul_q5_k_rows, matmul_q6_k_rows, matmul_q8_0_rows): checks the chunk
// against the contract (n a multiple of Tiles::block_values, rows at least their blocks apart;
// one row is declined) and walks its row tiles.
template <class Tiles>
bool matmul_plain_rows(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nr, int nc) {
    if (n <= 0 || n % Tiles::block_values != 0 || nr < 2 || nc <= 0) return false;
    const int nb = n / Tiles::block_values;
    if (bx < (size_t) nb * Tiles::weight_block_bytes || by < (size_t) nb * Tiles::act_block_bytes) return false;
    for_each_plain_row_tile(nr, plain_chunk<Tiles>{nb, static_cast<const char *>(vx), bx, static_cast<const char *>(vy), by, s, bs, nc});
    return true;
}

} // namespace cpu
} // namespace llamafuse
