#pragma once
// EXPERIMENTAL prefill attention on Hopper's warpgroup MMA (wgmma, sm_90a): the same
// algorithm as fattn_prefill (64 query rows per block, 64-key tiles, two cp.async stages,
// f32 accumulators for S and O), with both products issued as wgmma: Q and P from
// registers, K and V from shared memory in no-swizzle core-matrix layout.
//
// Not used by fattn_run until a GPU run has checked it: bench/gpu's harness tests and
// times it next to the mma.sync kernel. `variant` picks the descriptor convention for V
// (an MN-major operand): 0 = LBO along K (keys), SBO along N (dims) as for K-major
// operands; 1 = swapped. The harness reports which one matches the reference.
// f16 caches only, head dim 64 or 128.

#include "fattn_common.cuh"

namespace llamafuse::cuda {

bool fattn_prefill_wgmma_supported(const kernel_args & p);

// Launches on `stream` only. Needs a device of compute capability 9.0 and a build for
// sm_90a; anything else traps in the kernel. warpgroups: 1 (64 query rows per block, two
// blocks per multiprocessor) or 2 (128 rows sharing each K/V tile, one block).
void fattn_prefill_wgmma(const kernel_args & p, int variant, cudaStream_t stream, int warpgroups = 1);

} // namespace llamafuse::cuda
