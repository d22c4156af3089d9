// Fused CPU attention (llamafuse): the kernels behind GGML_OP_FLASH_ATTN_EXT's hook.
//
// out = softmax(scale·q·kᵀ (soft-capped) + slope·mask (+ sink)) · v, per query row, with every
// query head of a GQA group served from one read of each K/V row and f32 accumulation.
// The kernels know nothing of ggml: fattn_hook.cpp translates a ggml node into fattn_params.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llamafuse {
namespace cpu {

enum class kv_type { f16, q8_0 };

// Byte strides (nb*) are ggml's. Element (d, token t, head h, stream s) of q lives at
// q + t*q_nb1 + h*q_nb2 + s*q_nb3; k/v rows (d, key j, kv head hk, stream) likewise; the mask
// element (j, t, mh, ms) at mask + t*m_nb1 + mh*m_nb2 + ms*m_nb3 with mh = h % m_ne2, ms = s % m_ne3;
// dst element (d, h, t, s) at dst + h*d_nb1 + t*d_nb2 + s*d_nb3. Rows are contiguous in d.
struct fattn_params {
    const char * q;    size_t q_nb1, q_nb2, q_nb3;      // f32
    const char * k;    size_t k_nb1, k_nb2, k_nb3;      // type
    const char * v;    size_t v_nb1, v_nb2, v_nb3;      // type
    const char * mask; size_t m_nb1, m_nb2, m_nb3;      // f16, or null
    int64_t m_ne2, m_ne3;
    const float * sinks;                                // [n_head] logits, or null
    char * dst;        size_t d_nb1, d_nb2, d_nb3;      // f32
    kv_type type;
    int64_t DK, DV;
    int64_t n_tokens, n_head, n_stream;                 // q: [DK, n_tokens, n_head, n_stream]
    int64_t n_kv, n_head_kv, n_stream_kv;               // k: [DK, n_kv, n_head_kv, n_stream_kv]
    float scale, max_bias, softcap;
};

// Shapes the kernels take (types, head dims, broadcast factors). Pure function of the shape.
bool fattn_supported(const fattn_params & p);

// Work-buffer bytes fattn_compute needs with nth threads (monotonic in nth).
size_t fattn_work_size(const fattn_params & p, int nth);

// Runs on each of nth threads (ith = 0..nth-1) with a shared work buffer of at least
// fattn_work_size(p, nth) bytes; barrier(ctx) must synchronise all nth threads.
using barrier_fn = void (*)(void * ctx);
void fattn_compute(const fattn_params & p, int ith, int nth, void * wdata, size_t wsize,
                   barrier_fn barrier, void * barrier_ctx);

// Kernel selection: the AVX2/FMA/F16C path when the CPU has it, else the portable path.
// force_portable makes tests run the portable path on AVX2 machines too. Not part of the
// accept/decline decision, so it may change between graph computations.
void fattn_force_portable(bool on);
bool fattn_using_simd();

// Plain reference: one query row at a time, double accumulation, no threads. For the
// standalone harness and as documentation of the exact semantics.
void fattn_reference(const fattn_params & p);

} // namespace cpu
} // namespace llamafuse
