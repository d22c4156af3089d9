#pragma once
// The split-KV decode kernel (see fattn_decode.cuh). Kept in a header, apart from its
// launcher, so that bench/gpu/emu can run the same code on the CPU.
#include "fattn_common.cuh"
#include "fattn_decode.cuh"

namespace llamafuse::cuda {

// ---- configuration -------------------------------------------------------------------------
// A block is 4 warps. A warp is split into lane groups of LPK lanes; a group works on one key
// at a time, each lane holding DPL of the D values (as chunks of 8) for all NQ rows, so the
// NQ dot products of a key cost log2(LPK) shuffle rounds and K/V values are converted once
// and reused NQ times. Keys stream through shared memory in 32-key tiles, STAGES deep, with
// cp.async: the bytes in flight do not depend on registers, which the accumulators need.
template <int D, int NQ, kv_type T> struct decode_cfg {
    static constexpr int WARPS = 4;
    static constexpr int THREADS = WARPS * 32;
    static constexpr int DPL = NQ <= 4 ? 16 : 8;  // values per lane: q and acc are 2*NQ*DPL regs
    static constexpr int SEGS = DPL / 8;           // 8-value chunks per lane
    static constexpr int LPK = D / DPL;            // lanes per key (group size)
    static constexpr int GPW = 32 / LPK;           // groups per warp
    static constexpr int NG = GPW * WARPS;         // groups per block
    static constexpr int TK = DECODE_TILE;         // keys per tile
    static constexpr int KPG = TK / NG;            // keys per group per tile
    static constexpr int ROW = kv_row_bytes(T, D); // bytes per cache row
    static constexpr int CP = T == kv_type::f16 ? 16 : 4;  // cp.async unit (q8_0 rows: 4-aligned)
    static constexpr int STAGES = 4;
    static constexpr int STAGE_BYTES = 2 * TK * ROW;        // K tile then V tile
    static constexpr int MERGE_BYTES = WARPS * NQ * (D + 2) * 4;
    static constexpr int SMEM = STAGES * STAGE_BYTES > MERGE_BYTES ? STAGES * STAGE_BYTES : MERGE_BYTES;

    static_assert(LPK >= 1 && LPK <= 32 && 32 % LPK == 0, "lane group must divide a warp");
    static_assert(KPG >= 1 && TK % NG == 0, "tile must split evenly over the groups");
    static_assert(ROW % CP == 0, "row must be a whole number of copy units");
};

// grid: x = split, y = kv head * row_groups + row group, z = q sequence
template <int D, int NQ, kv_type T>
__global__ void __launch_bounds__(decode_cfg<D, NQ, T>::THREADS, DECODE_BLOCKS_PER_SM)
fattn_decode_kernel(const kernel_args p, const int G, const int rows, const int row_groups,
                    const int chunk, float * __restrict__ part_o, float2 * __restrict__ part_ml) {
    using C = decode_cfg<D, NQ, T>;
    LF_DYNAMIC_SMEM(smem);

    // The combine kernel may be scheduled now; it waits for this whole grid before reading.
    griddep_launch_dependents();

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int li = lane % C::LPK;                  // lane within its group
    const int group = warp * C::GPW + lane / C::LPK;

    const int split = blockIdx.x;
    const int kvh = blockIdx.y / row_groups;
    const int rg = blockIdx.y % row_groups;
    const int seq = blockIdx.z;
    const int seq_kv = seq / (p.n_seq_q / p.n_seq_kv);

    const int k_begin = split * chunk;
    const int k_end = min(p.n_kv, k_begin + chunk);
    const int n_tiles = k_end > k_begin ? (k_end - k_begin + C::TK - 1) / C::TK : 0;

    const uint8_t * kbase = static_cast<const uint8_t *>(p.k) + kvh * p.k_nb2 + seq_kv * p.k_nb3;
    const uint8_t * vbase = static_cast<const uint8_t *>(p.v) + kvh * p.v_nb2 + seq_kv * p.v_nb3;

    // Copy tile `tile` of this chunk (K and V rows) into pipeline stage `stage`. Keys past
    // the cache end re-read its last row (masked below); keys past the chunk are masked too.
    auto load_tile = [&](int tile, int stage) {
        uint8_t * sk = smem + stage * C::STAGE_BYTES;
        uint8_t * sv = sk + C::TK * C::ROW;
        constexpr int UPR = C::ROW / C::CP;   // copy units per row
        const int kt0 = k_begin + tile * C::TK;
        if constexpr (C::THREADS % UPR == 0 && C::TK % (C::THREADS / UPR) == 0) {
            // f16: a thread copies the same 16-byte column of rows kk0, kk0 + RS, ...: one
            // pointer per tile, stepped by RS rows (the index math is most of the copy cost)
            constexpr int RS = C::THREADS / UPR;
            const int kk0 = threadIdx.x / UPR;
            const int off = (threadIdx.x % UPR) * C::CP;
            if (kt0 + C::TK <= p.n_kv) {
                const uint8_t * ks = kbase + (int64_t) (kt0 + kk0) * p.k_nb1 + off;
                const uint8_t * vs = vbase + (int64_t) (kt0 + kk0) * p.v_nb1 + off;
#pragma unroll
                for (int j = 0; j < C::TK / RS; ++j) {
                    cp_async_16(sk + (kk0 + j * RS) * C::ROW + off, ks + (int64_t) j * RS * p.k_nb1);
                    cp_async_16(sv + (kk0 + j * RS) * C::ROW + off, vs + (int64_t) j * RS * p.v_nb1);
                }
            } else {   // the cache's last tile: rows past its end re-read the last row
#pragma unroll
                for (int j = 0; j < C::TK / RS; ++j) {
                    const int64_t key = min(kt0 + kk0 + j * RS, p.n_kv - 1);
                    cp_async_16(sk + (kk0 + j * RS) * C::ROW + off, kbase + key * p.k_nb1 + off);
                    cp_async_16(sv + (kk0 + j * RS) * C::ROW + off, vbase + key * p.v_nb1 + off);
                }
            }
        } else {
            for (int i = threadIdx.x; i < C::TK * UPR; i += C::THREADS) {
                const int kk = i / UPR;
                const int off = (i % UPR) * C::CP;
                const int64_t key = min(kt0 + kk, p.n_kv - 1);
                if constexpr (C::CP == 16) {
                    cp_async_16(sk + kk * C::ROW + off, kbase + key * p.k_nb1 + off);
                    cp_async_16(sv + kk * C::ROW + off, vbase + key * p.v_nb1 + off);
                } else {
                    cp_async_4(sk + kk * C::ROW + off, kbase + key * p.k_nb1 + off);
                    cp_async_4(sv + kk * C::ROW + off, vbase + key * p.v_nb1 + off);
                }
            }
        }
    };

    // Start the pipeline before the per-row setup so the first bytes are already moving.
#pragma unroll
    for (int s = 0; s < C::STAGES - 1; ++s) {
        if (s < n_tiles) {
            load_tile(s, s);
        }
        cp_async_commit();
    }

    // ---- per-row setup: q in registers (pre-scaled), ALiBi slope, mask row ---------------
    // The lane's values are chunks c = li + s*LPK (8 values each): a group reads a row in
    // contiguous 16-byte pieces, which keeps the shared-memory reads free of bank conflicts.
    const bool softcap = p.softcap != 0.0f;
    const float q_scale = softcap ? p.scale / p.softcap : p.scale * LOG2E;  // cap: s = cap*tanh(scale*qk/cap)
    const float cap_l2 = p.softcap * LOG2E;

    float qr[NQ][C::DPL];
    float slope_l2[NQ];
    const __half * mrow[NQ];
#pragma unroll
    for (int q = 0; q < NQ; ++q) {
        const int r = min(rg * NQ + q, rows - 1);  // rows past the end compute junk, never stored
        const int t = r / G;
        const int h = kvh * G + r % G;
        const float * qp = reinterpret_cast<const float *>(
            reinterpret_cast<const uint8_t *>(p.q) + t * p.q_nb1 + h * p.q_nb2 + seq * p.q_nb3);
#pragma unroll
        for (int s = 0; s < C::SEGS; ++s) {
            const int c = li + s * C::LPK;
            const float4 a = *reinterpret_cast<const float4 *>(qp + 8 * c);
            const float4 b = *reinterpret_cast<const float4 *>(qp + 8 * c + 4);
            const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                qr[q][s * 8 + j] = v[j] * q_scale;
            }
        }
        slope_l2[q] = alibi_slope(p.max_bias, h, p.n_head) * LOG2E;
        mrow[q] = p.mask ? reinterpret_cast<const __half *>(reinterpret_cast<const uint8_t *>(p.mask) +
                                                            t * p.mask_nb1 + (seq % p.n_seq_mask) * p.mask_nb3)
                         : nullptr;
    }

    // all the block's rows on one token (G >= NQ with one token per row group): mask read once
    const bool one_token = (rg * NQ) / G == min(rg * NQ + NQ - 1, rows - 1) / G;
    const bool has_mask = p.mask != nullptr;

    float m[NQ], l[NQ], acc[NQ][C::DPL];
#pragma unroll
    for (int q = 0; q < NQ; ++q) {
        m[q] = -INFINITY;
        l[q] = 0.0f;
#pragma unroll
        for (int j = 0; j < C::DPL; ++j) {
            acc[q][j] = 0.0f;
        }
    }

    // ---- main loop over tiles ----------------------------------------------------------
    for (int tile = 0; tile < n_tiles; ++tile) {
        cp_async_wait<C::STAGES - 2>();
        __syncthreads();  // tile `tile` visible to all; stage (tile-1)%STAGES free to refill
        if (tile + C::STAGES - 1 < n_tiles) {
            load_tile(tile + C::STAGES - 1, (tile + C::STAGES - 1) % C::STAGES);
        }
        cp_async_commit();

        const uint8_t * sk = smem + (tile % C::STAGES) * C::STAGE_BYTES;
        const uint8_t * sv = sk + C::TK * C::ROW;
        const int kt0 = k_begin + tile * C::TK;

        // scores: s[u][q] = q_q . k_key, key = kt0 + u*NG + group
        float s[C::KPG][NQ];
#pragma unroll
        for (int u = 0; u < C::KPG; ++u) {
            const uint8_t * row = sk + (u * C::NG + group) * C::ROW;
#pragma unroll
            for (int q = 0; q < NQ; ++q) {
                s[u][q] = 0.0f;
            }
#pragma unroll
            for (int sg = 0; sg < C::SEGS; ++sg) {
                float kv[8];
                load_chunk8<T>(row, li + sg * C::LPK, kv);
#pragma unroll
                for (int q = 0; q < NQ; ++q) {
#pragma unroll
                    for (int j = 0; j < 8; ++j) {
                        s[u][q] = fmaf(qr[q][sg * 8 + j], kv[j], s[u][q]);
                    }
                }
            }
        }
        // sum the partial dot products across the group's lanes (groups are LPK-aligned)
#pragma unroll
        for (int off = C::LPK / 2; off > 0; off >>= 1) {
#pragma unroll
            for (int u = 0; u < C::KPG; ++u) {
#pragma unroll
                for (int q = 0; q < NQ; ++q) {
                    s[u][q] += __shfl_xor_sync(0xffffffffu, s[u][q], off);
                }
            }
        }

        // soft-cap, mask (scaled by the ALiBi slope), chunk end; everything in log2 units.
        // A masked key is -inf outright, so garbage in padded cache rows cannot leak in.
#pragma unroll
        for (int u = 0; u < C::KPG; ++u) {
            const int key = kt0 + u * C::NG + group;
            const bool valid = key < k_end;
            const int keyc = min(key, k_end - 1);   // always readable: loads need no branch
            float mv[NQ];
            if (has_mask) {
                // one token for all rows (decode of one token: the common case): one read
                const float m0 = __half2float(mrow[0][keyc]);
#pragma unroll
                for (int q = 0; q < NQ; ++q) {
                    mv[q] = (one_token || q == 0) ? m0 : __half2float(mrow[q][keyc]);
                }
            } else {
#pragma unroll
                for (int q = 0; q < NQ; ++q) mv[q] = 0.0f;
            }
#pragma unroll
            for (int q = 0; q < NQ; ++q) {
                const float x = softcap ? cap_l2 * tanhf(s[u][q]) : s[u][q];
                s[u][q] = (!valid || mv[q] == -INFINITY) ? -INFINITY : fmaf(slope_l2[q], mv[q], x);
            }
        }

        // online softmax, once per tile: new max, rescale acc and sum, probabilities
        float a_scale[NQ];
#pragma unroll
        for (int q = 0; q < NQ; ++q) {
            float mt = s[0][q];
#pragma unroll
            for (int u = 1; u < C::KPG; ++u) {
                mt = fmaxf(mt, s[u][q]);
            }
            const float mn = fmaxf(m[q], mt);
            a_scale[q] = exp2_diff(m[q], mn);
            m[q] = mn;
            l[q] *= a_scale[q];
            // exp2(-inf - finite) is 0: only an all-masked row so far (mn = -inf) needs care
            const float mn_safe = mn == -INFINITY ? 0.0f : mn;
#pragma unroll
            for (int u = 0; u < C::KPG; ++u) {
                const float pr = fast_exp2(s[u][q] - mn_safe);
                s[u][q] = pr;
                l[q] += pr;
            }
        }
        // Rescale the accumulators only when some running max moved: after the first tiles
        // it rarely does, and the multiplies are a tenth of the loop's instructions.
        bool moved = false;
#pragma unroll
        for (int q = 0; q < NQ; ++q) {
            moved |= a_scale[q] != 1.0f;
        }
        if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
            for (int q = 0; q < NQ; ++q) {
#pragma unroll
                for (int j = 0; j < C::DPL; ++j) {
                    acc[q][j] *= a_scale[q];
                }
            }
        }

        // acc[q][:] += p[u][q] * v_key[:]   (f32 accumulation)
#pragma unroll
        for (int u = 0; u < C::KPG; ++u) {
            bool any = false;
#pragma unroll
            for (int q = 0; q < NQ; ++q) {
                any |= s[u][q] > 0.0f;
            }
            if (!any) {
                continue;  // the same key for the whole group: a group-uniform branch
            }
            const uint8_t * row = sv + (u * C::NG + group) * C::ROW;
#pragma unroll
            for (int sg = 0; sg < C::SEGS; ++sg) {
                float vv[8];
                load_chunk8<T>(row, li + sg * C::LPK, vv);
#pragma unroll
                for (int q = 0; q < NQ; ++q) {
#pragma unroll
                    for (int j = 0; j < 8; ++j) {
                        acc[q][sg * 8 + j] = fmaf(s[u][q], vv[j], acc[q][sg * 8 + j]);
                    }
                }
            }
        }
    }
    cp_async_wait<0>();
    __syncthreads();  // the pipeline's shared memory is reused for the merge below

    // ---- merge the groups of a warp (same values, different keys) ----------------------
#pragma unroll
    for (int off = C::LPK; off < 32; off <<= 1) {
#pragma unroll
        for (int q = 0; q < NQ; ++q) {
            const float mo = __shfl_xor_sync(0xffffffffu, m[q], off);
            const float lo = __shfl_xor_sync(0xffffffffu, l[q], off);
            const float mn = fmaxf(m[q], mo);
            const float a = exp2_diff(m[q], mn);
            const float b = exp2_diff(mo, mn);
            m[q] = mn;
            l[q] = l[q] * a + lo * b;
#pragma unroll
            for (int j = 0; j < C::DPL; ++j) {
                const float ao = __shfl_xor_sync(0xffffffffu, acc[q][j], off);
                acc[q][j] = acc[q][j] * a + ao * b;
            }
        }
    }

    // ---- merge the warps through shared memory: [warp][q][D] values, [warp][q] (m, l) ---
    float * s_acc = reinterpret_cast<float *>(smem);
    float2 * s_ml = reinterpret_cast<float2 *>(s_acc + C::WARPS * NQ * D);
    if (lane < C::LPK) {
#pragma unroll
        for (int q = 0; q < NQ; ++q) {
#pragma unroll
            for (int sg = 0; sg < C::SEGS; ++sg) {
                const int c = li + sg * C::LPK;
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    s_acc[(warp * NQ + q) * D + 8 * c + j] = acc[q][sg * 8 + j];
                }
            }
            if (lane == 0) {
                s_ml[warp * NQ + q] = make_float2(m[q], l[q]);
            }
        }
    }
    __syncthreads();

    const int rows_total = p.n_seq_q * p.n_head_kv * rows;
    for (int i = threadIdx.x; i < NQ * D; i += C::THREADS) {
        const int q = i / D;
        const int d = i % D;
        const int r = rg * NQ + q;
        if (r >= rows) {
            continue;
        }
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < C::WARPS; ++w) {
            M = fmaxf(M, s_ml[w * NQ + q].x);
        }
        float L = 0.0f, O = 0.0f;
#pragma unroll
        for (int w = 0; w < C::WARPS; ++w) {
            const float2 ml = s_ml[w * NQ + q];
            const float wgt = exp2_diff(ml.x, M);
            L += ml.y * wgt;
            O += s_acc[(w * NQ + q) * D + d] * wgt;
        }
        const size_t row_id = ((size_t) seq * p.n_head_kv + kvh) * rows + r;
        part_o[((size_t) split * rows_total + row_id) * D + d] = O;
        if (d == 0) {
            part_ml[(size_t) split * rows_total + row_id] = make_float2(M, L);
        }
    }
}

} // namespace llamafuse::cuda
