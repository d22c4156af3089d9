// Glue between ggml's tensors and our kernels: translates a GGML_OP_FLASH_ATTN_EXT node
// into attn_params, declines anything the kernels do not handle (ggml's own kernel then
// runs), and launches on the stream ggml hands over.

#include "fattn_cuda_hook.h"
#include "fattn_cuda.cuh"

#include "ggml.h"
#include "ggml-cuda.h"

#include <atomic>
#include <cstring>

namespace llamafuse {
namespace {

std::atomic<bool> g_enabled{true};
std::atomic<bool> g_installed{false};
std::atomic<unsigned long long> g_runs{0};

bool is_row_contiguous(const ggml_tensor * t) {
    return t->nb[0] == ggml_type_size(t->type);
}

// Pure function of the node: fills `p` and says whether our kernels can take it.
bool node_to_params(const ggml_tensor * dst, cuda::attn_params & p) {
    if (dst->op != GGML_OP_FLASH_ATTN_EXT) return false;
    const ggml_tensor * q = dst->src[0];
    const ggml_tensor * k = dst->src[1];
    const ggml_tensor * v = dst->src[2];
    const ggml_tensor * mask = dst->src[3];
    const ggml_tensor * sinks = dst->src[4];
    if (!q || !k || !v) return false;

    if (q->type != GGML_TYPE_F32 || dst->type != GGML_TYPE_F32) return false;
    if (k->type != v->type) return false;
    if (k->type == GGML_TYPE_F16) {
        p.type = cuda::kv_type::f16;
    } else if (k->type == GGML_TYPE_Q8_0) {
        p.type = cuda::kv_type::q8_0;
    } else {
        return false;
    }
    const int64_t D = q->ne[0];
    if (k->ne[0] != D || v->ne[0] != D || dst->ne[0] != D) return false;
    if (!is_row_contiguous(q) || !is_row_contiguous(k) || !is_row_contiguous(v)) return false;
    if (!ggml_is_contiguous(dst)) return false;
    // V must match K in every dim (a view of K with a smaller head dim is MLA: declined above)
    for (int i = 1; i < 4; ++i) {
        if (v->ne[i] != k->ne[i]) return false;
    }
    // dst [D, n_head, n_tokens, n_seq]
    if (dst->ne[1] != q->ne[2] || dst->ne[2] != q->ne[1] || dst->ne[3] != q->ne[3]) return false;
    if (q->ne[2] % k->ne[2] != 0 || q->ne[3] % k->ne[3] != 0) return false;
    if (q->ne[1] > INT32_MAX || k->ne[1] > INT32_MAX) return false;

    if (mask) {
        if (mask->type != GGML_TYPE_F16 || !is_row_contiguous(mask)) return false;
        if (mask->ne[0] < k->ne[1] || mask->ne[1] < q->ne[1] || mask->ne[2] != 1) return false;
        if (q->ne[3] % mask->ne[3] != 0) return false;
    }
    if (sinks) {
        if (sinks->type != GGML_TYPE_F32 || !ggml_is_contiguous(sinks) || sinks->ne[0] < q->ne[2]) return false;
    }

    p.q = static_cast<const float *>(q->data);
    p.q_nb1 = q->nb[1];
    p.q_nb2 = q->nb[2];
    p.q_nb3 = q->nb[3];
    p.k = k->data;
    p.k_nb1 = k->nb[1];
    p.k_nb2 = k->nb[2];
    p.k_nb3 = k->nb[3];
    p.v = v->data;
    p.v_nb1 = v->nb[1];
    p.v_nb2 = v->nb[2];
    p.v_nb3 = v->nb[3];
    p.mask = mask ? static_cast<const __half *>(mask->data) : nullptr;
    p.mask_nb1 = mask ? mask->nb[1] : 0;
    p.mask_nb3 = mask ? mask->nb[3] : 0;
    p.n_seq_mask = mask ? (int) mask->ne[3] : 1;
    p.sinks = sinks ? static_cast<const float *>(sinks->data) : nullptr;
    p.dst = static_cast<float *>(dst->data);
    p.D = (int) D;
    p.n_tokens = (int) q->ne[1];
    p.n_head = (int) q->ne[2];
    p.n_head_kv = (int) k->ne[2];
    p.n_kv = (int) k->ne[1];
    p.n_seq_q = (int) q->ne[3];
    p.n_seq_kv = (int) k->ne[3];
    memcpy(&p.scale, (const float *) dst->op_params + 0, sizeof(float));
    memcpy(&p.max_bias, (const float *) dst->op_params + 1, sizeof(float));
    memcpy(&p.softcap, (const float *) dst->op_params + 2, sizeof(float));
    // op_params[3] (precision) is moot: we accumulate in f32 always. op_params[4]
    // (n_kv_max) only bounds the finite mask entries: a hint we may ignore.
    return cuda::fattn_choose(p) != cuda::fattn_path::none;
}

bool hook_accepts(const ggml_tensor * dst, int cc, int n_sm) {
    (void) n_sm;
    if (!g_enabled.load(std::memory_order_relaxed)) return false;
    if (cc < 800) return false;   // cp.async, ldmatrix, mma.sync m16n8k16
    cuda::attn_params p;
    return node_to_params(dst, p);
}

size_t hook_scratch_size(const ggml_tensor * dst, int cc, int n_sm) {
    (void) cc;
    cuda::attn_params p;
    if (!node_to_params(dst, p)) return 0;
    return cuda::fattn_scratch_bytes(p, n_sm);
}

void hook_run(const ggml_tensor * dst, int cc, int n_sm, void * stream, void * scratch, size_t scratch_size) {
    (void) cc;
    cuda::attn_params p;
    const bool ok = node_to_params(dst, p);
    LF_CUDA_ASSERT(ok);
    cuda::fattn_run(p, scratch, scratch_size, n_sm, static_cast<cudaStream_t>(stream));
    g_runs.fetch_add(1, std::memory_order_relaxed);
}

const ggml_cuda_fattn_hook k_hook = {hook_accepts, hook_scratch_size, hook_run};

} // namespace

void attention_cuda_hook_install() {
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
