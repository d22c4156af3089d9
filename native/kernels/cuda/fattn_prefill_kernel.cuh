#pragma once
// The tensor-core prefill kernel (see fattn_prefill.cuh), in a header so that bench/gpu/emu
// can run the same code on the CPU (with ldmatrix / mma.sync emulated per the PTX layouts).
#include "fattn_common.cuh"

namespace llamafuse::cuda {

// ---- tensor-core primitives (sm_80+) ---------------------------------------------------------
#ifdef LF_CUDA_EMU
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void * smem) { ::lf_emu::ldmatrix_x4(r, smem, false); }
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void * smem) { ::lf_emu::ldmatrix_x4(r, smem, true); }
__device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    ::lf_emu::mma_16816(c, a, b0, b1);
}
#else
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void * smem) {
    const unsigned a = (unsigned) __cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void * smem) {
    const unsigned a = (unsigned) __cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

// C (16x8 f32) += A (16x16 f16, row) . B (16x8 f16, col)
__device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&h);
}

// ---- configuration -------------------------------------------------------------------------

template <int D, kv_type T> struct prefill_cfg {
    static constexpr int WARPS = 4;
    static constexpr int THREADS = WARPS * 32;
    static constexpr int BQ = 16 * WARPS;          // query rows per block, 16 per warp
    static constexpr int BK = 64;                  // keys per tile
    static constexpr int NT = BK / 8;              // n-tiles of S per warp
    static constexpr int KS = D / 16;              // k-steps over the head dim
    static constexpr int LD = D + 8;               // f16 tile row stride (halves): +16 B keeps
                                                   // ldmatrix rows on distinct banks
    static constexpr int TILE_BYTES = BK * LD * 2; // one f16 K or V tile
    static constexpr int ROW = kv_row_bytes(T, D);
    static constexpr bool RAW = T != kv_type::f16; // staged raw, dequantized in shared memory
    static constexpr int RAW_BYTES = BK * ROW;     // one raw K or V tile
    // layout: Q tile | f16 K,V tiles (x2 stages when copied straight in) | raw K,V x2 stages
    static constexpr int Q_BYTES = BQ * LD * 2;
    static constexpr int F16_STAGES = RAW ? 1 : 2;
    static constexpr int SMEM = Q_BYTES + F16_STAGES * 2 * TILE_BYTES + (RAW ? 2 * 2 * RAW_BYTES : 0);
};

// grid: x = block of 64 query tokens, y = q head, z = q sequence
template <int D, kv_type T>
__global__ void __launch_bounds__(prefill_cfg<D, T>::THREADS, 2)
fattn_prefill_kernel(const kernel_args p) {
    using C = prefill_cfg<D, T>;
    LF_DYNAMIC_SMEM(smem);
    __half * sQ = reinterpret_cast<__half *>(smem);
    __half * sKV = reinterpret_cast<__half *>(smem + C::Q_BYTES);       // [stage][K|V][BK][LD]
    uint8_t * sRaw = smem + C::Q_BYTES + C::F16_STAGES * 2 * C::TILE_BYTES;  // [stage][K|V][BK][ROW]

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int g = lane >> 2;   // row within the 8-row half of an mma tile
    const int c = lane & 3;    // column pair

    const int t0 = blockIdx.x * C::BQ;
    const int h = blockIdx.y;
    const int seq = blockIdx.z;
    const int G = p.n_head / p.n_head_kv;
    const int kvh = h / G;
    const int seq_kv = seq / (p.n_seq_q / p.n_seq_kv);
    const uint8_t * kbase = static_cast<const uint8_t *>(p.k) + kvh * p.k_nb2 + seq_kv * p.k_nb3;
    const uint8_t * vbase = static_cast<const uint8_t *>(p.v) + kvh * p.v_nb2 + seq_kv * p.v_nb3;
    const int n_tiles = (p.n_kv + C::BK - 1) / C::BK;

    // K and V rows of tile `tile` -> stage `st` (f16: straight into the f16 tile; q8_0: raw).
    auto load_tile = [&](int tile, int st) {
        const int k0 = tile * C::BK;
        if constexpr (!C::RAW) {
            constexpr int UPR = D * 2 / 16;
            __half * dk = sKV + (st * 2 + 0) * C::BK * C::LD;
            __half * dv = sKV + (st * 2 + 1) * C::BK * C::LD;
            for (int i = threadIdx.x; i < C::BK * UPR; i += C::THREADS) {
                const int kk = i / UPR, u = i % UPR;
                const int64_t key = min(k0 + kk, p.n_kv - 1);
                cp_async_16(dk + kk * C::LD + u * 8, kbase + key * p.k_nb1 + u * 16);
                cp_async_16(dv + kk * C::LD + u * 8, vbase + key * p.v_nb1 + u * 16);
            }
        } else {
            constexpr int UPR = C::ROW / 4;
            uint8_t * rk = sRaw + (st * 2 + 0) * C::RAW_BYTES;
            uint8_t * rv = sRaw + (st * 2 + 1) * C::RAW_BYTES;
            for (int i = threadIdx.x; i < C::BK * UPR; i += C::THREADS) {
                const int kk = i / UPR, u = i % UPR;
                const int64_t key = min(k0 + kk, p.n_kv - 1);
                cp_async_4(rk + kk * C::ROW + u * 4, kbase + key * p.k_nb1 + u * 4);
                cp_async_4(rv + kk * C::ROW + u * 4, vbase + key * p.v_nb1 + u * 4);
            }
        }
    };

    load_tile(0, 0);
    cp_async_commit();

    // ---- Q tile: f32 -> pre-scaled f16 in shared memory -----------------------------------
    const bool softcap = p.softcap != 0.0f;
    const float q_scale = softcap ? p.scale / p.softcap : p.scale * LOG2E;  // cap: s = cap*tanh(scale*qk/cap)
    const float cap_l2 = p.softcap * LOG2E;
    for (int i = threadIdx.x; i < C::BQ * (D / 4); i += C::THREADS) {
        const int r = i / (D / 4), c4 = i % (D / 4);
        const int t = min(t0 + r, p.n_tokens - 1);   // rows past the end: junk, never stored
        const float4 x = *reinterpret_cast<const float4 *>(
            reinterpret_cast<const uint8_t *>(p.q) + t * p.q_nb1 + h * p.q_nb2 + seq * p.q_nb3 + c4 * 16);
        __half2 * d = reinterpret_cast<__half2 *>(sQ + r * C::LD + c4 * 4);
        d[0] = __floats2half2_rn(x.x * q_scale, x.y * q_scale);
        d[1] = __floats2half2_rn(x.z * q_scale, x.w * q_scale);
    }
    __syncthreads();

    // Q fragments for this warp's 16 rows stay in registers: qa[k-step] (A operand, 16x16)
    uint32_t qa[C::KS][4];
#pragma unroll
    for (int ks = 0; ks < C::KS; ++ks) {
        const int row = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        const int col = ks * 16 + (lane >> 4) * 8;
        ldmatrix_x4(qa[ks], sQ + row * C::LD + col);
    }

    // rows this thread holds in the accumulators: g and g + 8 of the warp's 16
    const float slope_l2 = alibi_slope(p.max_bias, h, p.n_head) * LOG2E;
    const __half * mrow[2] = {nullptr, nullptr};
    if (p.mask) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int t = min(t0 + warp * 16 + g + 8 * e, p.n_tokens - 1);
            mrow[e] = reinterpret_cast<const __half *>(reinterpret_cast<const uint8_t *>(p.mask) +
                                                       t * p.mask_nb1 + (seq % p.n_seq_mask) * p.mask_nb3);
        }
    }

    float O[D / 8][4];   // 16 rows x D, as D/8 n-tiles of the m16n8 accumulator
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
        O[n][0] = O[n][1] = O[n][2] = O[n][3] = 0.0f;
    }
    float m[2] = {-INFINITY, -INFINITY};
    float l[2] = {0.0f, 0.0f};   // per-thread partial row sums, reduced over the quad at the end

    for (int tile = 0; tile < n_tiles; ++tile) {
        if (tile + 1 < n_tiles) {
            load_tile(tile + 1, (tile + 1) & 1);
        }
        cp_async_commit();

        // mask bias of this thread's 2 x 16 scores, read while the copies land
        const int k0 = tile * C::BK;
        float bias[C::NT][4];
        bool live_any = false;
#pragma unroll
        for (int j = 0; j < C::NT; ++j) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int key = k0 + 8 * j + 2 * c + (e & 1);
                float mv = 0.0f;
                if (key < p.n_kv && mrow[e >> 1] != nullptr) {
                    mv = __half2float(mrow[e >> 1][key]);
                }
                const bool live = key < p.n_kv && mv != -INFINITY;
                bias[j][e] = live ? slope_l2 * mv : -INFINITY;
                live_any |= live;
            }
        }

        cp_async_wait<1>();
        // barrier: this tile's copies visible to all; and a vote to skip fully masked tiles
        const bool block_live = __syncthreads_or(live_any);
        const int st = C::RAW ? 0 : (tile & 1);
        const __half * sK = sKV + (st * 2 + 0) * C::BK * C::LD;
        const __half * sV = sKV + (st * 2 + 1) * C::BK * C::LD;

        if (block_live) {
            if constexpr (C::RAW) {
                // dequantize the raw stage into the f16 tiles: 8 values per item
                const uint8_t * rk = sRaw + ((tile & 1) * 2 + 0) * C::RAW_BYTES;
                const uint8_t * rv = sRaw + ((tile & 1) * 2 + 1) * C::RAW_BYTES;
                __half * dk = sKV;
                __half * dv = sKV + C::BK * C::LD;
                for (int i = threadIdx.x; i < C::BK * (D / 8); i += C::THREADS) {
                    const int kk = i / (D / 8), ch = i % (D / 8);
                    float f[8];
                    uint4 o;
                    uint32_t * ow = reinterpret_cast<uint32_t *>(&o);
                    load_chunk8<T>(rk + kk * C::ROW, ch, f);
#pragma unroll
                    for (int q = 0; q < 4; ++q) ow[q] = pack_half2(f[2 * q], f[2 * q + 1]);
                    *reinterpret_cast<uint4 *>(dk + kk * C::LD + ch * 8) = o;
                    load_chunk8<T>(rv + kk * C::ROW, ch, f);
#pragma unroll
                    for (int q = 0; q < 4; ++q) ow[q] = pack_half2(f[2 * q], f[2 * q + 1]);
                    *reinterpret_cast<uint4 *>(dv + kk * C::LD + ch * 8) = o;
                }
                __syncthreads();
            }

            // S (16 x 64) = Q (16 x D) . K^T (D x 64)
            float S[C::NT][4];
#pragma unroll
            for (int j = 0; j < C::NT; ++j) {
                S[j][0] = S[j][1] = S[j][2] = S[j][3] = 0.0f;
#pragma unroll
                for (int kp = 0; kp < C::KS / 2; ++kp) {
                    uint32_t b[4];   // keys 8j..8j+7 x dims 32kp..32kp+31: two k-steps
                    ldmatrix_x4(b, sK + (8 * j + (lane & 7)) * C::LD + 32 * kp + (lane >> 3) * 8);
                    mma_16816(S[j], qa[2 * kp + 0], b[0], b[1]);
                    mma_16816(S[j], qa[2 * kp + 1], b[2], b[3]);
                }
            }

            // soft-cap and mask; row max over the quad (the 4 lanes sharing a row)
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int j = 0; j < C::NT; ++j) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const float x = softcap ? cap_l2 * tanhf(S[j][e]) : S[j][e];
                    S[j][e] = bias[j][e] == -INFINITY ? -INFINITY : x + bias[j][e];
                    mx[e >> 1] = fmaxf(mx[e >> 1], S[j][e]);
                }
            }
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                mx[e] = fmaxf(mx[e], __shfl_xor_sync(0xffffffffu, mx[e], 1));
                mx[e] = fmaxf(mx[e], __shfl_xor_sync(0xffffffffu, mx[e], 2));
            }
            float a[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const float mn = fmaxf(m[e], mx[e]);
                a[e] = exp2_diff(m[e], mn);
                m[e] = mn;
                l[e] *= a[e];
            }
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                O[n][0] *= a[0];
                O[n][1] *= a[0];
                O[n][2] *= a[1];
                O[n][3] *= a[1];
            }

            // P = exp2(S - m) as f16 A fragments: k-step s covers keys 16s..16s+15
            uint32_t pa[C::NT / 2][4];
#pragma unroll
            for (int j = 0; j < C::NT; ++j) {
                float pr[4];
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    pr[e] = S[j][e] == -INFINITY ? 0.0f : exp2f(S[j][e] - m[e >> 1]);
                    l[e >> 1] += pr[e];
                }
                pa[j >> 1][(j & 1) * 2 + 0] = pack_half2(pr[0], pr[1]);
                pa[j >> 1][(j & 1) * 2 + 1] = pack_half2(pr[2], pr[3]);
            }

            // O (16 x D) += P (16 x 64) . V (64 x D), f32 accumulation
#pragma unroll
            for (int np = 0; np < D / 16; ++np) {
#pragma unroll
                for (int s = 0; s < C::NT / 2; ++s) {
                    uint32_t b[4];   // keys 16s..16s+15 x dims 16np..16np+15, transposed
                    ldmatrix_x4_trans(b, sV + (16 * s + (lane & 7) + ((lane >> 3) & 1) * 8) * C::LD +
                                             16 * np + (lane >> 4) * 8);
                    mma_16816(O[2 * np + 0], pa[s], b[0], b[1]);
                    mma_16816(O[2 * np + 1], pa[s], b[2], b[3]);
                }
            }
        }
        __syncthreads();   // everyone is done with this stage before it is refilled
    }
    cp_async_wait<0>();

    // ---- finish: quad-reduce the row sums, add the sink, normalise, store -------------------
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        l[e] += __shfl_xor_sync(0xffffffffu, l[e], 1);
        l[e] += __shfl_xor_sync(0xffffffffu, l[e], 2);
        if (p.sinks) {
            const float sink = p.sinks[h] * LOG2E;
            const float mn = fmaxf(m[e], sink);
            const float f = exp2_diff(m[e], mn);
            l[e] = l[e] * f + exp2f(sink - mn);
#pragma unroll
            for (int n = 0; n < D / 8; ++n) {
                O[n][2 * e + 0] *= f;
                O[n][2 * e + 1] *= f;
            }
        }
    }
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        const int t = t0 + warp * 16 + g + 8 * e;
        if (t >= p.n_tokens) {
            continue;
        }
        const float inv = l[e] > 0.0f ? 1.0f / l[e] : 0.0f;
        float * out = p.dst + (((size_t) seq * p.n_tokens + t) * p.n_head + h) * D;
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
            *reinterpret_cast<float2 *>(out + 8 * n + 2 * c) = make_float2(O[n][2 * e] * inv, O[n][2 * e + 1] * inv);
        }
    }
}

} // namespace llamafuse::cuda
