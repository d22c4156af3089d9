// The CPU flash-attention hook: installs llamafuse's kernels into ggml's GGML_OP_FLASH_ATTN_EXT
// dispatch (via native/patches/0001-cpu-fattn-hook.patch) and decides, per threadpool and node,
// whether they run. Each llamafuse context owns one ggml threadpool; a threadpool registered as
// fused gets our kernels for every node they support, any other threadpool gets ggml's.
#pragma once

#include <cstdint>

struct ggml_threadpool;

namespace llamafuse {

// Idempotent; call before the first graph is planned (addon init).
void attention_hook_install();

// Per-threadpool switch. Call only while no graph is computing on tp (at context creation, and
// with false before freeing tp): every thread of a computation must see the same answer.
void attention_set_fused(ggml_threadpool * tp, bool fused);

// fused: attention ops computed by our kernels. declined: ops on a fused threadpool that our
// kernels did not take (unsupported shape or type), so ggml computed them. Ops on threadpools
// not registered as fused count in neither.
struct AttentionStats { uint64_t fused; uint64_t declined; };
AttentionStats attention_stats();
void attention_stats_reset();

} // namespace llamafuse
