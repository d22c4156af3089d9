#pragma once
// Split-KV decode attention: few query tokens against a long KV cache.
//
// One block owns one kv head (all G query heads of its group, times the few tokens, as
// "rows") and one contiguous chunk of keys, so every K/V byte is read from memory once for
// the whole group. Blocks of different chunks write unnormalised partials (row max, row
// sum, f32 accumulator) to scratch; fattn_combine merges them into dst.

#include "fattn_common.cuh"

#include <cstddef>

namespace llamafuse::cuda {

constexpr int DECODE_TILE = 32;            // keys per pipeline tile (decode_cfg::TK)
constexpr int DECODE_BLOCKS_PER_SM = 2;    // fattn_decode_kernel's __launch_bounds__ minimum

struct decode_plan {
    int G;           // q heads per kv head
    int rows;        // rows per kv head: G * n_tokens (row r = token r / G, head r % G)
    int nq;          // rows per block: 1, 2, 4 or 8
    int row_groups;  // blocks per kv head along the rows
    int chunk;       // keys per split, a multiple of the 32-key tile
    int n_splits;
    int rows_total;  // n_seq_q * n_head_kv * rows: the partials' row count
};

// Shapes the decode kernel handles (types, head dims, alignment, few tokens).
bool fattn_decode_supported(const kernel_args & p);

// Pure function of the shape and the multiprocessor count. target_blocks (0: one full wave,
// DECODE_BLOCKS_PER_SM * n_sm) is for tuning runs (bench/gpu's --decode-sweep).
decode_plan fattn_decode_make_plan(const kernel_args & p, int n_sm, int target_blocks = 0);

// Scratch for the partials: n_splits * rows_total * (D + 2) floats, 256-byte aligned parts.
size_t fattn_decode_scratch_bytes(const kernel_args & p, int n_sm);

// Scratch layout: part_o [n_splits][rows_total][D] f32 at 0, part_ml [n_splits][rows_total]
// float2 at this byte offset.
inline size_t fattn_decode_ml_offset(const decode_plan & pl, int D) {
    return ((size_t) pl.n_splits * pl.rows_total * D * sizeof(float) + 255) & ~size_t(255);
}

// Launches the split kernel and the combine kernel on `stream`; nothing else (no sync,
// no allocation), so it may run under CUDA graph capture.
void fattn_decode(const kernel_args & p, void * scratch, size_t scratch_bytes, int n_sm, cudaStream_t stream);

// The same with an explicit plan (tuning runs); scratch as fattn_decode_plan_scratch_bytes.
size_t fattn_decode_plan_scratch_bytes(const decode_plan & pl, int D);
void fattn_decode_with_plan(const kernel_args & p, const decode_plan & pl, void * scratch, size_t scratch_bytes,
                            cudaStream_t stream);

} // namespace llamafuse::cuda
