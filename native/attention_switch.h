// The switch between llamafuse's fused attention kernels and ggml's.
// CPU: per context, keyed by the context's own ggml threadpool (native/kernels/cpu/fattn_hook.h).
// CUDA: process-wide, since ggml-cuda has no per-context handle to key on
// (native/kernels/cuda/fattn_cuda_hook.h): the context created or switched last decides.
#pragma once

#include "kernels/cpu/fattn_hook.h"
#ifdef LLAMAFUSE_CUDA
#include "kernels/cuda/fattn_cuda_hook.h"
#endif

namespace llamafuse {

// Installs the hooks; call once, before the first context is created.
inline void attention_switch_install() {
    attention_hook_install();
#ifdef LLAMAFUSE_CUDA
    attention_cuda_hook_install();
#endif
}

inline void attention_switch_set(ggml_threadpool * tp, bool fused) {
    attention_set_fused(tp, fused);
#ifdef LLAMAFUSE_CUDA
    attention_cuda_set_enabled(fused);
#endif
}

// A context is going away: forget its threadpool (the CUDA switch stays as it is).
inline void attention_switch_forget(ggml_threadpool * tp) { attention_set_fused(tp, false); }

} // namespace llamafuse
