// The hook ggml-cuda calls for GGML_OP_FLASH_ATTN_EXT: declines what our kernels do not
// handle (ggml's own kernel then runs), else launches on the stream ggml hands over.

#include "fattn_cuda_hook.h"
#include "fattn_cuda.cuh"
#include "../attn_ggml.h"

#include "ggml.h"
#include "ggml-cuda.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace llamafuse {
namespace {

std::atomic<bool> g_enabled{true};
std::atomic<bool> g_installed{false};
std::atomic<bool> g_take_all{false};
std::atomic<unsigned long long> g_runs{0};

// Where ours runs: only where it measured faster than ggml-cuda's own kernel. On an H200
// (bench/gpu, test-backend-ops perf, Llama-3-8B shape: 32 q / 8 kv heads of 128):
//   prefill, 4096 tokens: ggml's mma.sync kernel 1104 us, ours 2729 us (f16; q8_0 alike)
//   decode, 1 token, f16:  4K keys 0.85x (ggml faster), 8K 1.06x, 16K 1.15x, 32K 1.34x, 64K 1.47x
//   decode, 1 token, q8_0: 4K 0.99x, 16K 1.57x, 32K 1.75x
// So prefill stays with ggml, and decode is ours from 8K keys on. LLAMAFUSE_CUDA_FATTN_ALL=1
// (read at install) takes every shape our kernels support, for tests and benchmarks.
constexpr int k_decode_min_kv = 8192;

bool ours_is_faster(const cuda::kernel_args & p) {
    if (g_take_all.load(std::memory_order_relaxed)) return true;
    switch (cuda::fattn_choose(p)) {
        case cuda::fattn_path::decode:
        case cuda::fattn_path::decode_mma: return p.n_kv >= k_decode_min_kv;
        default: return false;
    }
}

// The node as our kernels' arguments: the shared translator's attn_op, in the form these
// kernels take, with a kernel path for its shape (cuda::fattn_supported, inlined).
bool node_args(const ggml_tensor * dst, cuda::kernel_args & a) {
    attn_op op;
    return attn_op_from_node(dst, op) && cuda::kernel_args_of(op, a) && cuda::fattn_choose(a) != cuda::fattn_path::none;
}

bool hook_accepts(const ggml_tensor * dst, int cc, int n_sm) {
    (void) n_sm;
    if (!g_enabled.load(std::memory_order_relaxed)) return false;
    if (cc < 800) return false;   // cp.async, ldmatrix, mma.sync m16n8k16
    cuda::kernel_args p;
    return node_args(dst, p) && ours_is_faster(p);
}

size_t hook_scratch_size(const ggml_tensor * dst, int cc, int n_sm) {
    (void) cc;
    cuda::kernel_args p;
    if (!node_args(dst, p)) return 0;
    return cuda::fattn_scratch_bytes(p, n_sm);
}

void hook_run(const ggml_tensor * dst, int cc, int n_sm, void * stream, void * scratch, size_t scratch_size) {
    (void) cc;
    cuda::kernel_args p;
    const bool ok = node_args(dst, p);
    LF_CUDA_ASSERT(ok);
    cuda::fattn_run(p, scratch, scratch_size, n_sm, static_cast<cudaStream_t>(stream));
    g_runs.fetch_add(1, std::memory_order_relaxed);
}

const ggml_cuda_fattn_hook k_hook = {hook_accepts, hook_scratch_size, hook_run};

} // namespace

void attention_cuda_hook_install() {
    const char * all = std::getenv("LLAMAFUSE_CUDA_FATTN_ALL");
    g_take_all.store(all != nullptr && std::strcmp(all, "1") == 0);
    g_installed.store(true);
    ggml_backend_cuda_set_fattn_hook(&k_hook);
}

void attention_cuda_set_enabled(bool enabled) {
    g_enabled.store(enabled);
    if (g_installed.load()) {
        // re-install: bumps ggml-cuda's hook epoch so captured CUDA graphs are rebuilt
        ggml_backend_cuda_set_fattn_hook(&k_hook);
    }
}

bool attention_cuda_enabled() {
    return g_enabled.load();
}

unsigned long long attention_cuda_runs() {
    return g_runs.load();
}

} // namespace llamafuse
