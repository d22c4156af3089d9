#pragma once
// Split-KV decode on tensor cores (see fattn_decode_mma.cuh). Same partials as
// fattn_decode_kernel (merged by fattn_combine), different inner loop: the kv head's rows
// (G q heads x tokens, padded to 16) are the M of mma.sync m16n8k16, so one HMMA replaces
// ~40 FFMA/convert instructions per key and the loop stops being instruction-bound.
// Q and P enter the tensor cores as f16 (accumulation stays f32): a 5e-3 path, not 1e-4.
#include "fattn_common.cuh"
#include "fattn_decode.cuh"
#include "fattn_prefill_kernel.cuh"   // ldmatrix_x4(_trans), mma_16816, pack_half2

namespace llamafuse::cuda {

constexpr int DECODE_MMA_TILE = 64;   // keys per tile: 16 per warp

template <int D> struct decode_mma_cfg {
    static constexpr int WARPS = 4;
    static constexpr int THREADS = WARPS * 32;
    static constexpr int ROWS = 16;                   // mma M: rows of the kv head per block
    static constexpr int BK = DECODE_MMA_TILE;
    static constexpr int KS = D / 16;                 // k-steps over the head dim
    static constexpr int LD = D + 8;                  // padded f16 row (ldmatrix bank spread)
    static constexpr int TILE_BYTES = BK * LD * 2;
    static constexpr int STAGES = 3;
    static constexpr int Q_BYTES = ROWS * LD * 2;
    static constexpr int PIPE_BYTES = Q_BYTES + STAGES * 2 * TILE_BYTES;
    static constexpr int MERGE_BYTES = WARPS * ROWS * (D + 2) * 4;
    static constexpr int SMEM = PIPE_BYTES > MERGE_BYTES ? PIPE_BYTES : MERGE_BYTES;
};

// grid: x = split, y = kv head * row_groups + row group (16 rows each), z = q sequence
template <int D>
__global__ void __launch_bounds__(128, 2)
fattn_decode_mma_kernel(const kernel_args p, const int G, const int rows, const int row_groups,
                        const int chunk, float * __restrict__ part_o, float2 * __restrict__ part_ml) {
    using C = decode_mma_cfg<D>;
    griddep_launch_dependents();   // the combine kernel waits for this whole grid anyway
    LF_DYNAMIC_SMEM(smem);
    __half * sQ = reinterpret_cast<__half *>(smem);
    __half * sKV = reinterpret_cast<__half *>(smem + C::Q_BYTES);   // [stage][K|V][BK][LD]

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int g = lane >> 2;
    const int c = lane & 3;

    const int split = blockIdx.x;
    const int kvh = blockIdx.y / row_groups;
    const int rg = blockIdx.y % row_groups;
    const int seq = blockIdx.z;
    const int seq_kv = seq / (p.n_seq_q / p.n_seq_kv);

    const int k_begin = split * chunk;
    const int k_end = min(p.n_kv, k_begin + chunk);
    const int n_tiles = k_end > k_begin ? (k_end - k_begin + C::BK - 1) / C::BK : 0;

    const uint8_t * kbase = static_cast<const uint8_t *>(p.k) + kvh * p.k_nb2 + seq_kv * p.k_nb3;
    const uint8_t * vbase = static_cast<const uint8_t *>(p.v) + kvh * p.v_nb2 + seq_kv * p.v_nb3;

    // a thread copies the same 16-byte column of rows kk0, kk0 + RS, ... of each tile
    auto load_tile = [&](int tile, int st) {
        constexpr int UPR = D / 8;
        constexpr int RS = C::THREADS / UPR;
        __half * dk = sKV + (st * 2 + 0) * C::BK * C::LD;
        __half * dv = sKV + (st * 2 + 1) * C::BK * C::LD;
        const int k0 = k_begin + tile * C::BK;
        const int kk0 = threadIdx.x / UPR;
        const int ch = threadIdx.x % UPR;
        const bool full = k0 + C::BK <= p.n_kv;
#pragma unroll
        for (int j = 0; j < C::BK / RS; ++j) {
            const int kk = kk0 + j * RS;
            const int64_t key = full ? k0 + kk : min(k0 + kk, p.n_kv - 1);   // past the end: last row
            cp_async_16(dk + kk * C::LD + ch * 8, kbase + key * p.k_nb1 + ch * 16);
            cp_async_16(dv + kk * C::LD + ch * 8, vbase + key * p.v_nb1 + ch * 16);
        }
    };

#pragma unroll
    for (int s = 0; s < C::STAGES - 1; ++s) {
        if (s < n_tiles) {
            load_tile(s, s);
        }
        cp_async_commit();
    }

    // ---- the block's 16 rows: Q as pre-scaled f16, then A fragments (same for every warp) ----
    const bool softcap = p.softcap != 0.0f;
    const float q_scale = softcap ? p.scale / p.softcap : p.scale * LOG2E;
    const float cap_l2 = p.softcap * LOG2E;
    for (int i = threadIdx.x; i < C::ROWS * (D / 4); i += C::THREADS) {
        const int ri = i / (D / 4), c4 = i % (D / 4);
        const int r = min(rg * C::ROWS + ri, rows - 1);   // padding rows: junk, never stored
        const int t = r / G;
        const int h = kvh * G + r % G;
        const float4 x = *reinterpret_cast<const float4 *>(
            reinterpret_cast<const uint8_t *>(p.q) + t * p.q_nb1 + h * p.q_nb2 + seq * p.q_nb3 + c4 * 16);
        __half2 * d = reinterpret_cast<__half2 *>(sQ + ri * C::LD + c4 * 4);
        d[0] = __floats2half2_rn(x.x * q_scale, x.y * q_scale);
        d[1] = __floats2half2_rn(x.z * q_scale, x.w * q_scale);
    }
    __syncthreads();
    uint32_t qa[C::KS][4];
#pragma unroll
    for (int ks = 0; ks < C::KS; ++ks) {
        ldmatrix_x4(qa[ks], sQ + ((lane & 7) + ((lane >> 3) & 1) * 8) * C::LD + ks * 16 + (lane >> 4) * 8);
    }

    // this thread's accumulator rows: g and g + 8 of the 16
    float slope_l2[2];
    const __half * mrow[2] = {nullptr, nullptr};
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        const int r = min(rg * C::ROWS + g + 8 * e, rows - 1);
        slope_l2[e] = alibi_slope(p.max_bias, kvh * G + r % G, p.n_head) * LOG2E;
        if (p.mask) {
            mrow[e] = reinterpret_cast<const __half *>(reinterpret_cast<const uint8_t *>(p.mask) +
                                                       (r / G) * p.mask_nb1 + (seq % p.n_seq_mask) * p.mask_nb3);
        }
    }

    float O[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; ++n) O[n][0] = O[n][1] = O[n][2] = O[n][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY};
    float l[2] = {0.0f, 0.0f};   // per-thread partial sums, quad-reduced at the end

    for (int tile = 0; tile < n_tiles; ++tile) {
        cp_async_wait<C::STAGES - 2>();
        __syncthreads();
        if (tile + C::STAGES - 1 < n_tiles) {
            load_tile(tile + C::STAGES - 1, (tile + C::STAGES - 1) % C::STAGES);
        }
        cp_async_commit();

        const int st = tile % C::STAGES;
        const __half * sK = sKV + (st * 2 + 0) * C::BK * C::LD;
        const __half * sV = sKV + (st * 2 + 1) * C::BK * C::LD;
        const int kw = warp * 16;                           // the warp's keys within the tile
        const int key0 = k_begin + tile * C::BK + kw;

        // mask bias of this thread's 2 x 8 scores (keys key0 + 8j + 2c + {0,1})
        float bias[2][4];
        bool live = false;
#pragma unroll
        for (int j = 0; j < 2; ++j) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int key = key0 + 8 * j + 2 * c + (e & 1);
                const bool valid = key < k_end;
                const float mv = mrow[e >> 1] ? __half2float(mrow[e >> 1][min(key, k_end - 1)]) : 0.0f;
                const bool ok = valid && mv != -INFINITY;
                bias[j][e] = ok ? slope_l2[e >> 1] * mv : -INFINITY;
                live |= ok;
            }
        }
        if (!__any_sync(0xffffffffu, live)) {
            continue;   // all 16 keys of this warp masked or past the chunk (warp-uniform)
        }

        // S (16 rows x 16 keys) = Q (16 x D) . K^T (D x 16)
        float S[2][4];
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            S[j][0] = S[j][1] = S[j][2] = S[j][3] = 0.0f;
#pragma unroll
            for (int kp = 0; kp < C::KS / 2; ++kp) {
                uint32_t b[4];
                ldmatrix_x4(b, sK + (kw + 8 * j + (lane & 7)) * C::LD + 32 * kp + (lane >> 3) * 8);
                mma_16816(S[j], qa[2 * kp + 0], b[0], b[1]);
                mma_16816(S[j], qa[2 * kp + 1], b[2], b[3]);
            }
        }

        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < 2; ++j) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float x = softcap ? cap_l2 * tanhf(S[j][e]) : S[j][e];
                S[j][e] = bias[j][e] == -INFINITY ? -INFINITY : x + bias[j][e];
                mx[e >> 1] = fmaxf(mx[e >> 1], S[j][e]);
            }
        }
        float a[2], mn_safe[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            mx[e] = fmaxf(mx[e], __shfl_xor_sync(0xffffffffu, mx[e], 1));
            mx[e] = fmaxf(mx[e], __shfl_xor_sync(0xffffffffu, mx[e], 2));
            const float mn = fmaxf(m[e], mx[e]);
            a[e] = exp2_diff(m[e], mn);
            m[e] = mn;
            l[e] *= a[e];
            mn_safe[e] = mn == -INFINITY ? 0.0f : mn;
        }
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
            O[n][0] *= a[0];
            O[n][1] *= a[0];
            O[n][2] *= a[1];
            O[n][3] *= a[1];
        }

        // P (16 x 16 keys) as one f16 A fragment
        uint32_t pa[4];
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            float pr[4];
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                pr[e] = fast_exp2(S[j][e] - mn_safe[e >> 1]);
                l[e >> 1] += pr[e];
            }
            pa[j * 2 + 0] = pack_half2(pr[0], pr[1]);
            pa[j * 2 + 1] = pack_half2(pr[2], pr[3]);
        }

        // O (16 x D) += P (16 x 16 keys) . V (16 keys x D), f32 accumulation
#pragma unroll
        for (int np = 0; np < D / 16; ++np) {
            uint32_t b[4];
            ldmatrix_x4_trans(b, sV + (kw + (lane & 7) + ((lane >> 3) & 1) * 8) * C::LD + 16 * np + (lane >> 4) * 8);
            mma_16816(O[2 * np + 0], pa, b[0], b[1]);
            mma_16816(O[2 * np + 1], pa, b[2], b[3]);
        }
    }
    cp_async_wait<0>();
    __syncthreads();   // the pipeline's shared memory becomes the merge buffer

    // ---- merge the 4 warps (same rows, different keys) ---------------------------------------
    float * s_o = reinterpret_cast<float *>(smem);                     // [warp][16][D]
    float2 * s_ml = reinterpret_cast<float2 *>(s_o + C::WARPS * C::ROWS * D);   // [warp][16]
#pragma unroll
    for (int e = 0; e < 2; ++e) {
        l[e] += __shfl_xor_sync(0xffffffffu, l[e], 1);
        l[e] += __shfl_xor_sync(0xffffffffu, l[e], 2);
        const int ri = g + 8 * e;
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
            s_o[(warp * C::ROWS + ri) * D + 8 * n + 2 * c + 0] = O[n][2 * e + 0];
            s_o[(warp * C::ROWS + ri) * D + 8 * n + 2 * c + 1] = O[n][2 * e + 1];
        }
        if (c == 0) {
            s_ml[warp * C::ROWS + ri] = make_float2(m[e], l[e]);
        }
    }
    __syncthreads();

    const int rows_total = p.n_seq_q * p.n_head_kv * rows;
    for (int i = threadIdx.x; i < C::ROWS * D; i += C::THREADS) {
        const int ri = i / D, d = i % D;
        const int r = rg * C::ROWS + ri;
        if (r >= rows) {
            continue;
        }
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < C::WARPS; ++w) M = fmaxf(M, s_ml[w * C::ROWS + ri].x);
        float L = 0.0f, Ov = 0.0f;
#pragma unroll
        for (int w = 0; w < C::WARPS; ++w) {
            const float2 ml = s_ml[w * C::ROWS + ri];
            const float wgt = exp2_diff(ml.x, M);
            L += ml.y * wgt;
            Ov += s_o[(w * C::ROWS + ri) * D + d] * wgt;
        }
        const size_t row_id = ((size_t) seq * p.n_head_kv + kvh) * rows + r;
        part_o[((size_t) split * rows_total + row_id) * D + d] = Ov;
        if (d == 0) {
            part_ml[(size_t) split * rows_total + row_id] = make_float2(M, L);
        }
    }
}

} // namespace llamafuse::cuda
