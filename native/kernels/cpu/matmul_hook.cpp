// The matmul hooks ggml calls for repacked weights and for its generic matmul (see matmul_hook.h).
#include "matmul_hook.h"
#include "matmul_q4_0.h"
#include "matmul_q4_k.h"
#include "matmul_q5_k.h"
#include "matmul_q6_k.h"
#include "matmul_q8_0.h"

#include "ggml-cpu.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace llamafuse {
namespace cpu {
namespace {

std::atomic<unsigned long long> g_q4_0_calls{0}, g_q4_k_calls{0}, g_q5_k_calls{0}, g_q6_k_calls{0}, g_q8_0_calls{0};
bool g_hook_on = false;  // what matmul_hook_install decided

bool repack_matmul(ggml_type type, int n, float * s, size_t bs, const void * vx, const void * vy, int nr, int nc) {
    if (type == GGML_TYPE_Q4_0 && matmul_q4_0_gemm(n, s, bs, vx, vy, nr, nc)) {
        g_q4_0_calls.fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    if (type == GGML_TYPE_Q4_K && matmul_q4_k_gemm(n, s, bs, vx, vy, nr, nc)) {
        g_q4_k_calls.fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    return false;
}

bool rows_matmul(ggml_type type, int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nr, int nc) {
    if (type == GGML_TYPE_Q6_K && matmul_q6_k_rows(n, s, bs, vx, bx, vy, by, nr, nc)) {
        g_q6_k_calls.fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    if (type == GGML_TYPE_Q5_K && matmul_q5_k_rows(n, s, bs, vx, bx, vy, by, nr, nc)) {
        g_q5_k_calls.fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    if (type == GGML_TYPE_Q8_0 && matmul_q8_0_rows(n, s, bs, vx, bx, vy, by, nr, nc)) {
        g_q8_0_calls.fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    return false;
}

// The matmuls rows_matmul wants that llamafile's sgemm would take first: Q8_0 decode steps.
bool rows_claim(ggml_type type, int n, int nr) {
    return type == GGML_TYPE_Q8_0 && matmul_q8_0_claims(n, nr);
}

} // namespace

void matmul_hook_install() {
    static std::once_flag once;
    std::call_once(once, [] {
        const char * off = std::getenv("LLAMAFUSE_GGML_MATMUL");
        g_hook_on = (matmul_q4_0_available() || matmul_q4_k_available() || matmul_q5_k_available() || matmul_q6_k_available() ||
                     matmul_q8_0_available()) &&
                    !(off != nullptr && std::strcmp(off, "1") == 0);
        matmul_hook_reinstall();
    });
}

void matmul_hook_lift() {
    ggml_cpu_set_repack_matmul_hook(nullptr);
    ggml_cpu_set_mul_mat_rows_hook(nullptr, nullptr);
}

void matmul_hook_reinstall() {
    ggml_cpu_set_repack_matmul_hook(g_hook_on ? repack_matmul : nullptr);
    ggml_cpu_set_mul_mat_rows_hook(g_hook_on ? rows_matmul : nullptr, g_hook_on ? rows_claim : nullptr);
}

unsigned long long matmul_q4_0_calls() {
    return g_q4_0_calls.load(std::memory_order_relaxed);
}

unsigned long long matmul_q4_k_calls() {
    return g_q4_k_calls.load(std::memory_order_relaxed);
}

unsigned long long matmul_q5_k_calls() {
    return g_q5_k_calls.load(std::memory_order_relaxed);
}

unsigned long long matmul_q6_k_calls() {
    return g_q6_k_calls.load(std::memory_order_relaxed);
}

unsigned long long matmul_q8_0_calls() {
    return g_q8_0_calls.load(std::memory_order_relaxed);
}

} // namespace cpu
} // namespace llamafuse
