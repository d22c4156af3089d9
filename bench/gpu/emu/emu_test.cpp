// Runs the real CUDA kernel code (decode + combine, mma.sync prefill) on the CPU through
// cuda_emu.h and compares with the float64 reference, NaN-poisoned outputs and all — the
// GPU harness's correctness checks, minus the GPU. Needs g++ (C++20) and the CUDA
// toolkit's headers only. Small shapes: every CUDA thread is a host thread.
//
//   make -C bench/gpu emu-test && build/bench-gpu/emu_test

#include "cuda_emu.h"   // first: defines the CUDA built-ins the kernel headers use

#include "fattn_combine_kernel.cuh"
#include "fattn_decode.cuh"
#include "fattn_decode_kernel.cuh"
#include "fattn_decode_mma_kernel.cuh"
#include "fattn_prefill_kernel.cuh"
#include "fattn_prefill_wgmma_kernel.cuh"
#include "fattn_decode_plan.cu"   // host-only: the split plan fattn_decode uses

#include "../reference.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <limits>
#include <string>
#include <vector>

namespace lc = llamafuse::cuda;
using namespace fattn_bench;

namespace {

struct host_buffers {
    host_data d;
    std::vector<float> q_llama;   // q re-laid out as llama.cpp holds it
    std::vector<float> dst;
};

lc::kernel_args make_params(const problem & pr, host_buffers & b) {
    // q as llama.cpp holds it: [seq][token][head][D] in memory, seen through a permuted
    // view (token stride n_head*D*4, head stride D*4); make_data writes [seq][head][token][D]
    const std::vector<float> & q = b.d.q;
    b.q_llama.resize(q.size());
    for (int s = 0; s < pr.n_seq; ++s)
        for (int h = 0; h < pr.n_head; ++h)
            for (int t = 0; t < pr.n_tokens; ++t)
                for (int i = 0; i < pr.D; ++i)
                    b.q_llama[(((size_t) s * pr.n_tokens + t) * pr.n_head + h) * pr.D + i] =
                        q[(((size_t) s * pr.n_head + h) * pr.n_tokens + t) * pr.D + i];
    b.dst.assign((size_t) pr.n_seq * pr.n_tokens * pr.n_head * pr.D, std::numeric_limits<float>::quiet_NaN());
    const llamafuse::attn_op op = problem_op(pr, b.q_llama.data(), (int64_t) pr.n_head * pr.D * 4, (int64_t) pr.D * 4,
                                             (int64_t) pr.n_tokens * pr.n_head * pr.D * 4, b.d.k.data(), b.d.v.data(),
                                             b.d.mask.data(), b.d.sinks.data(), b.dst.data());
    lc::kernel_args p;
    if (!lc::kernel_args_of(op, p)) {
        fprintf(stderr, "emu_test: %s is outside the kernels' argument form\n", pr.describe().c_str());
        exit(1);
    }
    return p;
}

template <int D, int NQ, lc::kv_type T>
void run_decode_nq(const lc::kernel_args & p, const lc::decode_plan & pl, float * o, float2 * ml) {
    using C = lc::decode_cfg<D, NQ, T>;
    lf_emu::launch(dim3(pl.n_splits, p.n_head_kv * pl.row_groups, p.n_seq_q), dim3(C::THREADS), C::SMEM, [&] {
        lc::fattn_decode_kernel<D, NQ, T>(p, pl.G, pl.rows, pl.row_groups, pl.chunk, o, ml);
    });
}

template <int D, lc::kv_type T>
void run_decode_d(const lc::kernel_args & p, const lc::decode_plan & pl, float * o, float2 * ml) {
    switch (pl.nq) {
        case 1: run_decode_nq<D, 1, T>(p, pl, o, ml); break;
        case 2: run_decode_nq<D, 2, T>(p, pl, o, ml); break;
        case 4: run_decode_nq<D, 4, T>(p, pl, o, ml); break;
        default: run_decode_nq<D, 8, T>(p, pl, o, ml); break;
    }
}

// what fattn_decode launches, with a small multiprocessor count so there are several splits
void run_decode(const lc::kernel_args & p, int n_sm) {
    const lc::decode_plan pl = lc::fattn_decode_make_plan(p, n_sm);
    std::vector<uint8_t> scratch(lc::fattn_decode_scratch_bytes(p, n_sm), 0xAA);
    float * o = reinterpret_cast<float *>(scratch.data());
    float2 * ml = reinterpret_cast<float2 *>(scratch.data() + lc::fattn_decode_ml_offset(pl, p.D));
    if (p.type == lc::kv_type::f16) {
        if (p.D == 64) run_decode_d<64, lc::kv_type::f16>(p, pl, o, ml);
        else           run_decode_d<128, lc::kv_type::f16>(p, pl, o, ml);
    } else {
        if (p.D == 64) run_decode_d<64, lc::kv_type::q8_0>(p, pl, o, ml);
        else           run_decode_d<128, lc::kv_type::q8_0>(p, pl, o, ml);
    }
    lf_emu::launch(dim3(pl.rows_total), dim3(p.D), 0, [&] {
        lc::fattn_combine_kernel(p, o, ml, pl.n_splits, pl.G, pl.rows);
    });
}

// what fattn_decode_mma launches
void run_decode_mma(const lc::kernel_args & p, int n_sm) {
    const lc::decode_plan pl = lc::fattn_decode_mma_make_plan(p, n_sm);
    std::vector<uint8_t> scratch(lc::fattn_decode_plan_scratch_bytes(pl, p.D), 0xAA);
    float * o = reinterpret_cast<float *>(scratch.data());
    float2 * ml = reinterpret_cast<float2 *>(scratch.data() + lc::fattn_decode_ml_offset(pl, p.D));
    auto run = [&](auto d_tag) {
        constexpr int D = decltype(d_tag)::value;
        using C = lc::decode_mma_cfg<D>;
        lf_emu::launch(dim3(pl.n_splits, p.n_head_kv * pl.row_groups, p.n_seq_q), dim3(C::THREADS), C::SMEM, [&] {
            lc::fattn_decode_mma_kernel<D>(p, pl.G, pl.rows, pl.row_groups, pl.chunk, o, ml);
        });
    };
    if (p.D == 64) run(std::integral_constant<int, 64>());
    else           run(std::integral_constant<int, 128>());
    lf_emu::launch(dim3(pl.rows_total), dim3(p.D), 0, [&] {
        lc::fattn_combine_kernel(p, o, ml, pl.n_splits, pl.G, pl.rows);
    });
}

template <int D, lc::kv_type T> void run_prefill_t(const lc::kernel_args & p) {
    using C = lc::prefill_cfg<D, T>;
    lf_emu::launch(dim3((p.n_tokens + C::BQ - 1) / C::BQ, p.n_head, p.n_seq_q), dim3(C::THREADS), C::SMEM,
                   [&] { lc::fattn_prefill_kernel<D, T>(p); });
}

void run_prefill(const lc::kernel_args & p) {
    if (p.type == lc::kv_type::f16) {
        if (p.D == 64) run_prefill_t<64, lc::kv_type::f16>(p);
        else           run_prefill_t<128, lc::kv_type::f16>(p);
    } else {
        if (p.D == 64) run_prefill_t<64, lc::kv_type::q8_0>(p);
        else           run_prefill_t<128, lc::kv_type::q8_0>(p);
    }
}

template <int D, int V, int WG> void run_wgmma_t(const lc::kernel_args & p) {
    using C = lc::wg_cfg<D, WG>;
    lf_emu::launch(dim3((p.n_tokens + C::BQ - 1) / C::BQ, p.n_head, p.n_seq_q), dim3(C::THREADS), C::SMEM,
                   [&] { lc::fattn_prefill_wgmma_kernel<D, V, WG>(p); });
}

template <int WG> void run_wgmma(const lc::kernel_args & p, int variant) {
    if (p.D == 64) variant == 0 ? run_wgmma_t<64, 0, WG>(p) : run_wgmma_t<64, 1, WG>(p);
    else           variant == 0 ? run_wgmma_t<128, 0, WG>(p) : run_wgmma_t<128, 1, WG>(p);
}

int g_fail = 0;

// Bounds, from the measured errors of these cases on the emulator (worst of all cases here):
// the FFMA decode is f32 throughout, 1.2e-7 measured, held to 1e-5 (the CPU kernels' bar in
// fattn_check.cpp); the tensor-core paths round P and V to f16, 4.4e-4 measured, held to 1e-3.
constexpr double TOL_F32 = 1e-5;
constexpr double TOL_F16 = 1e-3;

// Seeded inputs with q scaled by q_scale: make_data draws q in [-1, 1], so scores are about
// ±0.3 and a soft-cap of 20-50 barely bends them (dropping tanh would move the output by
// ~1e-4). q_scale 30 makes them reach about ±10, where a cap of 3 changes everything.
host_data data(const problem & pr, uint64_t seed, float q_scale) {
    host_data d = make_data(pr, seed);
    for (float & x : d.q) x *= q_scale;
    return d;
}

// The wgmma kernel under the emulator's descriptor model: variant 0 is the model's own
// convention and must pass; variant 1 (LBO/SBO swapped for V) must not, which shows the
// two variants really differ. Only the GPU can say which convention the hardware uses.
void check_wgmma(const problem & pr, uint64_t seed, int wg, float q_scale = 1.0f) {
    host_buffers b;
    b.d = data(pr, seed, q_scale);
    const std::vector<double> ref = reference(pr, b.d);
    double rel[2];
    bool pass[2];
    for (int v = 0; v < 2; ++v) {
        const lc::kernel_args p = make_params(pr, b);   // fresh NaN-poisoned dst
        wg == 1 ? run_wgmma<1>(p, v) : run_wgmma<2>(p, v);
        const compare_result c = compare(pr, b.dst, ref);
        rel[v] = c.n_nan ? INFINITY : c.rel_l2;
        pass[v] = c.pass(TOL_F16);
    }
    const bool ok = pass[0] && !pass[1];
    if (!ok) ++g_fail;
    printf("  %s wgmma   %d wg: variant 0 rel_l2 %.2e, variant 1 %.2e (must differ)  %s\n", ok ? "ok  " : "FAIL", wg,
           rel[0], rel[1], pr.describe().c_str());
}

void check_decode_mma(const problem & pr, uint64_t seed, int n_sm = 3, float q_scale = 1.0f) {
    host_buffers b;
    b.d = data(pr, seed, q_scale);
    const std::vector<double> ref = reference(pr, b.d);
    const lc::kernel_args p = make_params(pr, b);
    run_decode_mma(p, n_sm);
    const compare_result c = compare(pr, b.dst, ref);
    const bool ok = c.pass(TOL_F16);
    if (!ok) ++g_fail;
    const lc::decode_plan pl = lc::fattn_decode_mma_make_plan(p, n_sm);
    printf("  %s dec-mma rel_l2 %.2e nan %zu zero_bad %zu  %s splits %d x %d, row groups %d\n", ok ? "ok  " : "FAIL", c.rel_l2,
           c.n_nan, c.n_bad_zero, pr.describe().c_str(), pl.n_splits, pl.chunk, pl.row_groups);
}

void check(const problem & pr, bool decode, uint64_t seed, int n_sm = 3, float q_scale = 1.0f) {
    host_buffers b;
    b.d = data(pr, seed, q_scale);
    const std::vector<double> ref = reference(pr, b.d);
    const lc::kernel_args p = make_params(pr, b);
    if (decode) {
        if (!lc::fattn_decode_supported(p)) {
            printf("  FAIL decode does not support %s\n", pr.describe().c_str());
            ++g_fail;
            return;
        }
        run_decode(p, n_sm);
    } else {
        run_prefill(p);
    }
    // dst is [seq][token][head][D], as the reference
    const compare_result c = compare(pr, b.dst, ref);
    const double tol = decode ? TOL_F32 : TOL_F16;
    const bool ok = c.pass(tol);
    if (!ok) ++g_fail;
    std::string extra;
    if (decode) {
        const lc::decode_plan pl = lc::fattn_decode_make_plan(p, n_sm);
        extra = " splits " + std::to_string(pl.n_splits) + " x " + std::to_string(pl.chunk) + ", nq " + std::to_string(pl.nq);
    }
    printf("  %s %-7s rel_l2 %.2e nan %zu zero_bad %zu  %s%s\n", ok ? "ok  " : "FAIL", decode ? "decode" : "prefill",
           c.rel_l2, c.n_nan, c.n_bad_zero, pr.describe().c_str(), extra.c_str());
}

enum class kernel { decode, prefill, decode_mma };

// A known answer, independent of reference(): D = 64 (scale 1/8), two keys, key 0 all 0.5 and
// key 1 all 0, values 1 and 0. Head 0's query is all 1.5 (score 6 against key 0, 0 against
// key 1), head 1's all -1.5 (score -6). Every output element of head 0 is then
// σ(cap·tanh(6/cap)) and of head 1 σ(-cap·tanh(6/cap)): with cap 2, 0.879755 and 0.120245,
// against σ(±6) = 0.997527 / 0.002473 with no tanh. reference() must agree too.
void check_known_answer(kernel which, float cap, int n_tokens) {
    problem pr;
    pr.D = 64; pr.n_head = 2; pr.n_head_kv = 1; pr.n_kv = 2; pr.n_tokens = n_tokens; pr.softcap = cap;
    host_buffers b;
    b.d.q.resize(pr.q_floats());
    for (int h = 0; h < pr.n_head; ++h)
        for (int t = 0; t < pr.n_tokens; ++t)
            for (int i = 0; i < pr.D; ++i) b.d.q[((size_t) h * pr.n_tokens + t) * pr.D + i] = h == 0 ? 1.5f : -1.5f;
    b.d.k.assign(pr.kv_bytes(), 0);
    b.d.v.assign(pr.kv_bytes(), 0);
    for (int i = 0; i < pr.D; ++i) {
        const uint16_t half_k = float_to_half(0.5f), one = float_to_half(1.0f);
        std::memcpy(&b.d.k[2 * i], &half_k, 2);   // key 0, the only kv head
        std::memcpy(&b.d.v[2 * i], &one, 2);
    }
    b.d.mask.assign(pr.mask_halves(), 0);
    const double x = cap != 0.0f ? cap * std::tanh(6.0 / cap) : 6.0;
    const double want[2] = {1.0 / (1.0 + std::exp(-x)), 1.0 / (1.0 + std::exp(x))};
    const std::vector<double> ref = reference(pr, b.d);
    const lc::kernel_args p = make_params(pr, b);
    if (which == kernel::decode) run_decode(p, 3);
    else if (which == kernel::prefill) run_prefill(p);
    else run_decode_mma(p, 3);
    double worst = 0.0, worst_ref = 0.0;
    for (int t = 0; t < pr.n_tokens; ++t)
        for (int h = 0; h < pr.n_head; ++h)
            for (int i = 0; i < pr.D; ++i) {
                const size_t e = ((size_t) t * pr.n_head + h) * pr.D + i;   // dst [token][head][D]
                const double d = std::fabs((double) b.dst[e] - want[h]);
                worst = std::isnan(d) ? INFINITY : std::max(worst, d);
                worst_ref = std::max(worst_ref, std::fabs(ref[e] - want[h]));
            }
    const double tol = which == kernel::decode ? TOL_F32 : TOL_F16;
    const bool ok = worst <= tol && worst_ref <= 1e-12;
    if (!ok) ++g_fail;
    const char * name = which == kernel::decode ? "decode" : which == kernel::prefill ? "prefill" : "dec-mma";
    printf("  %s %-7s known answer cap=%g T=%d: want %.6f / %.6f, max abs err %.2e (tol %.0e), reference %.2e\n",
           ok ? "ok  " : "FAIL", name, cap, n_tokens, want[0], want[1], worst, tol, worst_ref);
}

} // namespace

int main() {
    printf("CUDA kernels on the CPU emulator vs the float64 reference\n");
    for (kv_kind type : {kv_kind::f16, kv_kind::q8_0}) {
        problem p;
        p.type = type; p.D = 128; p.n_head = 8; p.n_head_kv = 2; p.n_tokens = 1;
        p.n_kv = 300; p.n_kv_valid = 270;                                    // padded tail
        check(p, true, 1);
        p.D = 64; p.n_kv = 77; p.n_kv_valid = -1; p.sinks = true; p.max_bias = 8.0f;
        check(p, true, 2);                                                   // sinks, ALiBi
        p.sinks = false; p.max_bias = 0.0f; p.softcap = 3.0f; p.n_tokens = 2; p.masked_rows = {1};
        check(p, true, 3, 3, 30.0f);                                         // soft-cap 3, scores ±10, dead row
        p.D = 128; p.softcap = 0.0f; p.masked_rows.clear(); p.n_head = 16; p.n_head_kv = 2; p.n_tokens = 3; p.n_kv = 100;
        check(p, true, 4);                                                   // G 8 x 3 tokens: 3 row groups of 8
        p.n_head = 2; p.n_head_kv = 2; p.n_tokens = 1; p.n_seq = 2; p.n_kv = 33;
        check(p, true, 5, 1);                                                // G 1, two sequences, one split
        p.n_seq = 1; p.n_kv = 1;
        check(p, true, 11);                                                  // a single key
        p.n_kv = 200; p.n_kv_valid = 0; p.sinks = true;
        check(p, true, 12);                                                  // every key masked: exactly 0
        p.n_kv_valid = -1; p.sinks = false;

        problem q;
        q.type = type; q.D = 64; q.n_head = 2; q.n_head_kv = 1; q.n_tokens = 70; q.n_kv = 90; q.causal = true;
        q.masked_rows = {3};
        check(q, false, 6);                                                  // causal, tile edges, dead row
        q.D = 128; q.causal = false; q.masked_rows.clear(); q.sinks = true; q.max_bias = 8.0f; q.n_tokens = 20; q.n_kv = 130;
        check(q, false, 7);                                                  // sinks, ALiBi, partial tiles
        q.sinks = false; q.max_bias = 0.0f; q.softcap = 4.0f; q.mask = false; q.n_seq = 2; q.n_tokens = 9; q.n_kv = 64;
        check(q, false, 8, 3, 30.0f);                                        // no mask, soft-cap 4 on ±10, 2 sequences
        q.mask = true; q.softcap = 0.0f; q.n_seq = 1; q.n_tokens = 17; q.n_kv = 200; q.n_kv_valid = 70;
        check(q, false, 13);                                                 // fully masked tiles skipped
        q.n_kv_valid = 0;
        check(q, false, 14);                                                 // every key masked: exactly 0
        q.n_kv_valid = -1;
    }
    {   // the experimental tensor-core decode (f16)
        problem d;
        d.D = 128; d.n_head = 8; d.n_head_kv = 2; d.n_kv = 300; d.n_kv_valid = 270;
        check_decode_mma(d, 21);
        d.D = 64; d.n_kv = 77; d.n_kv_valid = -1; d.sinks = true; d.max_bias = 8.0f; d.softcap = 5.0f;
        check_decode_mma(d, 22, 3, 30.0f);                                   // soft-cap 5 on scores ±10
        d.sinks = false; d.max_bias = 0.0f; d.softcap = 0.0f; d.n_tokens = 2; d.masked_rows = {1};
        check_decode_mma(d, 23);
        d.D = 128; d.masked_rows.clear(); d.n_head = 16; d.n_head_kv = 2; d.n_tokens = 3; d.n_kv = 200;
        check_decode_mma(d, 24);                                             // 24 rows: two row groups
        d.n_head = 2; d.n_head_kv = 2; d.n_tokens = 1; d.n_seq = 2; d.n_kv = 33;
        check_decode_mma(d, 25, 1);
        d.n_seq = 1; d.n_kv = 200; d.n_kv_valid = 0;
        check_decode_mma(d, 26);                                             // all masked: 0
    }
    {
        problem w;
        w.D = 64; w.n_head = 2; w.n_head_kv = 1; w.n_tokens = 70; w.n_kv = 90; w.causal = true; w.masked_rows = {3};
        check_wgmma(w, 9, 1);
        check_wgmma(w, 9, 2);
        w.D = 128; w.causal = false; w.masked_rows.clear(); w.sinks = true; w.n_tokens = 150; w.n_kv = 130;
        check_wgmma(w, 10, 1);
        check_wgmma(w, 10, 2);
    }
    {   // soft-cap on the wgmma kernel too, and known answers for soft-cap on every kernel
        problem w;
        w.D = 64; w.n_head = 2; w.n_head_kv = 1; w.n_tokens = 70; w.n_kv = 90; w.causal = true; w.softcap = 3.0f;
        check_wgmma(w, 27, 1, 30.0f);
        for (kernel k : {kernel::decode, kernel::prefill, kernel::decode_mma}) {
            check_known_answer(k, 2.0f, k == kernel::prefill ? 3 : 1);
            check_known_answer(k, 0.0f, k == kernel::prefill ? 3 : 1);   // no cap: σ(6)
        }
    }
    printf("emulated kernels: %d failed\n", g_fail);
    return g_fail == 0 ? 0 : 1;
}
