// Helpers shared by the fused-attention kernels and their reference (no ggml dependency).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace llamafuse {
namespace cpu {

// IEEE half -> float, exact for every input (normals, subnormals, inf, NaN).
static inline float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t) (h & 0x8000) << 16;
    uint32_t exp  = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        // subnormal: value = mant * 2^-24; normalise
        exp = 113;
        while ((mant & 0x400) == 0) { mant <<= 1; exp--; }
        bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// ggml's block_q8_0: 32 int8 weights sharing one f16 scale (34 bytes, no padding).
constexpr int QK8_0 = 32;
struct block_q8_0 {
    uint16_t d;
    int8_t   qs[QK8_0];
};
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must match ggml's layout");

// ALiBi slope for query head h, exactly as ggml computes it (1 when max_bias == 0).
static inline float alibi_slope(float max_bias, int64_t n_head, int64_t h) {
    if (max_bias <= 0.0f) {
        return 1.0f;
    }
    const uint32_t n_head_log2 = 1u << (uint32_t) std::floor(std::log2((double) n_head));
    const float m0 = std::pow(2.0f, -(max_bias) / n_head_log2);
    const float m1 = std::pow(2.0f, -(max_bias / 2.0f) / n_head_log2);
    return (uint32_t) h < n_head_log2 ? std::pow(m0, (float) (h + 1)) : std::pow(m1, (float) (2 * (h - n_head_log2) + 1));
}

} // namespace cpu
} // namespace llamafuse
