// The lane layout matmul_q4_0 and matmul_q4_k share (include only where AVX-512 VNNI is
// compiled): each 32-bit lane of VPDPBUSD is one weight column, 16 columns from two of ggml's
// repacked groups of 8, against four of a row's activations broadcast to every lane.
#pragma once

#include <immintrin.h>

#include <cstring>

namespace llamafuse {
namespace cpu {

// A repacked group's 64-byte chunk holds 8 bytes of each of its 8 columns: (column c, bytes
// 4h..4h+3) in lane 2c + h. These gather bytes 4h..4h+3 of 16 columns, group a's in lanes 0-7
// and group b's in lanes 8-15.
inline __m512i columns_h0(__m512i a, __m512i b) {
    return _mm512_permutex2var_epi32(a, _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0), b);
}
inline __m512i columns_h1(__m512i a, __m512i b) {
    return _mm512_permutex2var_epi32(a, _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1), b);
}

// Where a row's values 4j..4j+3 of a 32-value block sit, from its first value: in ggml's
// interleaved groups of 4 rows (8-byte chunks, row r's values 8k..8k+7 at 32k + 8r) and in a
// plain row.
constexpr int GROUPED_OFFSETS[8] = {0, 4, 32, 36, 64, 68, 96, 100};
constexpr int PLAIN_OFFSETS[8] = {0, 4, 8, 12, 16, 20, 24, 28};

// Four activations at p, in every lane.
inline __m512i bcast32(const void * p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

} // namespace cpu
} // namespace llamafuse
