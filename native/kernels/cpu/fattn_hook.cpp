// ggml node -> fattn_params, the fused-threadpool registry, and the two hook entry points.
// The accept/decline decision is a pure function of (node, threadpool, nth): plan time and
// every thread of a computation reach the same answer, so no barrier can be left waiting.
#include "fattn_hook.h"
#include "fattn_cpu.h"

#include "ggml.h"
#include "ggml-cpu.h"

#include <atomic>
#include <cstring>
#include <mutex>

namespace llamafuse {
namespace {

// The fused threadpools: lock-free lookup on the hot path, a mutex only serialises
// registration. Slots live in blocks of 256 that are appended as needed and never freed or
// moved, so a reader can walk them while a writer adds one: no fixed limit on live fused
// contexts (there was one, 256, past which contexts said "fused" and silently ran ggml's
// kernel). A freed slot is reused by the next registration.
constexpr int POOLS_PER_BLOCK = 256;
struct PoolBlock {
    std::atomic<ggml_threadpool *> slots[POOLS_PER_BLOCK] = {};
    std::atomic<PoolBlock *> next{nullptr};
};
PoolBlock g_fused_pools;
std::mutex g_pools_mutex;

std::atomic<uint64_t> g_n_fused{0}, g_n_declined{0};

bool is_fused(const ggml_threadpool * tp) {
    if (tp == nullptr) return false;
    for (const PoolBlock * b = &g_fused_pools; b; b = b->next.load(std::memory_order_acquire)) {
        for (const auto & slot : b->slots) {
            if (slot.load(std::memory_order_acquire) == tp) return true;
        }
    }
    return false;
}

// Everything the kernels need, checked so that no input we accept can trip ggml or read
// out of bounds. False means decline.
bool node_params(const ggml_tensor * dst, cpu::fattn_params & p) {
    const ggml_tensor * q = dst->src[0], * k = dst->src[1], * v = dst->src[2];
    const ggml_tensor * mask = dst->src[3], * sinks = dst->src[4];
    if (!q || !k || !v || dst->type != GGML_TYPE_F32 || q->type != GGML_TYPE_F32) return false;
    if (k->type != v->type) return false;
    if (k->type == GGML_TYPE_F16) p.type = cpu::kv_type::f16;
    else if (k->type == GGML_TYPE_Q8_0) p.type = cpu::kv_type::q8_0;
    else return false;
    const int32_t prec = dst->op_params[3];
    if (prec != GGML_PREC_DEFAULT && prec != GGML_PREC_F32) return false;

    if (q->nb[0] != sizeof(float) || k->nb[0] != ggml_type_size(k->type) || v->nb[0] != ggml_type_size(v->type)) return false;
    if (dst->nb[0] != sizeof(float)) return false;
    p.DK = q->ne[0];  p.n_tokens = q->ne[1];  p.n_head = q->ne[2];  p.n_stream = q->ne[3];
    p.DV = v->ne[0];  p.n_kv = k->ne[1];  p.n_head_kv = k->ne[2];  p.n_stream_kv = k->ne[3];
    if (k->ne[0] != p.DK || v->ne[1] != p.n_kv || v->ne[2] != p.n_head_kv || v->ne[3] != p.n_stream_kv) return false;
    if (dst->ne[0] != p.DV || dst->ne[1] != p.n_head || dst->ne[2] != p.n_tokens || dst->ne[3] != p.n_stream) return false;

    p.q = (const char *) q->data;  p.q_nb1 = q->nb[1];  p.q_nb2 = q->nb[2];  p.q_nb3 = q->nb[3];
    p.k = (const char *) k->data;  p.k_nb1 = k->nb[1];  p.k_nb2 = k->nb[2];  p.k_nb3 = k->nb[3];
    p.v = (const char *) v->data;  p.v_nb1 = v->nb[1];  p.v_nb2 = v->nb[2];  p.v_nb3 = v->nb[3];
    p.dst = (char *) dst->data;    p.d_nb1 = dst->nb[1]; p.d_nb2 = dst->nb[2]; p.d_nb3 = dst->nb[3];

    p.mask = nullptr;  p.m_nb1 = p.m_nb2 = p.m_nb3 = 0;  p.m_ne2 = p.m_ne3 = 1;
    if (mask) {
        if (mask->type != GGML_TYPE_F16 || mask->nb[0] != sizeof(ggml_fp16_t)) return false;
        if (mask->ne[0] < p.n_kv || mask->ne[1] < p.n_tokens) return false;
        p.mask = (const char *) mask->data;
        p.m_nb1 = mask->nb[1];  p.m_nb2 = mask->nb[2];  p.m_nb3 = mask->nb[3];
        p.m_ne2 = mask->ne[2];  p.m_ne3 = mask->ne[3];
    }
    p.sinks = nullptr;
    if (sinks) {
        if (sinks->type != GGML_TYPE_F32 || sinks->nb[0] != sizeof(float) || sinks->ne[0] < p.n_head) return false;
        p.sinks = (const float *) sinks->data;
    }
    // op_params: [0] scale, [1] max_bias, [2] logit softcap (f32 bits), [3] precision
    std::memcpy(&p.scale,    &dst->op_params[0], sizeof(float));
    std::memcpy(&p.max_bias, &dst->op_params[1], sizeof(float));
    std::memcpy(&p.softcap,  &dst->op_params[2], sizeof(float));
    return cpu::fattn_supported(p);
}

struct barrier_ctx {
    void (*barrier)(ggml_threadpool *);
    ggml_threadpool * tp;
};

void barrier_trampoline(void * ctx) {
    barrier_ctx * b = (barrier_ctx *) ctx;
    b->barrier(b->tp);
}

bool hook_compute(ggml_tensor * dst, int ith, int nth, void * wdata, size_t wsize,
                  ggml_threadpool * tp, void (*barrier)(ggml_threadpool *)) {
    if (!is_fused(tp)) return false;
    cpu::fattn_params p;
    if (!node_params(dst, p) || wdata == nullptr || wsize < cpu::fattn_work_size(p, nth)) {
        if (ith == 0) g_n_declined.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    if (ith == 0) g_n_fused.fetch_add(1, std::memory_order_relaxed);
    barrier_ctx bc{barrier, tp};
    cpu::fattn_compute(p, ith, nth, wdata, wsize, barrier_trampoline, &bc);
    return true;
}

size_t hook_work_size(const ggml_tensor * node, int n_threads, ggml_threadpool * tp) {
    cpu::fattn_params p;
    if (!is_fused(tp) || !node_params(node, p)) return 0;
    return cpu::fattn_work_size(p, n_threads);
}

} // namespace

void attention_hook_install() {
    static std::once_flag once;
    std::call_once(once, [] { ggml_cpu_set_fattn_hook(hook_compute, hook_work_size); });
}

void attention_set_fused(ggml_threadpool * tp, bool fused) {
    if (tp == nullptr) return;
    std::lock_guard<std::mutex> lock(g_pools_mutex);
    std::atomic<ggml_threadpool *> * free_slot = nullptr;
    PoolBlock * last = nullptr;
    for (PoolBlock * b = &g_fused_pools; b; b = b->next.load(std::memory_order_relaxed)) {
        last = b;
        for (auto & slot : b->slots) {
            ggml_threadpool * cur = slot.load(std::memory_order_relaxed);
            if (cur == tp) {
                if (!fused) slot.store(nullptr, std::memory_order_release);
                return;
            }
            if (cur == nullptr && free_slot == nullptr) free_slot = &slot;
        }
    }
    if (!fused) return;
    if (free_slot == nullptr) {
        PoolBlock * b = new PoolBlock(); // never freed: readers may be walking the chain
        free_slot = &b->slots[0];
        free_slot->store(tp, std::memory_order_relaxed);
        last->next.store(b, std::memory_order_release);
        return;
    }
    free_slot->store(tp, std::memory_order_release);
}

AttentionStats attention_stats() {
    return { g_n_fused.load(std::memory_order_relaxed), g_n_declined.load(std::memory_order_relaxed) };
}

void attention_stats_reset() {
    g_n_fused.store(0, std::memory_order_relaxed);
    g_n_declined.store(0, std::memory_order_relaxed);
}

} // namespace llamafuse
