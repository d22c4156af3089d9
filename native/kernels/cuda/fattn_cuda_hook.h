#pragma once
// The CUDA half of llamafuse's attention hook: installs our kernels in front of ggml-cuda's
// GGML_OP_FLASH_ATTN_EXT (native/patches/0002-cuda-fattn-hook.patch adds the hook point).
//
// CUDA has no per-context threadpool to hang a switch on, so the switch is process-wide:
// attention_cuda_set_enabled(false) makes the hook decline every node (ggml's kernels run),
// true makes it take the shapes our kernels support where they measured faster than ggml's
// on an H200: decode from 8K keys on, not prefill (fattn_cuda_hook.cu has the numbers; set
// LLAMAFUSE_CUDA_FATTN_ALL=1 before install to take every supported shape, for tests and
// benchmarks). Each change also tells ggml-cuda to
// re-capture its CUDA graphs, so the switch applies from the next graph compute on.
// Call it between computes, not while one is in flight.
//
// Plain C++ header (no CUDA types) so the addon can include it under #ifdef LLAMAFUSE_CUDA.

namespace llamafuse {

// Installs the hook (idempotent). Call before the first CUDA context is created.
// The hook starts enabled.
void attention_cuda_hook_install();

void attention_cuda_set_enabled(bool enabled);
bool attention_cuda_enabled();

// Nodes our kernels were launched for since start-up (tests use it to see that the fused
// path was taken). A replayed CUDA graph re-runs its captured launches without counting.
unsigned long long attention_cuda_runs();

} // namespace llamafuse
