#pragma once
// The EXPERIMENTAL wgmma prefill kernel (see fattn_prefill_wgmma.cuh), in a header so that
// bench/gpu/emu can run it on the CPU (wgmma emulated from the descriptor model below).
#include "fattn_common.cuh"
#include "fattn_prefill_kernel.cuh"   // ldmatrix_x4, pack_half2
#include "fattn_wgmma.cuh"

namespace llamafuse::cuda {

// WG warpgroups per block, 64 query rows each, sharing every K/V tile: WG = 2 halves the
// K/V traffic from L2 per FLOP (at one block per multiprocessor instead of two).
template <int D, int WG> struct wg_cfg {
    static constexpr int THREADS = 128 * WG;
    static constexpr int BQ = 64 * WG;             // query rows: wgmma's M per warpgroup
    static constexpr int BK = 64;                  // keys per tile: N of S, K of P.V
    static constexpr int LDQ = D + 8;              // Q staging row stride (ldmatrix, padded)
    static constexpr int Q_BYTES = BQ * LDQ * 2;
    // K and V tiles: core matrices of 8 keys x 8 values (128 B); core (key/8, chunk c) at
    // (key/8) * D*16 + c * 128, row key%8 at +16 * (key%8). The same layout serves as the
    // K-major B of S = Q.K^T (N = keys, K = dims) and the MN-major B of O = P.V (K = keys,
    // N = dims).
    static constexpr int TILE_BYTES = BK * D * 2;
    static constexpr int SMEM = Q_BYTES + 2 * 2 * TILE_BYTES;   // Q | 2 stages x (K, V)
};

// grid: x = block of 64 query tokens, y = q head, z = q sequence
template <int D, int VARIANT, int WG>
__global__ void __launch_bounds__(128 * WG, WG == 1 ? 2 : 1) fattn_prefill_wgmma_kernel(const kernel_args p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) || defined(LF_CUDA_EMU)
    using C = wg_cfg<D, WG>;
    LF_DYNAMIC_SMEM(smem);
    __half * sQ = reinterpret_cast<__half *>(smem);
    uint8_t * sKV = smem + C::Q_BYTES;   // [stage][K | V][TILE_BYTES]

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int g = lane >> 2;
    const int c = lane & 3;

    const int t0 = blockIdx.x * C::BQ;
    const int h = blockIdx.y;
    const int seq = blockIdx.z;
    const int G = p.n_head / p.n_head_kv;
    const int kvh = h / G;
    const int seq_kv = seq / (p.n_seq_q / p.n_seq_kv);
    const uint8_t * kbase = static_cast<const uint8_t *>(p.k) + kvh * p.k_nb2 + seq_kv * p.k_nb3;
    const uint8_t * vbase = static_cast<const uint8_t *>(p.v) + kvh * p.v_nb2 + seq_kv * p.v_nb3;
    const int n_tiles = (p.n_kv + C::BK - 1) / C::BK;

    auto load_tile = [&](int tile, int st) {
        constexpr int UPR = D / 8;   // 16-byte chunks per row
        uint8_t * dk = sKV + (st * 2 + 0) * C::TILE_BYTES;
        uint8_t * dv = sKV + (st * 2 + 1) * C::TILE_BYTES;
        const int k0 = tile * C::BK;
        for (int i = threadIdx.x; i < C::BK * UPR; i += C::THREADS) {
            const int kk = i / UPR, ch = i % UPR;
            const int64_t key = min(k0 + kk, p.n_kv - 1);
            const int off = (kk >> 3) * (D * 16) + ch * 128 + (kk & 7) * 16;
            cp_async_16(dk + off, kbase + key * p.k_nb1 + ch * 16);
            cp_async_16(dv + off, vbase + key * p.v_nb1 + ch * 16);
        }
    };

    load_tile(0, 0);
    cp_async_commit();

    const bool softcap = p.softcap != 0.0f;
    const float q_scale = softcap ? p.scale / p.softcap : p.scale * LOG2E;
    const float cap_l2 = p.softcap * LOG2E;
    for (int i = threadIdx.x; i < C::BQ * (D / 4); i += C::THREADS) {
        const int r = i / (D / 4), c4 = i % (D / 4);
        const int t = min(t0 + r, p.n_tokens - 1);
        const float4 x = *reinterpret_cast<const float4 *>(
            reinterpret_cast<const uint8_t *>(p.q) + t * p.q_nb1 + h * p.q_nb2 + seq * p.q_nb3 + c4 * 16);
        __half2 * d = reinterpret_cast<__half2 *>(sQ + r * C::LDQ + c4 * 4);
        d[0] = __floats2half2_rn(x.x * q_scale, x.y * q_scale);
        d[1] = __floats2half2_rn(x.z * q_scale, x.w * q_scale);
    }
    __syncthreads();

    // Q as wgmma A fragments: per warp 16 rows, the same register layout as mma.sync's A
    uint32_t qa[D / 16][4];
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
        const int row = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        const int col = ks * 16 + (lane >> 4) * 8;
        ldmatrix_x4(qa[ks], sQ + row * C::LDQ + col);
    }

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

    // accumulators in wgmma's layout: chunk j of 8 columns at [4j .. 4j+3] =
    // (row g, cols 2c, 2c+1), (row g+8, cols 2c, 2c+1) of the warp's 16 rows
    float O[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) O[i] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY};
    float l[2] = {0.0f, 0.0f};

    // V descriptor strides: the K direction (keys) steps D*16 bytes, the N direction
    // (dims) 128 bytes; VARIANT says which of the two the hardware takes as LBO.
    constexpr uint32_t V_LBO = VARIANT == 0 ? D * 16 : 128;
    constexpr uint32_t V_SBO = VARIANT == 0 ? 128 : D * 16;

    for (int tile = 0; tile < n_tiles; ++tile) {
        if (tile + 1 < n_tiles) {
            load_tile(tile + 1, (tile + 1) & 1);
        }
        cp_async_commit();

        const int k0 = tile * C::BK;
        float bias[32];
        bool live_any = false;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int key = k0 + 8 * j + 2 * c + (e & 1);
                float mv = 0.0f;
                if (key < p.n_kv && mrow[e >> 1] != nullptr) {
                    mv = __half2float(mrow[e >> 1][key]);
                }
                const bool live = key < p.n_kv && mv != -INFINITY;
                bias[4 * j + e] = live ? slope_l2 * mv : -INFINITY;
                live_any |= live;
            }
        }

        cp_async_wait<1>();
        wgmma::fence_proxy_async_smem();   // cp.async wrote what wgmma reads next
        const bool block_live = __syncthreads_or(live_any);
        const uint8_t * sK = sKV + ((tile & 1) * 2 + 0) * C::TILE_BYTES;
        const uint8_t * sV = sKV + ((tile & 1) * 2 + 1) * C::TILE_BYTES;

        if (block_live) {
            // S (64 x 64 keys) = Q (64 x D) . K^T: k-step ks reads dims 16ks..16ks+15
            float S[32];
#pragma unroll
            for (int i = 0; i < 32; ++i) S[i] = 0.0f;
            wgmma::fence_operands(S);
            wgmma::fence();
#pragma unroll
            for (int ks = 0; ks < D / 16; ++ks) {
                const uint64_t desc = wgmma::make_desc(sK + ks * 2 * 128, 128, D * 16);
                wgmma::wgmma_m64n64k16_rs_k(S, qa[ks], desc, ks > 0);
            }
            wgmma::commit();
            wgmma::wait<0>();
            wgmma::fence_operands(S);

            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int i = 0; i < 32; ++i) {
                const float x = softcap ? cap_l2 * tanhf(S[i]) : S[i];
                S[i] = bias[i] == -INFINITY ? -INFINITY : x + bias[i];
                mx[(i >> 1) & 1] = fmaxf(mx[(i >> 1) & 1], S[i]);
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
            for (int i = 0; i < D / 2; ++i) O[i] *= a[(i >> 1) & 1];

            // P as A fragments: k-step s (keys 16s..16s+15) = chunks 2s, 2s+1
            uint32_t pa[4][4];
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                float pr[4];
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const float s = S[4 * j + e];
                    pr[e] = s == -INFINITY ? 0.0f : exp2f(s - m[e >> 1]);
                    l[e >> 1] += pr[e];
                }
                pa[j >> 1][(j & 1) * 2 + 0] = pack_half2(pr[0], pr[1]);
                pa[j >> 1][(j & 1) * 2 + 1] = pack_half2(pr[2], pr[3]);
            }

            // O (64 x D) += P (64 x 64 keys) . V (64 keys x D), f32 accumulation
            wgmma::fence_operands(O);
            wgmma::fence();
#pragma unroll
            for (int s = 0; s < 4; ++s) {
                const uint64_t desc = wgmma::make_desc(sV + s * 2 * (D * 16), V_LBO, V_SBO);
                if constexpr (D == 128) {
                    wgmma::wgmma_m64n128k16_rs_t(O, pa[s], desc, 1);
                } else {
                    wgmma::wgmma_m64n64k16_rs_t(O, pa[s], desc, 1);
                }
            }
            wgmma::commit();
            wgmma::wait<0>();
            wgmma::fence_operands(O);
        }
        __syncthreads();
    }
    cp_async_wait<0>();

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
                O[4 * n + 2 * e + 0] *= f;
                O[4 * n + 2 * e + 1] *= f;
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
            *reinterpret_cast<float2 *>(out + 8 * n + 2 * c) =
                make_float2(O[4 * n + 2 * e] * inv, O[4 * n + 2 * e + 1] * inv);
        }
    }
#else
    __trap();   // built without sm_90a: wgmma does not exist here
#endif
}

} // namespace llamafuse::cuda
