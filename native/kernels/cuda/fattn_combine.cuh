#pragma once
// Merges the split-KV partials of fattn_decode into dst: per row, the global max over the
// splits (and the sink logit, if any), the rescaled sum of the f32 accumulators over the
// rescaled sum of the row sums. A row no key reached (all masked, no sink) is exactly 0.

#include "fattn_common.cuh"

namespace llamafuse::cuda {

// part_o:  [n_splits][rows_total][D] f32, unnormalised, relative to part_ml.x
// part_ml: [n_splits][rows_total] (max in log2 units, sum)
// Row id = (seq * n_head_kv + kv_head) * rows + r, with r = token * G + g.
void fattn_combine(const kernel_args & p, const float * part_o, const float2 * part_ml,
                   int n_splits, int G, int rows, cudaStream_t stream);

} // namespace llamafuse::cuda
