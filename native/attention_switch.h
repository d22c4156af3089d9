// The per-context switch between llamafuse's fused attention and ggml's, keyed by the
// context's ggml threadpool (see native/kernels/cpu/fattn_hook.h). Until the CPU kernels
// are built in, every context runs ggml's attention.
#pragma once

struct ggml_threadpool;

#if __has_include("kernels/cpu/fattn_hook.h")
#include "kernels/cpu/fattn_hook.h"
#define LLAMAFUSE_HAS_FUSED_ATTENTION 1
inline void attention_switch_set(ggml_threadpool * tp, bool fused) { llamafuse::attention_set_fused(tp, fused); }
inline void attention_switch_install() { llamafuse::attention_hook_install(); }
#else
#define LLAMAFUSE_HAS_FUSED_ATTENTION 0
inline void attention_switch_set(ggml_threadpool *, bool) {}
#endif
