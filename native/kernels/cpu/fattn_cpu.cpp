// Driver of the fused CPU attention: splits the op into groups of query rows that share one
// K/V head (all G heads of a GQA group, and several tokens when G is small), walks the keys in
// blocks with an online softmax, and either writes the result or, when there are too few units
// of work to keep every thread busy (decode), splits the keys into chunks and merges the
// chunks' partial results once, after a barrier.
//
// A batch whose tokens see mostly different keys (decode steps of several sequences in one
// unified cache, where each sequence's cells are interleaved with the others') is walked
// sparsely: one token's rows at a time, over only the keys its mask lets through, gathered KB
// at a time. Walked densely, every token would score every sequence's keys, and 8 sequences of
// 500 cells cost 8x the attention of one.
#include "fattn_cpu.h"
#include "fattn_common.h"
#include "fattn_kernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <numeric>

namespace llamafuse {
namespace cpu {
namespace {

std::atomic<bool> g_force_portable{false};

const fattn_ops * select_ops() {
    static const fattn_ops * simd = [] {
        const fattn_ops * ops = fattn_ops_avx2();
#if defined(__x86_64__) || defined(_M_X64)
        if (ops && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))) ops = nullptr;
#endif
        return ops;
    }();
    return (simd && !g_force_portable.load(std::memory_order_relaxed)) ? simd : fattn_ops_portable();
}

// How the op is cut into work units. A group is (stream, kv head, head sub-group, token tile);
// its R = gn·tn rows read each K/V row once. A unit is a group × a key chunk.
// Decode and small batches use the dot-form loops (R <= RMAX rows, K/V streamed once per
// group); larger batches the tiled GEMM-form loops (R <= RTILE rows, K/V blocks converted to
// f32 once per group and reused by every row).
//
// A band is the set of groups one unit walks together, block by block: every (kv head,
// head sub-group) of one (stream, token tile) on the dot-form path, so that a thread streams
// the cache sequentially (a key's rows for all KV heads are adjacent in llama.cpp's cache,
// while one head's rows are n_head_kv rows apart, a stride that defeats the prefetchers);
// a single group on the tiled path, which is compute-bound.
struct plan {
    bool tiled, dynamic, sparse;
    int64_t rows;  // RMAX or RTILE
    int64_t G, gsub, n_gsub, T, n_ttiles, n_groups;
    int64_t band, n_bands;
    int64_t n_chunks, chunk_len;
};

// Sparse walk: batches of at most this many tokens are checked for it (each thread's check
// reads their mask rows once per op).
constexpr int64_t SPARSE_MAX_TOKENS = 64;
constexpr uint16_t HALF_NEG_INF = 0xFC00;

// Whether the batch's tokens see mostly different keys: walked one token at a time, they
// score `seen` keys in all; together in one tile, n_tokens x (keys any of them sees). Reads
// stream 0's mask rows for mask head 0 (the choice changes the speed, never the result).
bool sparse_tokens(const attn_op & p) {
    if (!p.mask || p.n_tokens < 2 || p.n_tokens > SPARSE_MAX_TOKENS) return false;
    constexpr int64_t CH = 256;
    int64_t seen = 0, any = 0;
    for (int64_t j0 = 0; j0 < p.n_kv; j0 += CH) {
        const int64_t n = std::min<int64_t>(CH, p.n_kv - j0);
        uint8_t u[CH] = {};
        for (int64_t t = 0; t < p.n_tokens; t++) {
            const uint16_t * m = (const uint16_t *) (p.mask + t * p.m_nb1) + j0;
            int64_t c = 0;
            for (int64_t j = 0; j < n; j++) {
                const uint8_t v = m[j] != HALF_NEG_INF;
                u[j] |= v;
                c += v;
            }
            seen += c;
        }
        for (int64_t j = 0; j < n; j++) any += u[j];
    }
    return any > 0 && 2 * seen <= p.n_tokens * any;
}

plan make_plan(const attn_op & p, int nth, bool sparse) {
    plan pl;
    pl.sparse   = sparse;
    pl.G        = p.n_head / p.n_head_kv;
    pl.tiled    = !sparse && p.n_tokens > 1 && p.n_tokens * std::min<int64_t>(pl.G, RTILE) >= 16;
    pl.rows     = pl.tiled ? RTILE : RMAX;
    pl.n_gsub   = (pl.G + pl.rows - 1) / pl.rows;
    pl.gsub     = (pl.G + pl.n_gsub - 1) / pl.n_gsub;
    pl.T        = sparse ? 1 : std::max<int64_t>(1, pl.rows / pl.gsub);
    pl.n_ttiles = (p.n_tokens + pl.T - 1) / pl.T;
    pl.n_groups = p.n_stream * p.n_head_kv * pl.n_gsub * pl.n_ttiles;
    pl.band     = pl.tiled ? 1 : p.n_head_kv * pl.n_gsub;
    pl.n_bands  = pl.n_groups / pl.band;
    // Batches hand units out dynamically (under a causal mask token tiles differ in cost) and
    // split the keys when there are fewer than about 4 bands per thread. Decode units all cost
    // the same: they are dealt out statically (no barrier before them, one fewer place to wait
    // for a thread that lost its core), with keys split so every thread gets an equal share.
    pl.dynamic = nth > 1 && p.n_tokens > 1;
    int64_t n_chunks = 1;
    if (pl.dynamic && pl.n_bands < 4 * nth) {
        n_chunks = (4 * nth + pl.n_bands - 1) / pl.n_bands;
    } else if (!pl.dynamic && nth > 1 && pl.n_bands % nth != 0 && pl.n_bands < 4 * nth) {
        n_chunks = nth / std::gcd<int64_t>(pl.n_bands, nth);
    }
    n_chunks = std::min<int64_t>(n_chunks, (p.n_kv + KB - 1) / KB);
    pl.chunk_len = ((p.n_kv + n_chunks - 1) / n_chunks + KB - 1) / KB * KB;
    pl.n_chunks  = (p.n_kv + pl.chunk_len - 1) / pl.chunk_len;
    return pl;
}

constexpr size_t ALIGN = 64;
size_t align_up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

// Per-thread scratch: the state of every row of a band (scaled q, o, m, l, ALiBi slope), one block of
// scores and mask values, the tiled path's f32 K/V block, and the sparse walk's gathered block
// (key indices, raw K and V rows).
struct scratch_layout {
    size_t qs, o, ml, s, mv, kt, vf, ix, kr, vr, total;
};

int64_t row_bytes(const attn_op & p, int64_t D) {
    return p.type == attn_kv_type::f16 ? 2 * D : D / QK8_0 * (int64_t) sizeof(block_q8_0);
}

scratch_layout scratch_for(const attn_op & p, const plan & pl) {
    const size_t slots = pl.band * pl.rows;
    scratch_layout sl;
    sl.qs = 0;
    sl.o  = sl.qs + align_up(sizeof(float) * slots * p.DK);
    sl.ml = sl.o  + align_up(sizeof(float) * slots * p.DV);
    sl.s  = sl.ml + align_up(sizeof(float) * 3 * slots);
    sl.mv = sl.s  + align_up(sizeof(float) * ROWS_MAX * KB);
    sl.kt = sl.mv + align_up(sizeof(float) * ROWS_MAX * KB);
    sl.vf = sl.kt + align_up(sizeof(float) * KB * p.DK);
    sl.ix = sl.vf + align_up(sizeof(float) * KB * p.DV);
    sl.kr = sl.ix + (pl.sparse ? align_up(sizeof(int64_t) * KB) : 0);
    sl.vr = sl.kr + (pl.sparse ? align_up(KB * row_bytes(p, p.DK)) : 0);
    sl.total = sl.vr + (pl.sparse ? align_up(KB * row_bytes(p, p.DV)) : 0);
    return sl;
}

size_t partial_floats(const attn_op & p) { return (size_t) p.DV + 2; }

size_t work_size_exact(const attn_op & p, const plan & pl, int nth) {
    size_t n = ALIGN /* header: work counter */ + (size_t) nth * scratch_for(p, pl).total;
    if (pl.n_chunks > 1) n += sizeof(float) * pl.n_groups * pl.rows * pl.n_chunks * partial_floats(p);
    return n + ALIGN /* for aligning wdata */;
}

// The work size is asked before the mask holds values: enough for either walk.
size_t work_size_exact(const attn_op & p, int nth) {
    size_t n = work_size_exact(p, make_plan(p, nth, false), nth);
    if (p.n_tokens >= 2 && p.n_tokens <= SPARSE_MAX_TOKENS) n = std::max(n, work_size_exact(p, make_plan(p, nth, true), nth));
    return n;
}

struct group {
    int64_t s, hk, g0, gn, t0, tn;
    int R() const { return (int) (gn * tn); }
};

group group_at(const attn_op & p, const plan & pl, int64_t gi) {
    group g;
    const int64_t gs = gi % pl.n_gsub;  gi /= pl.n_gsub;
    g.hk = gi % p.n_head_kv;            gi /= p.n_head_kv;
    g.s  = gi % p.n_stream;             gi /= p.n_stream;
    // heaviest token tiles first: under a causal mask the last tokens see the most keys
    const int64_t tt = pl.n_ttiles - 1 - gi;
    g.g0 = gs * pl.gsub;
    g.gn = std::min(pl.gsub, pl.G - g.g0);
    g.t0 = tt * pl.T;
    g.tn = std::min(pl.T, p.n_tokens - g.t0);
    return g;
}

// Row r of a group: token t0 + r / gn, head hk·G + g0 + r % gn.
inline int64_t row_token(const group & g, int r) { return g.t0 + r / g.gn; }
inline int64_t row_head(const plan & pl, const group & g, int r) { return g.hk * pl.G + g.g0 + r % g.gn; }

float * dst_row(const attn_op & p, int64_t h, int64_t t, int64_t s) {
    return (float *) (p.dst + h * p.d_nb1 + t * p.d_nb2 + s * p.d_nb3);
}

// Sink logit, normalisation, write. A row that saw no key (l == 0) is exactly 0.
void finish_row(const attn_op & p, int64_t h, float m, float l, const float * o, float * out) {
    if (l == 0.0f) {
        std::memset(out, 0, sizeof(float) * p.DV);
        return;
    }
    float alpha = 1.0f;
    if (p.sinks) {
        const float sink = p.sinks[h];
        if (sink > m) {
            alpha = std::exp(m - sink);
            l = l * alpha + 1.0f;
        } else {
            l += std::exp(sink - m);
        }
    }
    const float inv = alpha / l;
    for (int64_t d = 0; d < p.DV; d++) out[d] = o[d] * inv;
}

inline void prefetch_block(const char * rows, size_t nb1, int n, int row_bytes) {
    for (int j = 0; j < n; j++) {
        for (int off = 0; off < row_bytes; off += 64) __builtin_prefetch(rows + j * nb1 + off, 0, 3);
    }
}

// The sparse walk of one band (pl.sparse: one token's rows for every KV head) against keys
// [c0, c1): the keys its mask lets through for any of its heads, found once and taken KB at a
// time; for each group, those keys' raw K and V rows are copied together and the dot-form
// loops run on them as on a block of the cache.
void walk_sparse(const attn_op & p, const plan & pl, const fattn_ops & ops, int64_t gi0,
                 int64_t c0, int64_t c1, float * qs, float * o, float * ml, char * scratch) {
    const scratch_layout sl = scratch_for(p, pl);
    float * s    = (float *) (scratch + sl.s);
    float * mv   = (float *) (scratch + sl.mv);
    int64_t * ix = (int64_t *) (scratch + sl.ix);
    char * kr    = scratch + sl.kr;
    char * vr    = scratch + sl.vr;
    const int t = (int) p.type;
    const int64_t kbytes = row_bytes(p, p.DK), vbytes = row_bytes(p, p.DV);
    const group g0 = group_at(p, pl, gi0);
    const int64_t tok = row_token(g0, 0);
    // the token's mask rows: one, or one per mask head
    const int64_t n_mrows = std::min(p.m_ne2, p.n_head);
    auto mask_row = [&](int64_t mh) {
        return (const uint16_t *) (p.mask + tok * p.m_nb1 + mh * p.m_nb2 + (g0.s % p.m_ne3) * p.m_nb3);
    };
    float m[ROWS_MAX], l[ROWS_MAX];

    auto run_block = [&](int n) {
        for (int64_t b = 0; b < pl.band; b++) {
            const group g = group_at(p, pl, gi0 + b);
            const int R = g.R();
            float * mlg = ml + 3 * b * pl.rows;
            for (int r = 0; r < R; r++) {
                const uint16_t * mr = mask_row(row_head(pl, g, r) % p.m_ne2);
                const float slope = mlg[3 * r + 2];
                for (int i = 0; i < n; i++) mv[r * KB + i] = slope * half_to_float(mr[ix[i]]);
                m[r] = mlg[3 * r];
                l[r] = mlg[3 * r + 1];
            }
            const int64_t skv = g.s / (p.n_stream / p.n_stream_kv);
            const char * kb = p.k + g.hk * p.k_nb2 + skv * p.k_nb3;
            const char * vb = p.v + g.hk * p.v_nb2 + skv * p.v_nb3;
            for (int i = 0; i < n; i++) {
                std::memcpy(kr + i * kbytes, kb + ix[i] * p.k_nb1, kbytes);
                std::memcpy(vr + i * vbytes, vb + ix[i] * p.v_nb1, vbytes);
            }
            float * og = o + b * pl.rows * p.DV;
            ops.scores[t][R - 1](qs + b * pl.rows * p.DK, p.DK, kr, (size_t) kbytes, n, s, nullptr);
            ops.softmax(s, mv, p.softcap, R, n, m, l, og, p.DV);
            ops.accum[t][R - 1](s, vr, (size_t) vbytes, n, og, p.DV);
            for (int r = 0; r < R; r++) { mlg[3 * r] = m[r]; mlg[3 * r + 1] = l[r]; }
        }
    };

    int n = 0;
    for (int64_t j = c0; j < c1; j++) {
        bool seen = false;
        for (int64_t mh = 0; mh < n_mrows && !seen; mh++) seen = mask_row(mh)[j] != HALF_NEG_INF;
        if (!seen) continue;
        ix[n] = j;
        if (++n == KB) { run_block(n); n = 0; }
    }
    if (n > 0) run_block(n);
}

// One unit: the groups gi0 .. gi0+band-1 against keys [c0, c1), block by block (all groups of
// the band read one block before the next). Writes the rows' output, or their (m, l, o)
// partials when partials != null (layout [group][r][chunk][m, l, o[DV]]).
void run_unit(const attn_op & p, const plan & pl, const fattn_ops & ops, int64_t gi0,
              int64_t c0, int64_t c1, int64_t chunk, char * scratch, float * partials) {
    const scratch_layout sl = scratch_for(p, pl);
    float * qs = (float *) (scratch + sl.qs);
    float * o  = (float *) (scratch + sl.o);
    float * ml = (float *) (scratch + sl.ml);
    float * s  = (float *) (scratch + sl.s);
    float * mv = (float *) (scratch + sl.mv);
    float * kt = (float *) (scratch + sl.kt);
    float * vf = (float *) (scratch + sl.vf);
    const int64_t nb = pl.band;
    const int64_t rows = pl.rows;

    // per-row setup: scaled q, mask row, ALiBi slope; slot = b·rows + r
    const float qscale = p.softcap != 0.0f ? p.scale / p.softcap : p.scale;
    const uint16_t * mrow[ROWS_MAX];
    float slope[ROWS_MAX];
    for (int64_t b = 0; b < nb; b++) {
        const group g = group_at(p, pl, gi0 + b);
        for (int r = 0; r < g.R(); r++) {
            const int64_t t = row_token(g, r), h = row_head(pl, g, r);
            const float * q = (const float *) (p.q + t * p.q_nb1 + h * p.q_nb2 + g.s * p.q_nb3);
            float * qr = qs + (b * rows + r) * p.DK;
            for (int64_t d = 0; d < p.DK; d++) qr[d] = q[d] * qscale;
            ml[3 * (b * rows + r)]     = -INFINITY;  // m
            ml[3 * (b * rows + r) + 1] = 0.0f;       // l
            ml[3 * (b * rows + r) + 2] = alibi_slope(p.max_bias, p.n_head, h);
        }
    }
    std::memset(o, 0, sizeof(float) * nb * rows * p.DV);

    const int t = (int) p.type;
    const int k_row_bytes = (int) row_bytes(p, p.DK);
    const int v_row_bytes = (int) row_bytes(p, p.DV);
    const bool heads_adjacent = !pl.tiled && p.k_nb2 == (size_t) k_row_bytes && p.v_nb2 == (size_t) v_row_bytes &&
                                p.k_nb1 == p.n_head_kv * p.k_nb2 && p.v_nb1 == p.n_head_kv * p.v_nb2;
    float m[ROWS_MAX], l[ROWS_MAX];

    if (pl.sparse) walk_sparse(p, pl, ops, gi0, c0, c1, qs, o, ml, scratch);
    // the dense walk: every group of the band against each block of keys in turn
    for (int64_t j0 = c0; !pl.sparse && j0 < c1; j0 += KB) {
        const int nk = (int) std::min<int64_t>(KB, c1 - j0);
        for (int64_t b = 0; b < nb; b++) {
            const group g = group_at(p, pl, gi0 + b);
            const int R = g.R();
            const float * mvp = nullptr;
            if (p.mask) {
                for (int r = 0; r < R; r++) {
                    const int64_t tk = row_token(g, r), h = row_head(pl, g, r);
                    mrow[r]  = (const uint16_t *) (p.mask + tk * p.m_nb1 + (h % p.m_ne2) * p.m_nb2 + (g.s % p.m_ne3) * p.m_nb3) + j0;
                    slope[r] = ml[3 * (b * rows + r) + 2];
                }
                if (!ops.mask(mrow, slope, R, nk, mv)) continue;  // fully masked block: skip its K/V
                mvp = mv;
            }
            const int64_t skv = g.s / (p.n_stream / p.n_stream_kv);
            const char * kb = p.k + g.hk * p.k_nb2 + skv * p.k_nb3;
            const char * vb = p.v + g.hk * p.v_nb2 + skv * p.v_nb3;
            float * qg = qs + b * rows * p.DK;
            float * og = o + b * rows * p.DV;
            float * mlg = ml + 3 * b * rows;
            for (int r = 0; r < R; r++) { m[r] = mlg[3 * r]; l[r] = mlg[3 * r + 1]; }
            if (pl.tiled) {
                // next block's K rows load while this block's q·kᵀ runs, its V rows during p·v
                const int64_t j1 = j0 + KB;
                const int npf = (int) std::max<int64_t>(0, std::min<int64_t>(KB, p.n_kv - j1));
                ops.kconv[t](kb + j0 * p.k_nb1, p.k_nb1, nk, p.DK, kt);
                prefetch_block(kb + j1 * p.k_nb1, p.k_nb1, npf, k_row_bytes);
                ops.qk(qg, R, p.DK, kt, s);
                ops.softmax(s, mvp, p.softcap, R, nk, m, l, og, p.DV);
                ops.vconv[t](vb + j0 * p.v_nb1, p.v_nb1, nk, p.DV, vf);
                prefetch_block(vb + j1 * p.v_nb1, p.v_nb1, npf, v_row_bytes);
                ops.pv(s, R, vf, p.DV, og);
            } else {
                // This group's slice of the next block (never past n_kv): in llama.cpp's cache a
                // key's rows for all KV heads are adjacent, so the band's next block is one range;
                // otherwise each group fetches its own rows' span.
                const int64_t j1 = j0 + KB;
                prefetch_range pf;
                if (heads_adjacent) {
                    const char * k1 = p.k + skv * p.k_nb3 + j1 * p.k_nb1;
                    const char * v1 = p.v + skv * p.v_nb3 + j1 * p.v_nb1;
                    const size_t kl = KB * p.k_nb1, vl = KB * p.v_nb1;
                    pf = { k1 + kl * b / nb, v1 + vl * b / nb, kl / nb, vl / nb };
                } else {
                    pf = { kb + j1 * p.k_nb1, vb + j1 * p.v_nb1, (KB - 1) * p.k_nb1 + k_row_bytes, (KB - 1) * p.v_nb1 + v_row_bytes };
                }
                ops.scores[t][R - 1](qg, p.DK, kb + j0 * p.k_nb1, p.k_nb1, nk, s, j1 + KB <= p.n_kv ? &pf : nullptr);
                ops.softmax(s, mvp, p.softcap, R, nk, m, l, og, p.DV);
                ops.accum[t][R - 1](s, vb + j0 * p.v_nb1, p.v_nb1, nk, og, p.DV);
            }
            for (int r = 0; r < R; r++) { mlg[3 * r] = m[r]; mlg[3 * r + 1] = l[r]; }
        }
    }

    const size_t pf = partial_floats(p);
    for (int64_t b = 0; b < nb; b++) {
        const group g = group_at(p, pl, gi0 + b);
        for (int r = 0; r < g.R(); r++) {
            const int64_t slot = b * rows + r;
            if (partials) {
                float * pr = partials + (((gi0 + b) * rows + r) * pl.n_chunks + chunk) * pf;
                pr[0] = ml[3 * slot];
                pr[1] = ml[3 * slot + 1];
                std::memcpy(pr + 2, o + slot * p.DV, sizeof(float) * p.DV);
            } else {
                const int64_t h = row_head(pl, g, r);
                finish_row(p, h, ml[3 * slot], ml[3 * slot + 1], o + slot * p.DV, dst_row(p, h, row_token(g, r), g.s));
            }
        }
    }
}

// Combine the key-chunk partials of one row (log-sum-exp merge) and write it.
void merge_row(const attn_op & p, const plan & pl, const group & g, int r, const float * part, float * tmp) {
    const size_t pf = partial_floats(p);
    float M = -INFINITY;
    for (int64_t c = 0; c < pl.n_chunks; c++) {
        const float * pc = part + c * pf;
        if (pc[1] != 0.0f && pc[0] > M) M = pc[0];
    }
    float L = 0.0f;
    std::memset(tmp, 0, sizeof(float) * p.DV);
    for (int64_t c = 0; c < pl.n_chunks && M != -INFINITY; c++) {
        const float * pc = part + c * pf;
        if (pc[1] == 0.0f) continue;
        const float w = std::exp(pc[0] - M);
        L += pc[1] * w;
        for (int64_t d = 0; d < p.DV; d++) tmp[d] += pc[2 + d] * w;
    }
    const int64_t h = row_head(pl, g, r);
    finish_row(p, h, M, L, tmp, dst_row(p, h, row_token(g, r), g.s));
}

} // namespace

bool fattn_supported(const attn_op & p) {
    if (p.DK <= 0 || p.DV <= 0 || p.DK % 8 != 0 || p.DV % 8 != 0 || p.DK > 1024 || p.DV > 1024) return false;
    if (p.type == attn_kv_type::q8_0 && (p.DK % QK8_0 != 0 || p.DV % QK8_0 != 0)) return false;
    if (p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0) return false;
    if (p.n_stream_kv <= 0 || p.n_stream % p.n_stream_kv != 0) return false;
    if (p.n_tokens <= 0 || p.n_kv <= 0) return false;
    if (p.mask && (p.m_ne2 <= 0 || p.m_ne3 <= 0)) return false;
    return true;
}

size_t fattn_work_size(const attn_op & p, int nth) {
    size_t n = 0;
    for (int i = 1; i <= nth; i++) n = std::max(n, work_size_exact(p, i));
    return n;
}

void fattn_compute(const attn_op & p, int ith, int nth, void * wdata, size_t wsize,
                   barrier_fn barrier, void * barrier_ctx) {
    const plan pl = make_plan(p, nth, sparse_tokens(p));
    const fattn_ops & ops = *select_ops();
    const scratch_layout sl = scratch_for(p, pl);

    char * base = (char *) (((uintptr_t) wdata + ALIGN - 1) / ALIGN * ALIGN);
    int * counter = (int *) base;
    char * scratch = base + ALIGN + (size_t) ith * sl.total;
    float * partials = (float *) (base + ALIGN + (size_t) nth * sl.total);
    (void) wsize;

    // Unit u = band u / n_chunks, key chunk u % n_chunks: dealt round robin, or (batches) taken
    // from a shared counter, each thread starting with unit ith.
    const int64_t n_units = pl.n_bands * pl.n_chunks;
    const bool split = pl.n_chunks > 1;
    if (pl.dynamic) {
        if (ith == 0) __atomic_store_n(counter, nth, __ATOMIC_RELAXED);
        barrier(barrier_ctx);
    }
    for (int64_t u = ith; u < n_units; u = pl.dynamic ? __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED) : u + nth) {
        const int64_t bi = u / pl.n_chunks, c = u % pl.n_chunks;
        const int64_t c0 = c * pl.chunk_len, c1 = std::min(p.n_kv, c0 + pl.chunk_len);
        run_unit(p, pl, ops, bi * pl.band, c0, c1, c, scratch, split ? partials : nullptr);
    }
    if (!split) return;

    // One merge of the key-chunk partials, rows spread over the threads.
    barrier(barrier_ctx);
    const size_t pf = partial_floats(p);
    float * tmp = (float *) (scratch + sl.o);
    for (int64_t row = ith; row < pl.n_groups * pl.rows; row += nth) {
        const int64_t gi = row / pl.rows;
        const int r = (int) (row % pl.rows);
        const group g = group_at(p, pl, gi);
        if (r >= g.R()) continue;
        merge_row(p, pl, g, r, partials + ((size_t) gi * pl.rows + r) * pl.n_chunks * pf, tmp);
    }
}

void fattn_force_portable(bool on) { g_force_portable.store(on, std::memory_order_relaxed); }

bool fattn_using_simd() { return select_ops() != fattn_ops_portable(); }

} // namespace cpu
} // namespace llamafuse
