// One attention op (GGML_OP_FLASH_ATTN_EXT) as every part of llamafuse sees it: the ggml-node
// translator fills it (attn_ggml.cpp), each backend says whether its kernels take it
// (cpu::fattn_supported, cuda::fattn_supported), the CPU kernels run on it, the CUDA launcher
// packs it into its kernels' argument block, and the float64 reference (attn_reference.h)
// defines what it computes:
//
//   out = softmax(scale·q·kᵀ (soft-capped) + slope·mask (+ sink)) · v, per query row.
//
// Plain C++ with no ggml or CUDA types, so the standalone harnesses (native/kernels/cpu/harness,
// bench/gpu) build it from their own buffers. Byte strides (nb*) are ggml's. Element
// (d, token t, head h, stream s) of q lives at q + t*q_nb1 + h*q_nb2 + s*q_nb3; k/v rows
// (d, key j, kv head hk, stream sk) likewise with hk = h / (n_head / n_head_kv) and
// sk = s / (n_stream / n_stream_kv); the mask element (j, t) at mask + t*m_nb1 + mh*m_nb2 +
// ms*m_nb3 with mh = h % m_ne2, ms = s % m_ne3; dst element (d, h, t, s) at
// dst + h*d_nb1 + t*d_nb2 + s*d_nb3. Rows are contiguous in d.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llamafuse {

// K and V share one type. q8_0: blocks of 32 int8 with one f16 scale (34 bytes).
enum class attn_kv_type : int { f16 = 0, q8_0 = 1 };

struct attn_op {
    const char * q = nullptr;    size_t q_nb1 = 0, q_nb2 = 0, q_nb3 = 0;   // f32
    const char * k = nullptr;    size_t k_nb1 = 0, k_nb2 = 0, k_nb3 = 0;   // type
    const char * v = nullptr;    size_t v_nb1 = 0, v_nb2 = 0, v_nb3 = 0;   // type
    const char * mask = nullptr; size_t m_nb1 = 0, m_nb2 = 0, m_nb3 = 0;   // f16 (0 / -inf, scaled by the ALiBi slope), or null
    int64_t m_ne2 = 1, m_ne3 = 1;                                          // mask heads, mask streams (broadcast)
    const float * sinks = nullptr;                                         // [n_head] one extra logit per head, or null
    char * dst = nullptr;        size_t d_nb1 = 0, d_nb2 = 0, d_nb3 = 0;   // f32
    attn_kv_type type = attn_kv_type::f16;
    int64_t DK = 0, DV = 0;                                                // head dims of q/k and of v/dst
    int64_t n_tokens = 0, n_head = 0, n_stream = 1;                        // q: [DK, n_tokens, n_head, n_stream]
    int64_t n_kv = 0, n_head_kv = 0, n_stream_kv = 1;                      // k: [DK, n_kv, n_head_kv, n_stream_kv]
    float scale = 1.0f, max_bias = 0.0f, softcap = 0.0f;                   // max_bias 0: no ALiBi; softcap 0: off
};

} // namespace llamafuse
