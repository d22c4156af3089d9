// Inner loops of the fused CPU attention, one table per instruction set. The driver
// (fattn_cpu.cpp) walks KV blocks of KB keys for a group of R <= RMAX query rows that share
// one K/V head, and calls these per block:
//   mask     mv[r][j] = slope[r]·mask_r[j]; returns false when every entry is -inf (skip block)
//   scores   s[r][j]  = qs[r]·k_j          (qs already scaled; all R rows from one read of k_j)
//   softmax  s ← softcap/mask applied, online-softmax update of m, l and o; s becomes p
//   accum    o[r][:] += Σ_j p[r][j]·v_j   (all R rows from one read of v_j)
#pragma once

#include "fattn_cpu.h"

namespace llamafuse {
namespace cpu {

constexpr int KB      = 32;  // keys per block
constexpr int RMAX    = 8;   // query rows per group, dot-form path (decode, small batches)
constexpr int RTILE   = 96;  // query rows per group, tiled path (batches; a multiple of the 6-row microkernel)
constexpr int ROWS_MAX = RTILE;

using mask_fn    = bool (*)(const uint16_t * const * mrow, const float * slope, int R, int nk, float * mv);
// Byte ranges of the next block's K and V that this call prefetches (into L2), spread evenly
// over its KB keys. The dot-form driver gives each group of a band one slice of the band's next
// block, so the whole block is fetched once, in order: the hardware prefetchers alone do not
// keep up with a band's interleaved, page-crossing reads.
struct prefetch_range {
    const char * k;
    const char * v;
    size_t k_len, v_len;
};

using scores_fn  = void (*)(const float * qs, int64_t DK, const char * k, size_t k_nb1, int nk, float * s,
                            const prefetch_range * pf);
using softmax_fn = void (*)(float * s, const float * mv, float softcap, int R, int nk,
                            float * m, float * l, float * o, int64_t DV);
using accum_fn   = void (*)(const float * p, const char * v, size_t v_nb1, int nk, float * o, int64_t DV);

// Tiled path (GEMM form, for many rows per group): a block of KB keys is converted to f32 once
// per group, K transposed (kt[d][j]) and V as rows (vf[j][d]); keys j >= nk are zero-filled.
//   qk   s[r][j]  = qs[r]·kt[:][j]     for R rows (any R <= RTILE)
//   pv   o[r][:] += Σ_j p[r][j]·vf[j]
using kconv_fn = void (*)(const char * k, size_t k_nb1, int nk, int64_t DK, float * kt);
using vconv_fn = void (*)(const char * v, size_t v_nb1, int nk, int64_t DV, float * vf);
using qk_fn    = void (*)(const float * qs, int R, int64_t DK, const float * kt, float * s);
using pv_fn    = void (*)(const float * p, int R, const float * vf, int64_t DV, float * o);

struct fattn_ops {
    mask_fn    mask;
    softmax_fn softmax;
    scores_fn  scores[2][RMAX];  // [kv_type][R-1]
    accum_fn   accum[2][RMAX];
    kconv_fn   kconv[2];
    vconv_fn   vconv[2];
    qk_fn      qk;
    pv_fn      pv;
};

const fattn_ops * fattn_ops_portable();
const fattn_ops * fattn_ops_avx2();  // null when not built for x86-64

} // namespace cpu
} // namespace llamafuse
