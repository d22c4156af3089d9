#pragma once
// Shared by the CUDA attention kernels: their argument block, made from the one op
// description (attn_op, ../attn_op.h) by kernel_args_of, and small device helpers. No ggml
// types, so the standalone harness in bench/gpu/ can drive the kernels without llama.cpp.
//
// Operands follow GGML_OP_FLASH_ATTN_EXT (see ../shared/KERNELS.md), in the subset these
// kernels take:
//   q    f32  [D, n_tokens, n_head,    n_seq_q ]   rows contiguous, any strides above
//   k    kv   [D, n_kv,     n_head_kv, n_seq_kv]   f16 or q8_0, rows contiguous
//   v    kv   [D, n_kv,     n_head_kv, n_seq_kv]   same type and head size as k
//   mask f16  [n_kv, >= n_tokens, 1, n_seq_mask]   0 / -inf (scaled by the ALiBi slope), or null
//   sinks f32 [n_head] or null                     one extra logit per head, in the denominator only
//   dst  f32  [D, n_head, n_tokens, n_seq_q]       contiguous
// q head h reads kv head h / G with G = n_head / n_head_kv; q sequence i reads kv
// sequence i / (n_seq_q / n_seq_kv) and mask sequence i % n_seq_mask.

#include "../attn_op.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

// Launchers check what they assume; a failed check is a bug in the caller (the hook only
// hands over shapes that fattn_*_supported accepted), so it aborts like GGML_ASSERT does.
#define LF_CUDA_ASSERT(cond)                                                                \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "llamafuse: %s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

namespace llamafuse::cuda {

using kv_type = ::llamafuse::attn_kv_type;

// Bytes of one row of D values in the cache. q8_0: blocks of 32 int8 with one f16 scale (34 bytes).
__host__ __device__ constexpr int kv_row_bytes(kv_type t, int D) {
    return t == kv_type::f16 ? D * 2 : D / 32 * 34;
}

// The kernels' argument block, passed by value to every kernel: an attn_op the kernels take,
// with 32-bit sizes and typed pointers (the index arithmetic the kernels were tuned with).
// Made only by kernel_args_of (below); not a second description of the op.
struct kernel_args {
    const float * q = nullptr;
    int64_t q_nb1 = 0, q_nb2 = 0, q_nb3 = 0;          // bytes: token, head, sequence

    const void * k = nullptr;
    int64_t k_nb1 = 0, k_nb2 = 0, k_nb3 = 0;          // bytes: key, kv head, sequence
    const void * v = nullptr;
    int64_t v_nb1 = 0, v_nb2 = 0, v_nb3 = 0;
    kv_type type = kv_type::f16;                      // of both k and v

    const __half * mask = nullptr;                    // may be null
    int64_t mask_nb1 = 0, mask_nb3 = 0;               // bytes: token, sequence
    int n_seq_mask = 1;

    const float * sinks = nullptr;                    // may be null

    float * dst = nullptr;

    int D = 0;              // head dim of q, k and v (equal)
    int n_tokens = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int n_kv = 0;
    int n_seq_q = 1;
    int n_seq_kv = 1;

    float scale = 1.0f;
    float max_bias = 0.0f;  // ALiBi; 0 = off
    float softcap = 0.0f;   // 0 = off
};

// What every kernel of ours needs of a node, whatever its phase: head size 64 or 128, f16 or
// q8_0 K/V, whole GQA groups and stream broadcasts, and the alignment of the vector loads
// (q as float4, K/V rows in 16-byte (f16) or 4-byte (q8_0) units, the f16 mask in halves).
inline bool fattn_layout_supported(const kernel_args & p) {
    if (p.D != 64 && p.D != 128) return false;
    if (p.type != kv_type::f16 && p.type != kv_type::q8_0) return false;
    if (p.n_head <= 0 || p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0) return false;
    if (p.n_seq_kv <= 0 || p.n_seq_q % p.n_seq_kv != 0) return false;
    if (p.n_kv <= 0 || p.n_tokens <= 0) return false;
    const int64_t qa = 16;
    if (reinterpret_cast<uintptr_t>(p.q) % qa || p.q_nb1 % qa || p.q_nb2 % qa || p.q_nb3 % qa) return false;
    const int64_t ka = p.type == kv_type::f16 ? 16 : 4;
    for (const int64_t nb : {p.k_nb1, p.k_nb2, p.k_nb3, p.v_nb1, p.v_nb2, p.v_nb3}) {
        if (nb % ka) return false;
    }
    if (reinterpret_cast<uintptr_t>(p.k) % ka || reinterpret_cast<uintptr_t>(p.v) % ka) return false;
    if (p.mask && (p.mask_nb1 % 2 || p.mask_nb3 % 2 || p.n_seq_mask <= 0)) return false;
    return true;
}

// attn_op -> kernel_args, false where the op is outside the form these kernels take: K and V
// of one head size, a mask broadcast over heads (ggml's usual [n_kv, n_tokens, 1, n_seq]) and
// over q's sequences, a contiguous dst, and sizes within 32 bits. The CUDA backend's
// supported() rules are this, fattn_layout_supported and a kernel path (cuda::fattn_supported).
inline bool kernel_args_of(const attn_op & op, kernel_args & a) {
    constexpr int64_t lim = INT32_MAX;
    if (op.DK != op.DV || op.DK > lim) return false;
    if (op.n_tokens > lim || op.n_head > lim || op.n_head_kv > lim || op.n_kv > lim) return false;
    if (op.n_stream > lim || op.n_stream_kv > lim || op.m_ne3 > lim) return false;
    if (op.mask && (op.m_ne2 != 1 || op.m_ne3 <= 0 || op.n_stream % op.m_ne3 != 0)) return false;
    const size_t row = (size_t) op.DV * sizeof(float);
    if (op.d_nb1 != row || op.d_nb2 != row * op.n_head || op.d_nb3 != op.d_nb2 * op.n_tokens) return false;
    a = kernel_args();
    a.q = reinterpret_cast<const float *>(op.q);
    a.q_nb1 = (int64_t) op.q_nb1;  a.q_nb2 = (int64_t) op.q_nb2;  a.q_nb3 = (int64_t) op.q_nb3;
    a.k = op.k;  a.k_nb1 = (int64_t) op.k_nb1;  a.k_nb2 = (int64_t) op.k_nb2;  a.k_nb3 = (int64_t) op.k_nb3;
    a.v = op.v;  a.v_nb1 = (int64_t) op.v_nb1;  a.v_nb2 = (int64_t) op.v_nb2;  a.v_nb3 = (int64_t) op.v_nb3;
    a.type = op.type;
    a.mask = reinterpret_cast<const __half *>(op.mask);
    a.mask_nb1 = op.mask ? (int64_t) op.m_nb1 : 0;
    a.mask_nb3 = op.mask ? (int64_t) op.m_nb3 : 0;
    a.n_seq_mask = op.mask ? (int) op.m_ne3 : 1;
    a.sinks = op.sinks;
    a.dst = reinterpret_cast<float *>(op.dst);
    a.D = (int) op.DK;
    a.n_tokens = (int) op.n_tokens;
    a.n_head = (int) op.n_head;
    a.n_head_kv = (int) op.n_head_kv;
    a.n_kv = (int) op.n_kv;
    a.n_seq_q = (int) op.n_stream;
    a.n_seq_kv = (int) op.n_stream_kv;
    a.scale = op.scale;
    a.max_bias = op.max_bias;
    a.softcap = op.softcap;
    return true;
}

#ifdef __CUDACC__
// Kernels with more than 48 KB of dynamic shared memory need the limit raised, once per
// kernel and device. Done on a kernel's first launch on a device, which llama.cpp makes
// outside CUDA graph capture (its warm-up runs the graph directly), as does the harness;
// later launches, captured or not, make no runtime call besides the launch itself.
// `Tag` is the kernel's configuration type: one flag set per kernel instantiation.
template <typename Tag, typename Kernel> inline void raise_smem_limit_once(Kernel kernel, int bytes) {
    static bool raised[64] = {};
    int dev = 0;
    cudaGetDevice(&dev);
    if (dev >= 0 && dev < 64 && !raised[dev]) {
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
        raised[dev] = true;
    }
}
#endif // __CUDACC__

// Device code below also compiles for bench/gpu/emu (LF_CUDA_EMU): a CPU emulation of the
// CUDA subset the kernels use, which runs the real kernel code with one host thread per
// CUDA thread, so the kernels' logic can be checked on a machine with no GPU.
#if defined(__CUDACC__) || defined(LF_CUDA_EMU)

// The kernels' dynamic shared memory (one declaration per kernel).
#ifdef LF_CUDA_EMU
#define LF_DYNAMIC_SMEM(name) uint8_t * name = ::lf_emu::block_smem()
#else
#define LF_DYNAMIC_SMEM(name) extern __shared__ __align__(16) uint8_t name[]
#endif

constexpr float LOG2E = 1.4426950408889634f;

// ALiBi slope of q head h, exactly as ggml computes it (ops.cpp, flash_attn_ext_f16_one_chunk).
__device__ __forceinline__ float alibi_slope(float max_bias, int h, int n_head) {
    if (max_bias <= 0.0f) {
        return 1.0f;
    }
    const int n_head_log2 = 1 << (31 - __clz(n_head));
    const float m0 = exp2f(-max_bias / n_head_log2);
    const float m1 = exp2f(-(max_bias / 2.0f) / n_head_log2);
    return h < n_head_log2 ? powf(m0, h + 1) : powf(m1, 2 * (h - n_head_log2) + 1);
}

// 2^x on the special-function unit alone (ex2.approx.ftz: relative error ~2^-22, results
// under 2^-126 flushed to 0, which a softmax weight may well be). exp2f adds denormal
// range handling around it: three more instructions per call in the hot loops.
__device__ __forceinline__ float fast_exp2(float x) {
#if defined(__CUDA_ARCH__) && !defined(LF_CUDA_EMU)
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return exp2f(x);
#endif
}

// exp2(a - b) that is 0 instead of NaN when both are -inf (an empty running max).
__device__ __forceinline__ float exp2_diff(float a, float b) {
    return a == -INFINITY ? 0.0f : fast_exp2(a - b);
}

// ---- programmatic dependent launch (sm_90) --------------------------------------------------
// A kernel launched with the programmatic-serialization attribute may start while the
// kernel before it is still running; griddep_wait() blocks until that one has finished and
// its writes are visible. griddep_launch_dependents() lets the next such kernel start early.
// Both are no-ops before sm_90 (and in the emulator, which runs kernels one at a time).
__device__ __forceinline__ void griddep_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(LF_CUDA_EMU)
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void griddep_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(LF_CUDA_EMU)
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// ---- asynchronous global -> shared copies (sm_80+) ----------------------------------------
#ifdef LF_CUDA_EMU
__device__ __forceinline__ void cp_async_16(void * smem, const void * gmem) { ::lf_emu::cp_async(smem, gmem, 16); }
__device__ __forceinline__ void cp_async_4(void * smem, const void * gmem) { ::lf_emu::cp_async(smem, gmem, 4); }
__device__ __forceinline__ void cp_async_commit() { ::lf_emu::cp_async_commit(); }
template <int N> __device__ __forceinline__ void cp_async_wait() { ::lf_emu::cp_async_wait(N); }
#else
__device__ __forceinline__ void cp_async_16(void * smem, const void * gmem) {
    const unsigned s = (unsigned) __cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_4(void * smem, const void * gmem) {
    const unsigned s = (unsigned) __cvta_generic_to_shared(smem);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
#endif

// ---- 8 consecutive cache values of one row, as f32 ----------------------------------------
// chunk c covers values [8c, 8c+8). `row` points at the row's first byte (shared memory).
template <kv_type T> __device__ __forceinline__ void load_chunk8(const uint8_t * row, int c, float out[8]);

template <> __device__ __forceinline__ void load_chunk8<kv_type::f16>(const uint8_t * row, int c, float out[8]) {
    const uint4 raw = *reinterpret_cast<const uint4 *>(row + c * 16);
    const __half2 * h = reinterpret_cast<const __half2 *>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 f = __half22float2(h[i]);
        out[2 * i + 0] = f.x;
        out[2 * i + 1] = f.y;
    }
}

// int8 -> f32 without the conversion unit (quarter rate on sm_8x/9x): the byte, biased by
// 128, becomes the low mantissa byte of 2^23 (one byte permute), and one subtraction of
// 2^23 + 128 leaves the exact integer. u holds four biased bytes (x ^ 0x80 each).
__device__ __forceinline__ float biased_byte_to_float(uint32_t u, int i) {
#ifdef LF_CUDA_EMU
    const uint32_t bits = 0x4B000000u | ((u >> (8 * i)) & 0xffu);
    float f;
    memcpy(&f, &bits, 4);
#else
    const float f = __int_as_float((int) __byte_perm(u, 0x4B000000u, 0x7440u | (unsigned) i));
#endif
    return f - 8388736.0f;
}

template <> __device__ __forceinline__ void load_chunk8<kv_type::q8_0>(const uint8_t * row, int c, float out[8]) {
    // block b = c / 4 holds values [32b, 32b+32): f16 scale, then 32 int8; the chunk's 8 bytes
    // start at an even offset only, so read them as four 16-bit words.
    const uint8_t * blk = row + (c >> 2) * 34;
    const float d = __half2float(*reinterpret_cast<const __half *>(blk));
    const uint16_t * qs = reinterpret_cast<const uint16_t *>(blk + 2 + (c & 3) * 8);
    const uint32_t u0 = ((uint32_t) qs[0] | ((uint32_t) qs[1] << 16)) ^ 0x80808080u;
    const uint32_t u1 = ((uint32_t) qs[2] | ((uint32_t) qs[3] << 16)) ^ 0x80808080u;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        out[i] = d * biased_byte_to_float(u0, i);
        out[4 + i] = d * biased_byte_to_float(u1, i);
    }
}

#endif // __CUDACC__ || LF_CUDA_EMU

} // namespace llamafuse::cuda
