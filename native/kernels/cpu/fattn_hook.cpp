// ggml node -> attn_op (the shared translator) -> the CPU kernels when they take it, the
// fused-threadpool registry, and the two hook entry points.
// The accept/decline decision is a pure function of (node, threadpool, nth): plan time and
// every thread of a computation reach the same answer, so no barrier can be left waiting.
#include "fattn_hook.h"
#include "fattn_cpu.h"
#include "../attn_ggml.h"

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

// The node as attn_op (../attn_ggml.cpp checks it is one: nothing we accept can trip ggml
// or read out of bounds), and one the CPU kernels take. False means decline.
bool node_params(const ggml_tensor * dst, attn_op & p) {
    return attn_op_from_node(dst, p) && cpu::fattn_supported(p);
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
    attn_op p;
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
    attn_op p;
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
