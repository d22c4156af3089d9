// Standalone harness for llamafuse's CUDA attention kernels (no Node, no llama.cpp):
//   1. correctness: random shapes against the float64 CPU reference, outputs poisoned
//      with NaN before each launch, every path (decode, prefill, dispatcher, graph replay);
//   2. the ceilings: a large device-to-device copy (bytes read + written) and a read-only pass;
//   3. decode timings (Llama-3-8B attention: 32 q heads, 8 kv heads, D 128) at 4K/16K/32K,
//      f16 and q8_0, rotating over per-layer KV buffers that together exceed the L2 several
//      times, so every layer's K/V really comes from HBM;
//   4. prefill TFLOP/s, dense and causal;
//   then a short table (last, so a tail of the output holds it).
//
// usage: fattn_bench [--cpu-selftest] [--quick] [--tiny] [--no-timing] [--json FILE] [--wgmma 0|1] [--decode-mma]
//   --decode-mma: only the tensor-core decode's own checks, then its f16 timings
//   --tiny: four small shapes, no timing (for compute-sanitizer runs)
//   --wgmma V: only the EXPERIMENTAL wgmma prefill kernel, descriptor variant V: checks,
//   then times it if every check passed. Its own process, so that a fault in an unproven
//   kernel cannot poison the CUDA context of the main run.

#include "emulate.h"
#include "reference.h"
#include "selftest.h"

#include "fattn_common.cuh"
#include "fattn_cuda.cuh"
#include "fattn_decode.cuh"
#include "fattn_decode_mma.cuh"
#include "fattn_prefill.cuh"
#include "fattn_prefill_wgmma.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

using namespace fattn_bench;
namespace lc = llamafuse::cuda;

#define CUDA_CHECK(x)                                                                          \
    do {                                                                                       \
        cudaError_t err_ = (x);                                                                \
        if (err_ != cudaSuccess) {                                                             \
            fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(err_), __FILE__, \
                    __LINE__, cudaGetErrorString(err_));                                       \
            exit(2);                                                                           \
        }                                                                                      \
    } while (0)

namespace {

int g_sm = 0;
size_t g_l2 = 0;
int g_wgmma_variant = 0;
int g_wgmma_wg = 1;   // warpgroups per block of the wgmma kernel

// ---- device copies of a problem --------------------------------------------------------------

struct device_problem {
    float * q = nullptr;
    uint8_t * k = nullptr;
    uint8_t * v = nullptr;
    __half * mask = nullptr;
    float * sinks = nullptr;
    float * dst = nullptr;
    void * scratch = nullptr;
    size_t scratch_bytes = 0;
    size_t dst_floats = 0;

    void upload(const problem & pr, const host_data & d) {
        CUDA_CHECK(cudaMalloc(&q, d.q.size() * 4));
        CUDA_CHECK(cudaMemcpy(q, d.q.data(), d.q.size() * 4, cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMalloc(&k, d.k.size()));
        CUDA_CHECK(cudaMemcpy(k, d.k.data(), d.k.size(), cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMalloc(&v, d.v.size()));
        CUDA_CHECK(cudaMemcpy(v, d.v.data(), d.v.size(), cudaMemcpyHostToDevice));
        if (pr.mask) {
            CUDA_CHECK(cudaMalloc(&mask, d.mask.size() * 2));
            CUDA_CHECK(cudaMemcpy(mask, d.mask.data(), d.mask.size() * 2, cudaMemcpyHostToDevice));
        }
        if (pr.sinks) {
            CUDA_CHECK(cudaMalloc(&sinks, d.sinks.size() * 4));
            CUDA_CHECK(cudaMemcpy(sinks, d.sinks.data(), d.sinks.size() * 4, cudaMemcpyHostToDevice));
        }
        dst_floats = (size_t) pr.n_seq * pr.n_tokens * pr.n_head * pr.D;
        CUDA_CHECK(cudaMalloc(&dst, dst_floats * 4));
    }
    void ensure_scratch(size_t bytes) {
        if (bytes <= scratch_bytes) return;
        if (scratch) CUDA_CHECK(cudaFree(scratch));
        CUDA_CHECK(cudaMalloc(&scratch, bytes));
        scratch_bytes = bytes;
    }
    void free_all() {
        for (void * p : {(void *) q, (void *) k, (void *) v, (void *) mask, (void *) sinks, (void *) dst, scratch}) {
            if (p) CUDA_CHECK(cudaFree(p));
        }
        *this = device_problem();
    }
};

lc::kernel_args make_params(const problem & pr, const device_problem & dp) {
    // q [seq][head][token][D]: token stride D*4, head stride T*D*4 (a permuted view in ggml)
    const int64_t row = (int64_t) pr.D * 4;
    const llamafuse::attn_op op = problem_op(pr, dp.q, row, row * pr.n_tokens, row * pr.n_tokens * pr.n_head,
                                             dp.k, dp.v, dp.mask, dp.sinks, dp.dst);
    lc::kernel_args p;
    if (!lc::kernel_args_of(op, p)) {
        fprintf(stderr, "fattn_bench: %s is outside the kernels' argument form\n", pr.describe().c_str());
        exit(1);
    }
    return p;
}

// ---- correctness -----------------------------------------------------------------------------

enum class path { decode, prefill, dispatch, graph, wgmma, decode_mma };
const char * path_name(path p) {
    switch (p) {
        case path::decode: return "decode";
        case path::prefill: return "prefill";
        case path::dispatch: return "dispatch";
        case path::graph: return "graph";
        case path::wgmma: return "wgmma";
        case path::decode_mma: return "dec-mma";
    }
    return "?";
}

struct check_stats {
    int run = 0, failed = 0;
    double worst_decode = 0.0, worst_prefill = 0.0;
};

// Launches one path with a NaN-poisoned dst; returns the output.
std::vector<float> run_path(path which, const problem & pr, device_problem & dp, cudaStream_t st) {
    lc::kernel_args p = make_params(pr, dp);
    CUDA_CHECK(cudaMemsetAsync(dp.dst, 0xff, dp.dst_floats * 4, st));   // 0xffffffff is a NaN
    switch (which) {
        case path::decode: {
            const size_t bytes = lc::fattn_decode_scratch_bytes(p, g_sm);
            dp.ensure_scratch(bytes);
            lc::fattn_decode(p, dp.scratch, bytes, g_sm, st);
            break;
        }
        case path::prefill:
            lc::fattn_prefill(p, st);
            break;
        case path::wgmma:
            lc::fattn_prefill_wgmma(p, g_wgmma_variant, st, g_wgmma_wg);
            break;
        case path::decode_mma: {
            const size_t bytes = lc::fattn_decode_plan_scratch_bytes(lc::fattn_decode_mma_make_plan(p, g_sm), p.D);
            dp.ensure_scratch(bytes);
            lc::fattn_decode_mma(p, dp.scratch, bytes, g_sm, st);
            break;
        }
        case path::dispatch: {
            const size_t bytes = lc::fattn_scratch_bytes(p, g_sm);
            dp.ensure_scratch(std::max<size_t>(bytes, 256));
            lc::fattn_run(p, dp.scratch, bytes, g_sm, st);
            break;
        }
        case path::graph: {
            // what ggml-cuda does with the hook: capture the launch, replay the graph. A sync,
            // an allocation or a host copy inside would make capture fail (global mode).
            const size_t bytes = lc::fattn_scratch_bytes(p, g_sm);
            dp.ensure_scratch(std::max<size_t>(bytes, 256));
            // A capture failure is reported as a failed check (output left NaN), not a crash:
            // capture errors do not poison the context, and the rest of the run still counts.
            CUDA_CHECK(cudaStreamSynchronize(st));
            cudaGraph_t graph = nullptr;
            cudaGraphExec_t exec = nullptr;
            cudaError_t e = cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal);
            if (e == cudaSuccess) {
                lc::fattn_run(p, dp.scratch, bytes, g_sm, st);
                e = cudaStreamEndCapture(st, &graph);
            }
            if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
            if (e == cudaSuccess) e = cudaGraphLaunch(exec, st);
            if (e == cudaSuccess) e = cudaGraphLaunch(exec, st);   // twice: replays must be repeatable
            if (e == cudaSuccess) e = cudaStreamSynchronize(st);
            if (exec) cudaGraphExecDestroy(exec);
            if (graph) cudaGraphDestroy(graph);
            if (e != cudaSuccess) {
                printf("  graph capture/replay failed: %s\n", cudaGetErrorString(e));
                cudaGetLastError();
                return std::vector<float>(dp.dst_floats, std::numeric_limits<float>::quiet_NaN());
            }
            break;
        }
    }
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaStreamSynchronize(st));
    std::vector<float> out(dp.dst_floats);
    CUDA_CHECK(cudaMemcpy(out.data(), dp.dst, out.size() * 4, cudaMemcpyDeviceToHost));
    return out;
}

// Tolerances: the FFMA decode is f32 throughout: 1.7e-7 measured on the CPU emulation of the
// same code (emu_test), held to 1e-5, the CPU kernels' bar. The tensor-core paths (f16 decode,
// prefill) round P and V to f16: 4.4e-4 measured on the emulator, held to 2e-3 (GPU figures:
// the summary line prints the worst of each).
constexpr double TOL_F32 = 1e-5;
constexpr double TOL_F16 = 2e-3;

double tolerance(path which, const problem & pr) {
    const lc::kernel_args probe = [&] {
        device_problem none;
        lc::kernel_args p = make_params(pr, none);
        p.q = reinterpret_cast<const float *>(uintptr_t(256));   // alignment probes only
        p.k = p.v = reinterpret_cast<const void *>(uintptr_t(256));
        return p;
    }();
    if (which == path::wgmma || which == path::decode_mma) return TOL_F16;   // f16 tensor-core operands
    // the FFMA decode is f32 throughout; the dispatcher's other paths (f16 decode on tensor
    // cores, prefill) have f16 operands
    const bool f32_path = which == path::decode ||
                          ((which == path::dispatch || which == path::graph) && lc::fattn_choose(probe) == lc::fattn_path::decode);
    return f32_path ? TOL_F32 : TOL_F16;
}

void check_data(const problem & pr, const host_data & d, const std::vector<path> & paths, check_stats & st, cudaStream_t stream) {
    const std::vector<double> ref = reference(pr, d);
    device_problem dp;
    dp.upload(pr, d);
    for (path w : paths) {
        const std::vector<float> out = run_path(w, pr, dp, stream);
        const compare_result c = compare(pr, out, ref);
        const double tol = tolerance(w, pr);
        const bool ok = c.pass(tol);
        ++st.run;
        if (!ok) ++st.failed;
        double & worst = tol < 1e-3 ? st.worst_decode : st.worst_prefill;
        worst = std::max(worst, c.n_nan ? INFINITY : c.rel_l2);
        printf("  %s %-8s rel_l2 %.2e max_abs %.2e nan %zu zero_bad %zu  %s\n", ok ? "ok  " : "FAIL", path_name(w),
               c.rel_l2, c.max_abs, c.n_nan, c.n_bad_zero, pr.describe().c_str());
    }
    dp.free_all();
}

// Seeded inputs with q scaled by q_scale: make_data draws q in [-1, 1], so scores are about
// ±0.3 and a soft-cap of 20-50 barely bends them (dropping tanh moved the output by only
// ~1e-4). Soft-cap cases use q_scale 30 (scores reach about ±10) and caps of 2-5.
void check_case(const problem & pr, uint64_t seed, const std::vector<path> & paths, check_stats & st, cudaStream_t stream,
                float q_scale = 1.0f) {
    host_data d = make_data(pr, seed);
    for (float & x : d.q) x *= q_scale;
    check_data(pr, d, paths, st, stream);
}

// A known soft-cap answer, independent of the reference code: D = 64 (scale 1/8), two keys,
// key 0 all 0.5 and key 1 all 0, values 1 and 0; head 0's query all 1.5 (score 6 against key
// 0), head 1's all -1.5. Every output element of head 0 is σ(cap·tanh(6/cap)), of head 1
// σ(-cap·tanh(6/cap)): 0.879755 / 0.120245 with cap 2, σ(±6) = 0.997527 / 0.002473 without
// tanh. The reference is checked against that first, then every path against the reference.
void check_known_answer(float cap, int n_tokens, const std::vector<path> & paths, check_stats & st, cudaStream_t stream) {
    problem pr;
    pr.D = 64; pr.n_head = 2; pr.n_head_kv = 1; pr.n_kv = 2; pr.n_tokens = n_tokens; pr.softcap = cap;
    host_data d;
    d.q.resize(pr.q_floats());
    for (int h = 0; h < pr.n_head; ++h)
        for (int t = 0; t < pr.n_tokens; ++t)
            for (int i = 0; i < pr.D; ++i) d.q[((size_t) h * pr.n_tokens + t) * pr.D + i] = h == 0 ? 1.5f : -1.5f;
    d.k.assign(pr.kv_bytes(), 0);
    d.v.assign(pr.kv_bytes(), 0);
    const uint16_t half_k = float_to_half(0.5f), one = float_to_half(1.0f);
    for (int i = 0; i < pr.D; ++i) {
        std::memcpy(&d.k[2 * i], &half_k, 2);   // key 0 (the only kv head); key 1 stays 0
        std::memcpy(&d.v[2 * i], &one, 2);
    }
    d.mask.assign(pr.mask_halves(), 0);
    const double x = cap != 0.0f ? cap * std::tanh(6.0 / cap) : 6.0;
    const double want[2] = {1.0 / (1.0 + std::exp(-x)), 1.0 / (1.0 + std::exp(x))};
    const std::vector<double> ref = reference(pr, d);
    double worst_ref = 0.0;
    for (int t = 0; t < pr.n_tokens; ++t)
        for (int h = 0; h < pr.n_head; ++h)
            for (int i = 0; i < pr.D; ++i) worst_ref = std::max(worst_ref, std::fabs(ref[((size_t) t * pr.n_head + h) * pr.D + i] - want[h]));
    printf("  %s known answer cap=%g T=%d: want %.6f / %.6f, reference off by %.2e\n", worst_ref <= 1e-12 ? "ok  " : "FAIL", cap,
           n_tokens, want[0], want[1], worst_ref);
    ++st.run;
    if (worst_ref > 1e-12) ++st.failed;
    check_data(pr, d, paths, st, stream);
}

check_stats run_correctness(bool quick, bool tiny, cudaStream_t stream) {
    printf("\n== correctness: CUDA kernels vs float64 CPU reference (NaN-poisoned outputs)\n");
    check_stats st;
    rng g(12345);
    const std::vector<path> dec_paths = {path::decode, path::dispatch, path::graph};
    const std::vector<path> pre_paths = {path::prefill, path::dispatch};

    if (tiny) {   // a few small shapes, every kernel once: for compute-sanitizer runs
        problem d;
        d.D = 128; d.n_head = 8; d.n_head_kv = 2; d.n_kv = 300; d.n_kv_valid = 270;
        check_case(d, g.next(), {path::decode, path::graph}, st, stream);
        d.D = 64; d.type = kv_kind::q8_0; d.n_tokens = 2; d.sinks = true; d.n_kv = 77; d.n_kv_valid = -1;
        check_case(d, g.next(), {path::decode}, st, stream);
        problem q;
        q.D = 64; q.n_head = 2; q.n_head_kv = 1; q.n_tokens = 70; q.n_kv = 90; q.causal = true;
        check_case(q, g.next(), {path::prefill}, st, stream);
        q.D = 128; q.type = kv_kind::q8_0; q.causal = false; q.sinks = true; q.n_tokens = 20; q.n_kv = 130;
        check_case(q, g.next(), {path::prefill}, st, stream);
        printf("correctness (tiny): %d runs, %d failed\n", st.run, st.failed);
        return st;
    }

    // fixed edge cases first
    for (kv_kind type : {kv_kind::f16, kv_kind::q8_0}) {
        for (int D : {64, 128}) {
            problem p;
            p.D = D; p.type = type; p.n_head = 32; p.n_head_kv = 8; p.n_tokens = 1;
            p.n_kv = 4096 + 256; p.n_kv_valid = 4096 + 37;          // the 256-padding
            check_case(p, g.next(), dec_paths, st, stream);
            p.n_kv = 1; p.n_kv_valid = -1;                           // a single key
            check_case(p, g.next(), dec_paths, st, stream);
            p.n_kv = 33; p.n_tokens = 2; p.masked_rows = {1};        // tile edge, masked row
            check_case(p, g.next(), dec_paths, st, stream);
            p.masked_rows.clear();
            p.n_kv = 777; p.n_tokens = 4; p.sinks = true; p.max_bias = 8.0f; p.n_head = 16; p.n_head_kv = 2;
            check_case(p, g.next(), dec_paths, st, stream);          // G=8, 4 tokens: 4 row groups
            p.sinks = false; p.max_bias = 0.0f; p.softcap = 3.0f; p.n_head = 8; p.n_head_kv = 8;
            p.n_tokens = 1; p.n_seq = 2;
            check_case(p, g.next(), dec_paths, st, stream, 30.0f);   // G=1, two sequences, soft-cap 3 on ±10

            problem q;
            q.D = D; q.type = type; q.n_head = 8; q.n_head_kv = 2; q.n_tokens = 130; q.n_kv = 300;
            q.causal = true; q.masked_rows = {5};
            check_case(q, g.next(), pre_paths, st, stream);
            q.causal = false; q.sinks = true; q.max_bias = 8.0f; q.n_tokens = 64; q.n_kv = 64; q.masked_rows.clear();
            check_case(q, g.next(), pre_paths, st, stream);
            q.sinks = false; q.max_bias = 0.0f; q.softcap = 4.0f; q.n_tokens = 75; q.n_kv = 113; q.n_seq = 2; q.mask = false;
            check_case(q, g.next(), pre_paths, st, stream, 30.0f);   // soft-cap 4 on ±10
        }
    }
    check_known_answer(2.0f, 1, dec_paths, st, stream);
    check_known_answer(2.0f, 3, pre_paths, st, stream);
    // random shapes
    const int n_random = quick ? 8 : 40;
    for (int i = 0; i < n_random; ++i) {
        problem p;
        p.D = g.below(2) ? 128 : 64;
        p.type = g.below(2) ? kv_kind::f16 : kv_kind::q8_0;
        const int Gs[] = {1, 2, 4, 8};
        const int G = Gs[g.below(4)];
        p.n_head_kv = 1 + g.below(4);
        p.n_head = p.n_head_kv * G;
        const bool decode = g.below(2);
        if (!decode) p.n_head_kv = 1 + g.below(2);   // <= 16 heads for prefill: quick reference
        p.n_head = p.n_head_kv * G;
        p.n_tokens = decode ? 1 + g.below(4) : 5 + g.below(200);
        p.n_kv = decode ? 1 + g.below(9000) : 1 + g.below(700);
        if (g.below(3) == 0) p.n_kv_valid = g.below(p.n_kv + 1);
        p.causal = !decode && g.below(2);
        p.mask = g.below(8) != 0;
        if (!p.mask) { p.causal = false; p.n_kv_valid = -1; }
        p.sinks = g.below(4) == 0;
        if (p.mask && g.below(5) == 0) p.max_bias = 8.0f;
        if (g.below(5) == 0) p.softcap = 2.0f + g.below(4);
        p.n_seq = g.below(6) == 0 ? 2 : 1;
        check_case(p, g.next(), decode ? dec_paths : pre_paths, st, stream, p.softcap != 0.0f ? 30.0f : 1.0f);
    }
    printf("correctness: %d runs, %d failed; worst rel_l2 decode %.2e, prefill %.2e\n", st.run, st.failed,
           st.worst_decode, st.worst_prefill);
    return st;
}

// The experimental wgmma prefill kernel on the prefill-shaped cases it takes (f16 caches).
check_stats run_wgmma_checks(bool quick, cudaStream_t stream) {
    printf("\n== correctness: EXPERIMENTAL wgmma prefill, V descriptor variant %d, %d warpgroup(s)\n", g_wgmma_variant, g_wgmma_wg);
    check_stats st;
    rng g(777);
    for (int D : {64, 128}) {
        problem q;
        q.D = D; q.n_head = 8; q.n_head_kv = 2; q.n_tokens = 130; q.n_kv = 300; q.causal = true; q.masked_rows = {5};
        check_case(q, g.next(), {path::wgmma}, st, stream);
        q.causal = false; q.sinks = true; q.max_bias = 8.0f; q.n_tokens = 64; q.n_kv = 64; q.masked_rows.clear();
        check_case(q, g.next(), {path::wgmma}, st, stream);
        q.sinks = false; q.max_bias = 0.0f; q.softcap = 4.0f; q.n_tokens = 75; q.n_kv = 113; q.n_seq = 2; q.mask = false;
        check_case(q, g.next(), {path::wgmma}, st, stream, 30.0f);
    }
    check_known_answer(2.0f, 3, {path::wgmma}, st, stream);
    for (int i = 0; i < (quick ? 4 : 16); ++i) {
        problem p;
        p.D = g.below(2) ? 128 : 64;
        p.n_head_kv = 1 + g.below(2);                 // <= 16 heads: the float64 reference stays quick
        p.n_head = p.n_head_kv * (1 << g.below(4));
        p.n_tokens = 5 + g.below(200);
        p.n_kv = 1 + g.below(600);
        p.causal = g.below(2);
        if (g.below(3) == 0) p.n_kv_valid = g.below(p.n_kv + 1);
        p.sinks = g.below(4) == 0;
        if (g.below(5) == 0) p.softcap = 3.0f;
        check_case(p, g.next(), {path::wgmma}, st, stream, p.softcap != 0.0f ? 30.0f : 1.0f);
    }
    printf("wgmma variant %d, %d wg: %d runs, %d failed; worst rel_l2 %.2e\n", g_wgmma_variant, g_wgmma_wg, st.run, st.failed, st.worst_prefill);
    return st;
}

// The tensor-core decode (fattn_run's f16 decode) on the decode shapes it takes, called
// directly: the dispatcher's checks above reach it only through the shapes they draw.
check_stats run_decode_mma_checks(bool quick, cudaStream_t stream) {
    printf("\n== correctness: tensor-core decode\n");
    check_stats st;
    rng g(4242);
    for (int D : {64, 128}) {
        problem p;
        p.D = D; p.n_head = 32; p.n_head_kv = 8; p.n_kv = 4096 + 256; p.n_kv_valid = 4096 + 37;
        check_case(p, g.next(), {path::decode_mma}, st, stream);
        p.n_kv = 1; p.n_kv_valid = -1;
        check_case(p, g.next(), {path::decode_mma}, st, stream);
        p.n_kv = 777; p.n_tokens = 4; p.sinks = true; p.max_bias = 8.0f; p.n_head = 16; p.n_head_kv = 2; p.masked_rows = {2};
        check_case(p, g.next(), {path::decode_mma}, st, stream);
        p.sinks = false; p.max_bias = 0.0f; p.softcap = 3.0f; p.n_head = 8; p.n_head_kv = 8; p.n_tokens = 1; p.n_seq = 2;
        p.masked_rows.clear();
        check_case(p, g.next(), {path::decode_mma}, st, stream, 30.0f);
    }
    check_known_answer(2.0f, 1, {path::decode_mma}, st, stream);
    for (int i = 0; i < (quick ? 4 : 16); ++i) {
        problem p;
        p.D = g.below(2) ? 128 : 64;
        const int Gs[] = {1, 2, 4, 8};
        p.n_head_kv = 1 + g.below(4);
        p.n_head = p.n_head_kv * Gs[g.below(4)];
        p.n_tokens = 1 + g.below(4);
        p.n_kv = 1 + g.below(9000);
        if (g.below(3) == 0) p.n_kv_valid = g.below(p.n_kv + 1);
        p.sinks = g.below(4) == 0;
        if (g.below(5) == 0) p.max_bias = 8.0f;
        check_case(p, g.next(), {path::decode_mma}, st, stream);
    }
    printf("decode-mma: %d runs, %d failed; worst rel_l2 %.2e\n", st.run, st.failed, st.worst_prefill);
    return st;
}

// ---- timing ----------------------------------------------------------------------------------

// Median time of one launch: `iters` launches (launch(i), i = 0..iters-1) are captured in a
// CUDA graph, as llama.cpp runs them, so the numbers hold kernel time and not the host's
// launch overhead; replays timed with events.
template <typename F> double median_ms(F && launch, int iters, cudaStream_t st, int reps = 7) {
    for (int i = 0; i < std::min(iters, 2); ++i) launch(i);   // warm-up, outside capture
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaStreamSynchronize(st));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < iters; ++i) launch(i);
    CUDA_CHECK(cudaStreamEndCapture(st, &graph));
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    CUDA_CHECK(cudaGraphLaunch(exec, st));
    CUDA_CHECK(cudaStreamSynchronize(st));

    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
        CUDA_CHECK(cudaEventRecord(a, st));
        CUDA_CHECK(cudaGraphLaunch(exec, st));
        CUDA_CHECK(cudaEventRecord(b, st));
        CUDA_CHECK(cudaEventSynchronize(b));
        float ms;
        CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms / iters);
    }
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaEventDestroy(a));
    CUDA_CHECK(cudaEventDestroy(b));
    CUDA_CHECK(cudaGraphExecDestroy(exec));
    CUDA_CHECK(cudaGraphDestroy(graph));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

__global__ void fill_random_f16(__half * p, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x) {
        uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        x ^= x >> 31; x *= 0xBF58476D1CE4E5B9ull; x ^= x >> 29;
        p[i] = __float2half((float) (x & 0xffff) / 32768.0f - 1.0f);
    }
}

// q8_0 blocks: a small random f16 scale, then 32 random int8
__global__ void fill_random_q8_0(uint8_t * p, size_t n_blocks, uint64_t seed) {
    for (size_t b = blockIdx.x * (size_t) blockDim.x + threadIdx.x; b < n_blocks; b += (size_t) gridDim.x * blockDim.x) {
        uint8_t * blk = p + b * 34;
        uint64_t x = (b + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        const __half d = __float2half(0.002f + (float) (x & 0xff) / 25600.0f);
        memcpy(blk, &d, 2);
        for (int j = 0; j < 32; ++j) {
            x ^= x >> 31; x *= 0xBF58476D1CE4E5B9ull; x ^= x >> 29;
            blk[2 + j] = (uint8_t) (x >> 24);
        }
    }
}

// The memory ceilings, measured here: decode only reads K/V, so its bar is the read
// bandwidth; the copy (bytes read + written) is the usual yardstick, taken as the better of
// cudaMemcpy and a 16-byte-per-thread copy kernel (cudaMemcpy alone measured well under
// what the card copies with a kernel).
struct ceilings {
    double copy_api = 0, copy_kernel = 0, read = 0;
    double copy() const { return std::max(copy_api, copy_kernel); }
};

__global__ void copy_vec(const int4 * __restrict__ a, int4 * __restrict__ b, size_t n) {
    const size_t stride = (size_t) gridDim.x * blockDim.x;
    for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += stride) b[i] = a[i];
}

// Reads every 16 bytes once, four loads in flight per thread; the XOR keeps the loads alive
// and the store never happens for random data.
__global__ void read_vec(const int4 * __restrict__ a, size_t n, int * __restrict__ sink) {
    const size_t stride = (size_t) gridDim.x * blockDim.x;
    int acc = 0;
    size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n; i += 4 * stride) {
        const int4 x0 = a[i], x1 = a[i + stride], x2 = a[i + 2 * stride], x3 = a[i + 3 * stride];
        acc ^= x0.x ^ x0.y ^ x0.z ^ x0.w ^ x1.x ^ x1.y ^ x1.z ^ x1.w ^ x2.x ^ x2.y ^ x2.z ^ x2.w ^ x3.x ^ x3.y ^ x3.z ^ x3.w;
    }
    for (; i < n; i += stride) acc ^= a[i].x ^ a[i].y ^ a[i].z ^ a[i].w;
    if (acc == 0x7fffffff) *sink = acc;
}

ceilings measure_ceilings(cudaStream_t st) {
    const size_t bytes = size_t(1) << 30;   // 1 GiB each way: ~20x the L2
    const size_t n16 = bytes / 16;
    void *a, *b;
    int * sink;
    CUDA_CHECK(cudaMalloc(&a, bytes));
    CUDA_CHECK(cudaMalloc(&b, bytes));
    CUDA_CHECK(cudaMalloc(&sink, sizeof(int)));
    fill_random_f16<<<1024, 256, 0, st>>>((__half *) a, bytes / 2, 1);
    CUDA_CHECK(cudaGetLastError());
    const int blocks = 8 * g_sm;
    ceilings c;
    double ms = median_ms([&](int) {
        CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, st));
    }, 10, st);
    c.copy_api = 2.0 * bytes / (ms * 1e-3) / 1e9;
    ms = median_ms([&](int) { copy_vec<<<blocks, 256, 0, st>>>((const int4 *) a, (int4 *) b, n16); }, 10, st);
    c.copy_kernel = 2.0 * bytes / (ms * 1e-3) / 1e9;
    ms = median_ms([&](int) { read_vec<<<blocks, 256, 0, st>>>((const int4 *) a, n16, sink); }, 10, st);
    c.read = bytes / (ms * 1e-3) / 1e9;
    CUDA_CHECK(cudaFree(a));
    CUDA_CHECK(cudaFree(b));
    CUDA_CHECK(cudaFree(sink));
    return c;
}

void print_ceilings(const ceilings & c) {
    printf("  copy, read + write: cudaMemcpy %.0f GB/s, 16-byte kernel %.0f GB/s -> copy ceiling %.0f GB/s\n",
           c.copy_api, c.copy_kernel, c.copy());
    printf("  read only (16-byte loads, 4 in flight): %.0f GB/s -> read ceiling\n", c.read);
}

struct decode_row {
    std::string type;
    int n_kv;
    double us, gbs, pct, pct_read, floor_us;   // pct: of the copy ceiling; floor: K+V at the read ceiling
};

struct prefill_row {
    std::string type, mask;
    int n_tokens;
    double us, tflops;
};

// Llama-3-8B attention shape, one layer per launch, layers rotated so the working set is
// well beyond the L2.
decode_row time_decode(kv_kind type, int n_kv, const ceilings & ceiling, cudaStream_t st, int target_blocks = 0, bool quiet = false,
                       bool mma = false) {
    problem pr;
    pr.D = 128; pr.n_head = 32; pr.n_head_kv = 8; pr.n_tokens = 1; pr.n_kv = n_kv; pr.type = type;
    const size_t layer_bytes = pr.kv_bytes();   // one of K or V
    const size_t want = std::max<size_t>(4 * g_l2, size_t(256) << 20);
    const int n_layers = (int) std::max<size_t>(2, (want + 2 * layer_bytes - 1) / (2 * layer_bytes));

    uint8_t * kv;
    CUDA_CHECK(cudaMalloc(&kv, 2 * layer_bytes * n_layers));
    if (type == kv_kind::f16) {
        fill_random_f16<<<2048, 256, 0, st>>>((__half *) kv, layer_bytes * n_layers, 7);
    } else {
        fill_random_q8_0<<<2048, 256, 0, st>>>(kv, 2 * layer_bytes * n_layers / 34, 7);
    }
    CUDA_CHECK(cudaGetLastError());
    device_problem dp;
    CUDA_CHECK(cudaMalloc(&dp.q, pr.q_floats() * 4));
    {
        std::vector<float> hq(pr.q_floats());
        rng g(3);
        for (float & x : hq) x = (float) g.uniform(-1, 1);
        CUDA_CHECK(cudaMemcpy(dp.q, hq.data(), hq.size() * 4, cudaMemcpyHostToDevice));
    }
    CUDA_CHECK(cudaMalloc(&dp.mask, (size_t) n_kv * 2));
    CUDA_CHECK(cudaMemsetAsync(dp.mask, 0, (size_t) n_kv * 2, st));   // all keys visible
    dp.dst_floats = (size_t) pr.n_head * pr.D;
    CUDA_CHECK(cudaMalloc(&dp.dst, dp.dst_floats * 4));
    pr.mask = true;

    std::vector<lc::kernel_args> layers(n_layers);
    for (int l = 0; l < n_layers; ++l) {
        dp.k = kv + (size_t) 2 * l * layer_bytes;
        dp.v = dp.k + layer_bytes;
        layers[l] = make_params(pr, dp);
    }
    const lc::decode_plan pl = mma ? lc::fattn_decode_mma_make_plan(layers[0], g_sm)
                                   : lc::fattn_decode_make_plan(layers[0], g_sm, target_blocks);
    const size_t scratch = lc::fattn_decode_plan_scratch_bytes(pl, pr.D);
    dp.ensure_scratch(scratch);
    const double ms = median_ms([&](int i) {
        if (mma) lc::fattn_decode_mma(layers[i % n_layers], dp.scratch, scratch, g_sm, st);
        else     lc::fattn_decode_with_plan(layers[i % n_layers], pl, dp.scratch, scratch, st);
    }, std::max(64, 4 * n_layers), st);
    CUDA_CHECK(cudaFree(kv));
    dp.k = dp.v = nullptr;
    dp.free_all();

    decode_row r;
    r.type = std::string(type == kv_kind::f16 ? "f16" : "q8_0") + (mma ? "/mma" : "");
    r.n_kv = n_kv;
    r.us = ms * 1e3;
    r.gbs = 2.0 * layer_bytes / (ms * 1e-3) / 1e9;
    r.pct = 100.0 * r.gbs / ceiling.copy();
    r.pct_read = 100.0 * r.gbs / ceiling.read;
    r.floor_us = 2.0 * layer_bytes / (ceiling.read * 1e9) * 1e6;
    if (quiet) return r;
    printf("  decode %-8s kv=%-6d %8.2f us/layer  %7.0f GB/s  %5.1f%% of copy  %5.1f%% of read  (floor %.2f us; %d layers rotated; %d splits x %d keys)\n",
           r.type.c_str(), n_kv, r.us, r.gbs, r.pct, r.pct_read, r.floor_us, n_layers, pl.n_splits, pl.chunk);
    return r;
}

prefill_row time_prefill(kv_kind type, int n_tokens, bool causal, cudaStream_t st, bool wgmma = false) {
    problem pr;
    pr.D = 128; pr.n_head = 32; pr.n_head_kv = 8; pr.n_tokens = n_tokens; pr.n_kv = n_tokens; pr.type = type;
    pr.mask = true; pr.causal = causal;
    const host_data d = make_data(pr, 77);   // ~n_tokens^2 mask halves: 32 MB at 4096
    device_problem dp;
    dp.upload(pr, d);
    const lc::kernel_args p = make_params(pr, dp);
    const double ms = median_ms([&](int) {
        if (wgmma) lc::fattn_prefill_wgmma(p, g_wgmma_variant, st, g_wgmma_wg);
        else lc::fattn_prefill(p, st);
    }, 5, st);
    dp.free_all();
    // matmul FLOPs actually needed: 2*D for Q.K^T plus 2*D for P.V per visible (query, key)
    double pairs = 0;
    for (int t = 0; t < n_tokens; ++t) pairs += causal ? t + 1 : n_tokens;   // n_kv == n_tokens
    const double flops = 4.0 * pr.D * pr.n_head * pairs;
    prefill_row r;
    r.type = std::string(type == kv_kind::f16 ? "f16" : "q8_0") + (wgmma ? "/wgmma" + std::to_string(g_wgmma_wg) + "wg" : "");
    r.mask = causal ? "causal" : "dense";
    r.n_tokens = n_tokens;
    r.us = ms * 1e3;
    r.tflops = flops / (ms * 1e-3) / 1e12;
    printf("  prefill %-4s %-6s T=%-5d %9.1f us  %6.1f TFLOP/s\n", r.type.c_str(), r.mask.c_str(), n_tokens, r.us, r.tflops);
    return r;
}

} // namespace

int main(int argc, char ** argv) {
    bool quick = false, timing = true, tiny = false;
    int wgmma_variant = -1;
    bool decode_mma = false;
    const char * json_path = nullptr;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--cpu-selftest")) return cpu_selftest();
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--tiny")) { tiny = true; timing = false; }
        else if (!strcmp(argv[i], "--no-timing")) timing = false;
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--wgmma") && i + 1 < argc) wgmma_variant = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode-mma")) decode_mma = true;
        else {
            fprintf(stderr, "usage: %s [--cpu-selftest] [--quick] [--tiny] [--no-timing] [--json FILE] [--wgmma 0|1] [--decode-mma]\n", argv[0]);
            return 2;
        }
    }

    int dev = 0;
    CUDA_CHECK(cudaSetDevice(dev));
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    g_sm = prop.multiProcessorCount;
    g_l2 = prop.l2CacheSize;
    printf("device: %s, cc %d.%d, %d SMs, L2 %.0f MB, %.0f GB memory\n", prop.name, prop.major, prop.minor, g_sm,
           g_l2 / 1e6, prop.totalGlobalMem / 1e9);
    if (prop.major < 8) {
        fprintf(stderr, "needs sm_80 or newer\n");
        return 2;
    }
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));

    if (decode_mma) {   // the tensor-core decode alone: its checks, then its f16 timings
        const check_stats ms = run_decode_mma_checks(quick, st);
        std::vector<decode_row> rows;
        if (ms.failed == 0 && timing) {
            printf("\n== ceilings\n");
            const ceilings ceiling = measure_ceilings(st);
            print_ceilings(ceiling);
            printf("\n== decode, tensor cores\n");
            for (int n_kv : {4096, 16384, 32768}) rows.push_back(time_decode(kv_kind::f16, n_kv, ceiling, st, 0, false, true));
        }
        printf("\n== decode-mma summary: %d/%d checks passed, worst rel_l2 %.2e", ms.run - ms.failed, ms.run, ms.worst_prefill);
        for (const decode_row & r : rows) printf("; kv=%d %.2f us (%.1f%% of copy, %.1f%% of read)", r.n_kv, r.us, r.pct, r.pct_read);
        printf("\n");
        CUDA_CHECK(cudaStreamDestroy(st));
        return ms.failed == 0 ? 0 : 1;
    }

    if (wgmma_variant >= 0) {
        if (prop.major != 9) {
            printf("wgmma: needs compute capability 9.0 (sm_90a); skipped\n");
            return 0;
        }
        g_wgmma_variant = wgmma_variant;
        int failed = 0, runs = 0;
        double worst = 0.0;
        std::vector<prefill_row> rows;
        for (int wg : {1, 2}) {
            g_wgmma_wg = wg;
            printf("\n-- %d warpgroup(s) per block\n", wg);
            const check_stats ws = run_wgmma_checks(quick, st);
            failed += ws.failed;
            runs += ws.run;
            worst = std::max(worst, ws.worst_prefill);
            if (ws.failed == 0 && timing) {
                for (bool causal : {false, true}) rows.push_back(time_prefill(kv_kind::f16, quick ? 2048 : 4096, causal, st, true));
            }
        }
        printf("\n== wgmma summary: variant %d: %d/%d checks passed, worst rel_l2 %.2e", wgmma_variant, runs - failed, runs, worst);
        for (const prefill_row & r : rows) printf("; %s %s %.1f TFLOP/s", r.type.c_str(), r.mask.c_str(), r.tflops);
        printf("\n");
        CUDA_CHECK(cudaStreamDestroy(st));
        return failed == 0 ? 0 : 1;
    }

    check_stats cs = run_correctness(quick, tiny, st);
    if (!tiny) {
        const check_stats ms = run_decode_mma_checks(quick, st);
        cs.run += ms.run;
        cs.failed += ms.failed;
        cs.worst_prefill = std::max(cs.worst_prefill, ms.worst_prefill);
    }

    std::vector<decode_row> dec;
    std::vector<prefill_row> pre;
    ceilings ceiling;
    if (timing) {
        printf("\n== ceilings\n");
        ceiling = measure_ceilings(st);
        print_ceilings(ceiling);
        printf("\n== decode: Llama-3-8B attention, 32 q / 8 kv heads, D 128, 1 token\n");
        // f16/mma: the tensor-core decode fattn_run uses for f16; f16: the FFMA decode beside it
        for (int n_kv : {4096, 16384, 32768}) dec.push_back(time_decode(kv_kind::f16, n_kv, ceiling, st, 0, false, true));
        for (kv_kind t : {kv_kind::f16, kv_kind::q8_0}) {
            for (int n_kv : {4096, 16384, 32768}) dec.push_back(time_decode(t, n_kv, ceiling, st));
        }
        // how the split count moves decode time: blocks in the grid (kv heads x splits), a
        // multiple of the multiprocessor count; the default is DECODE_BLOCKS_PER_SM x SMs
        printf("\n== decode split sweep (f16): us/layer by target block count\n");
        for (int n_kv : {4096, 16384, 32768}) {
            printf("  kv=%-6d", n_kv);
            for (int mult : {1, 2, 4, 8}) {
                const decode_row r = time_decode(kv_kind::f16, n_kv, ceiling, st, mult * g_sm, true);
                printf("  %d x SMs: %.2f us (%.1f%%)", mult, r.us, r.pct);
            }
            printf("\n");
        }
        printf("\n== prefill: 32 q / 8 kv heads, D 128, n_kv = n_tokens\n");
        for (kv_kind t : {kv_kind::f16, kv_kind::q8_0}) {
            for (bool causal : {false, true}) pre.push_back(time_prefill(t, quick ? 2048 : 4096, causal, st));
        }
    }

    if (json_path) {
        FILE * f = fopen(json_path, "w");
        if (f) {
            fprintf(f, "{\"device\":\"%s\",\"sm\":%d,\"copy_gbs\":%.1f,\"copy_api_gbs\":%.1f,\"copy_kernel_gbs\":%.1f,\"read_gbs\":%.1f,\"checks\":%d,\"failed\":%d,",
                    prop.name, g_sm, ceiling.copy(), ceiling.copy_api, ceiling.copy_kernel, ceiling.read, cs.run, cs.failed);
            fprintf(f, "\"worst_rel_l2\":{\"decode\":%.3e,\"prefill\":%.3e},\"decode\":[", cs.worst_decode, cs.worst_prefill);
            for (size_t i = 0; i < dec.size(); ++i)
                fprintf(f, "%s{\"type\":\"%s\",\"n_kv\":%d,\"us\":%.3f,\"gbs\":%.1f,\"pct_copy\":%.1f,\"pct_read\":%.1f}", i ? "," : "",
                        dec[i].type.c_str(), dec[i].n_kv, dec[i].us, dec[i].gbs, dec[i].pct, dec[i].pct_read);
            fprintf(f, "],\"prefill\":[");
            for (size_t i = 0; i < pre.size(); ++i)
                fprintf(f, "%s{\"type\":\"%s\",\"mask\":\"%s\",\"n_tokens\":%d,\"us\":%.1f,\"tflops\":%.1f}", i ? "," : "",
                        pre[i].type.c_str(), pre[i].mask.c_str(), pre[i].n_tokens, pre[i].us, pre[i].tflops);
            fprintf(f, "]}\n");
            fclose(f);
        }
    }

    printf("\n== summary (%s)\n", prop.name);
    printf("correctness: %d/%d passed; worst rel_l2 f32 paths %.2e (tol %.0e), f16 tensor-core paths %.2e (tol %.0e)\n",
           cs.run - cs.failed, cs.run, cs.worst_decode, TOL_F32, cs.worst_prefill, TOL_F16);
    if (timing) {
        printf("copy ceiling %.0f GB/s (cudaMemcpy %.0f, kernel %.0f), read ceiling %.0f GB/s\n", ceiling.copy(), ceiling.copy_api,
               ceiling.copy_kernel, ceiling.read);
        printf("| decode | kv | us/layer | GB/s | %% copy | %% read | floor us |\n");
        for (const decode_row & r : dec)
            printf("| %s | %d | %.2f | %.0f | %.1f | %.1f | %.2f |\n", r.type.c_str(), r.n_kv, r.us, r.gbs, r.pct, r.pct_read, r.floor_us);
        printf("| prefill | mask | T | us | TFLOP/s |\n");
        for (const prefill_row & r : pre)
            printf("| %s | %s | %d | %.1f | %.1f |\n", r.type.c_str(), r.mask.c_str(), r.n_tokens, r.us, r.tflops);
    }
    CUDA_CHECK(cudaStreamDestroy(st));
    return cs.failed == 0 ? 0 : 1;
}
