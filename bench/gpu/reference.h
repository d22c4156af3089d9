#pragma once
// Host side of the GPU harness: one attention problem laid out in host memory the way
// llama.cpp's KV cache lays it out, a float64 reference of GGML_OP_FLASH_ATTN_EXT on it,
// and the comparison. Plain C++ (no CUDA headers) so that `selftest` can check it on a
// machine with no GPU.
//
// Layouts (byte strides as the kernels receive them, see native/kernels/cuda/fattn_common.cuh):
//   q    f32 [seq][head][token][D]           -> q_nb1 = D*4 (token), q_nb2 = T*D*4 (head)
//        (ggml's q is a permuted view; token and head strides are what matter)
//   k, v     [seq][key][kv head][row]         -> nb1 = n_head_kv*row (key), nb2 = row (head)
//        (one cache row holds every kv head of a token, as llama.cpp's cache does)
//   mask f16 [seq_mask][token][n_kv]
//   dst  f32 [seq][token][head][D]

#include "../../native/kernels/attn_op.h"

#include <cstdint>
#include <string>
#include <vector>

namespace fattn_bench {

enum class kv_kind { f16, q8_0 };

struct problem {
    int D = 128;
    int n_tokens = 1;
    int n_head = 32;
    int n_head_kv = 8;
    int n_kv = 4096;
    int n_seq = 1;          // q, kv and mask sequences (equal here)
    kv_kind type = kv_kind::f16;
    bool mask = true;
    bool causal = false;    // mask: key j visible to token t iff j <= n_kv - n_tokens + t
    int n_kv_valid = -1;    // keys at or past this are masked (-1: all valid), like the 256-padding
    bool sinks = false;
    float max_bias = 0.0f;
    float softcap = 0.0f;
    std::vector<int> masked_rows;  // tokens whose mask row is all -inf (output must be 0)

    int row_bytes() const { return type == kv_kind::f16 ? D * 2 : D / 32 * 34; }
    int64_t k_nb1() const { return (int64_t) n_head_kv * row_bytes(); }
    int64_t k_nb2() const { return row_bytes(); }
    int64_t k_nb3() const { return k_nb1() * n_kv; }
    size_t kv_bytes() const { return (size_t) k_nb3() * n_seq; }   // one of K or V
    size_t q_floats() const { return (size_t) n_seq * n_head * n_tokens * D; }
    size_t mask_halves() const { return (size_t) n_seq * n_tokens * n_kv; }
    std::string describe() const;
};

struct host_data {
    std::vector<float> q;
    std::vector<uint8_t> k, v;       // cache bytes (f16 or q8_0 blocks)
    std::vector<uint16_t> mask;      // f16 bits
    std::vector<float> sinks;
};

// IEEE binary16 <-> float, round to nearest even (what CUDA's __float2half does).
uint16_t float_to_half(float f);
float half_to_float(uint16_t h);

// q8_0 as ggml quantizes it: per 32 values d = amax / 127, q = round(x / d), d stored as f16.
void quantize_row_q8_0(const float * x, uint8_t * out, int n);
void dequantize_row_q8_0(const uint8_t * in, double * y, int n);

// Fresh seeded random inputs (never zeros): q, K, V uniform in [-1, 1], sinks in [-4, 4].
host_data make_data(const problem & pr, uint64_t seed);

// The problem as the one op description (native/kernels/attn_op.h) over the given buffers:
// q with the strides given (token, head, sequence), K/V, mask and sinks in the layouts
// above (mask and sinks only where the problem has them), dst [seq][token][head][D]
// contiguous, scale 1/sqrt(D). The harness packs it for the kernels (kernel_args_of).
llamafuse::attn_op problem_op(const problem & pr, const float * q, int64_t q_nb1, int64_t q_nb2, int64_t q_nb3,
                              const void * k, const void * v, const void * mask, const float * sinks, float * dst);

// The float64 reference (native/kernels/attn_reference.h, the one every C++ harness uses) of
// the problem, from the stored (already rounded / quantized) cache values:
// out [seq][token][head][D].
std::vector<double> reference(const problem & pr, const host_data & d);

struct compare_result {
    double rel_l2 = 0.0;      // ||out - ref|| / ||ref||
    double max_abs = 0.0;
    size_t n_nan = 0;         // NaN or Inf in out (a poisoned element never written counts here)
    size_t n_bad_zero = 0;    // rows that must be exactly 0 and are not
    bool pass(double tol) const { return n_nan == 0 && n_bad_zero == 0 && rel_l2 <= tol; }
};
compare_result compare(const problem & pr, const std::vector<float> & out, const std::vector<double> & ref);

// Rows that must be exactly zero: every key masked for that token.
bool row_fully_masked(const problem & pr, int token);

// Deterministic generator for the harness (xorshift64*).
struct rng {
    uint64_t s;
    explicit rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    uint64_t next() { s ^= s >> 12; s ^= s << 25; s ^= s >> 27; return s * 0x2545F4914F6CDD1Dull; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * ((next() >> 11) * (1.0 / 9007199254740992.0)); }
    int below(int n) { return (int) (next() % (uint64_t) n); }
};

} // namespace fattn_bench
