#pragma once
// Prefill attention on tensor cores (mma.sync m16n8k16, f16 operands, f32 accumulators for
// both Q.K^T and P.V). One block owns 64 query tokens of one q head; keys stream through
// shared memory in 64-key tiles, two stages deep (cp.async). q8_0 caches are copied raw and
// dequantized to f16 in shared memory, so both cache types feed the same matrix code.
//
// This is the FA2-class baseline for sm_90a (and any sm_80+); wgmma + TMA is the next step.

#include "fattn_common.cuh"

namespace llamafuse::cuda {

bool fattn_prefill_supported(const kernel_args & p);

// Launches one kernel on `stream`; no scratch, no sync, no allocation (graph-capture safe).
void fattn_prefill(const kernel_args & p, cudaStream_t stream);

} // namespace llamafuse::cuda
