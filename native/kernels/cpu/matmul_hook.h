// Our matmul kernels in ggml's CPU backend: native/patches/0017 lets ggml hand each chunk of a
// matmul over weights it repacked for its own kernels (Q4_0 as q4_0_8x8, Q4_K as q4_K_8x8, on
// x86 CPUs without AMX) to a hook, and 0018 each chunk of its generic matmul (weights it keeps
// as they are in the file, Q5_K, Q6_K and Q8_0 on x86; Q8_0 decode steps are claimed from
// llamafile's sgemm, which ggml tries first) to another; these give them to matmul_q4_0 /
// matmul_q4_k / matmul_q5_k / matmul_q6_k / matmul_q8_0 where this build has them, and
// otherwise let ggml's kernels run.
#pragma once

namespace llamafuse {
namespace cpu {

// Installs the hook (idempotent; addon init). With LLAMAFUSE_GGML_MATMUL=1 in the environment
// ggml keeps its own kernels (for A/B measurements).
void matmul_hook_install();
// Lifts the hooks (tests compare with ggml's kernels); matmul_hook_reinstall puts back what
// matmul_hook_install decided.
void matmul_hook_lift();
void matmul_hook_reinstall();

// Chunks our kernels computed so far, per weight type (tests prove with it which kernel ran).
unsigned long long matmul_q4_0_calls();
unsigned long long matmul_q4_k_calls();
unsigned long long matmul_q5_k_calls();
unsigned long long matmul_q6_k_calls();
unsigned long long matmul_q8_0_calls();

} // namespace cpu
} // namespace llamafuse
