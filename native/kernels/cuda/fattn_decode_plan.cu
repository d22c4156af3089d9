// Host side of the decode path that involves no CUDA call: which shapes it takes and how
// the keys are split. A separate file so that bench/gpu/emu can compile it as plain C++.
#include "fattn_decode.cuh"
#include "fattn_decode_mma.cuh"

#include <algorithm>

namespace llamafuse::cuda {


bool fattn_decode_supported(const kernel_args & p) {
    if (!fattn_layout_supported(p)) return false;
    // few tokens: G * n_tokens rows share each K/V read; more goes to the prefill kernel
    return (int64_t) (p.n_head / p.n_head_kv) * p.n_tokens <= 32;
}

decode_plan fattn_decode_make_plan(const kernel_args & p, int n_sm, int target_blocks) {
    decode_plan pl{};
    pl.G = p.n_head / p.n_head_kv;
    pl.rows = pl.G * p.n_tokens;
    pl.nq = pl.rows <= 1 ? 1 : pl.rows <= 2 ? 2 : pl.rows <= 4 ? 4 : 8;
    pl.row_groups = (pl.rows + pl.nq - 1) / pl.nq;
    // One full wave: __launch_bounds__ (DECODE_BLOCKS_PER_SM) and the shared memory allow two blocks per
    // multiprocessor, so aim for 2 * n_sm blocks in all (a partial second wave would leave
    // half the machine idle at the end), but keep at least two tiles per split so the
    // pipeline has something to overlap and the combine stays small.
    const int base = p.n_head_kv * pl.row_groups * p.n_seq_q;
    const int tiles = (p.n_kv + DECODE_TILE - 1) / DECODE_TILE;
    const int target = target_blocks > 0 ? target_blocks : DECODE_BLOCKS_PER_SM * std::max(n_sm, 1);
    const int want = target / base;
    const int splits = std::max(1, std::min(want, tiles / 2));
    pl.chunk = ((tiles + splits - 1) / splits) * DECODE_TILE;
    pl.n_splits = (p.n_kv + pl.chunk - 1) / pl.chunk;
    pl.rows_total = p.n_seq_q * p.n_head_kv * pl.rows;
    return pl;
}

size_t fattn_decode_plan_scratch_bytes(const decode_plan & pl, int D) {
    const size_t n = (size_t) pl.n_splits * pl.rows_total;
    return fattn_decode_ml_offset(pl, D) + ((n * sizeof(float2) + 255) & ~size_t(255));
}

size_t fattn_decode_scratch_bytes(const kernel_args & p, int n_sm) {
    return fattn_decode_plan_scratch_bytes(fattn_decode_make_plan(p, n_sm), p.D);
}

// ---- the experimental tensor-core decode (fattn_decode_mma) ---------------------------------

bool fattn_decode_mma_supported(const kernel_args & p) {
    return p.type == kv_type::f16 && fattn_decode_supported(p);
}

decode_plan fattn_decode_mma_make_plan(const kernel_args & p, int n_sm) {
    constexpr int TILE = 64;   // DECODE_MMA_TILE
    decode_plan pl{};
    pl.G = p.n_head / p.n_head_kv;
    pl.rows = pl.G * p.n_tokens;
    pl.nq = 16;
    pl.row_groups = (pl.rows + 15) / 16;
    const int base = p.n_head_kv * pl.row_groups * p.n_seq_q;
    const int tiles = (p.n_kv + TILE - 1) / TILE;
    const int want = (DECODE_BLOCKS_PER_SM * std::max(n_sm, 1)) / base;
    const int splits = std::max(1, std::min(want, tiles / 2));
    pl.chunk = ((tiles + splits - 1) / splits) * TILE;
    pl.n_splits = (p.n_kv + pl.chunk - 1) / pl.chunk;
    pl.rows_total = p.n_seq_q * p.n_head_kv * pl.rows;
    return pl;
}

} // namespace llamafuse::cuda
