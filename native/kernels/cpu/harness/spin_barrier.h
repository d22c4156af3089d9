#pragma once
// The barrier the harness programs hand to the kernels in place of ggml's threadpool
// barrier: threads spin until the last of `nth` arrives (a benchmark/test helper only).
#include <atomic>

struct barrier_t { std::atomic<int> n{0}, gen{0}; int nth; };

static void barrier(void * ctx) {
    barrier_t * b = (barrier_t *) ctx;
    int g = b->gen.load();
    if (b->n.fetch_add(1) == b->nth - 1) { b->n = 0; b->gen++; }
    else while (b->gen.load() == g) {}
}
