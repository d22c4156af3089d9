// Standalone check of the fused CPU attention kernels against attn_reference (double
// accumulation), on random shapes, masks, ALiBi, soft-cap, sinks, thread counts, and both
// the AVX2 and portable inner loops; no ggml or Node needed. Not part of the addon build
// (CMake globs only native/kernels/cpu/*.cpp). Build and run from the repository root:
//   K=native/kernels/cpu; g++ -O2 -march=native -std=c++17 -I$K $K/harness/fattn_check.cpp \
//     $K/fattn_cpu.cpp $K/fattn_portable.cpp $K/fattn_avx2.cpp native/kernels/attn_reference.cpp -lpthread -o fattn_check
//   ./fattn_check 500
#include "fattn_cpu.h"
#include "../attn_reference.h"
#include "fattn_common.h"
#include "spin_barrier.h"
#include <immintrin.h>
#include <atomic>
#include <thread>
#include <vector>
#include <random>
#include <cstdio>
#include <cmath>
#include <chrono>
using namespace llamafuse;
using namespace llamafuse::cpu;

static uint16_t f2h(float f) { return _cvtss_sh(f, 0); }

int main(int argc, char ** argv) {
    int n_cases = argc > 1 ? atoi(argv[1]) : 300;
    std::mt19937 rng(1234);
    auto ri = [&](int a, int b) { return std::uniform_int_distribution<int>(a, b)(rng); };
    auto rf = [&]() { return std::uniform_real_distribution<float>(-1, 1)(rng); };
    int fails = 0;
    double worst = 0;
    for (int c = 0; c < n_cases; c++) {
        const int dims[] = {64, 80, 96, 128, 256, 8, 16};
        int DK = dims[ri(0, 6)], DV = DK;
        attn_kv_type type = ri(0, 1) ? attn_kv_type::q8_0 : attn_kv_type::f16;
        if (type == attn_kv_type::q8_0 && DK % 32) DK = DV = 64;
        const int Gs[] = {1, 2, 4, 8, 3, 12};
        int G = Gs[ri(0, c % 7 == 0 ? 5 : 3)];
        int nhkv = ri(1, 3);
        int N = ri(0, 2) == 0 ? ri(2, 70) : 1;
        int ns = ri(1, 3);
        int nkv_choices[] = {1, 31, 32, 33, 255, 256, 257, ri(1, 700), ri(1, 2000)};
        int nkv = nkv_choices[ri(0, 8)];
        bool has_mask = ri(0, 4) != 0;
        bool alibi = ri(0, 5) == 0, softcap = ri(0, 5) == 0, sinks = ri(0, 4) == 0;
        int nth = ri(1, 4);
        bool portable = ri(0, 3) == 0;
        int nh = G * nhkv;
        // buffers: q [DK, N, nh, ns] contiguous
        std::vector<float> q((size_t) DK * N * nh * ns);
        // soft-cap cases: q ×10, so scores reach about ±10 and a cap of 2-5 bends them hard (a cap
        // of 20 on scores of ±1 moved the output by ~1e-5 when tanh was dropped: under the bound)
        for (auto & x : q) x = rf() * (softcap ? 10 : 2);
        size_t rowb = type == attn_kv_type::f16 ? DK * 2 : DK / 32 * 34;
        size_t rowbv = type == attn_kv_type::f16 ? DV * 2 : DV / 32 * 34;
        std::vector<char> k(rowb * nkv * nhkv * ns), v(rowbv * nkv * nhkv * ns);
        auto fill = [&](std::vector<char> & buf, size_t rb, int D) {
            for (size_t r = 0; r < buf.size() / rb; r++) {
                char * row = buf.data() + r * rb;
                if (type == attn_kv_type::f16) for (int d = 0; d < D; d++) ((uint16_t *) row)[d] = f2h(rf());
                else for (int b = 0; b < D / 32; b++) { block_q8_0 * bl = (block_q8_0 *) row + b; bl->d = f2h(0.01f + 0.02f * (rf() + 1)); for (int i = 0; i < 32; i++) bl->qs[i] = (int8_t) ri(-127, 127); }
            }
        };
        fill(k, rowb, DK); fill(v, rowbv, DV);
        int npad = (N + 3) / 4 * 4;
        std::vector<uint16_t> mask((size_t) nkv * npad * ns);
        for (int s = 0; s < ns; s++) for (int t = 0; t < npad; t++) {
            int mode = ri(0, 3); // 0 causal-ish, 1 random, 2 fully masked, 3 none
            if (t == 0 && ri(0, 3) == 0) mode = 2;
            int pos = nkv - N + t;
            for (int j = 0; j < nkv; j++) {
                float x = 0;
                if (mode == 0) x = j <= pos ? 0 : -INFINITY;
                else if (mode == 1) x = ri(0, 2) == 0 ? -INFINITY : 0;
                else if (mode == 2) x = -INFINITY;
                if (alibi && x == 0) x = -(float) std::abs(pos - j);
                mask[((size_t) s * npad + t) * nkv + j] = f2h(x);
            }
        }
        std::vector<float> sk(nh);
        for (auto & x : sk) x = rf() * 3;
        attn_op p{};
        p.q = (const char *) q.data(); p.q_nb1 = DK * 4; p.q_nb2 = (size_t) DK * 4 * N; p.q_nb3 = (size_t) DK * 4 * N * nh;
        p.k = k.data(); p.k_nb1 = rowb; p.k_nb2 = rowb * nkv; p.k_nb3 = rowb * nkv * nhkv;
        p.v = v.data(); p.v_nb1 = rowbv; p.v_nb2 = rowbv * nkv; p.v_nb3 = rowbv * nkv * nhkv;
        if (has_mask) { p.mask = (const char *) mask.data(); p.m_nb1 = nkv * 2; p.m_nb2 = (size_t) nkv * 2 * npad; p.m_nb3 = p.m_nb2; p.m_ne2 = 1; p.m_ne3 = ns; }
        p.sinks = sinks ? sk.data() : nullptr;
        p.type = type; p.DK = DK; p.DV = DV; p.n_tokens = N; p.n_head = nh; p.n_stream = ns; p.n_kv = nkv; p.n_head_kv = nhkv; p.n_stream_kv = ns;
        p.scale = 1.0f / std::sqrt((float) DK); p.max_bias = alibi ? 8.0f : 0.0f; p.softcap = softcap ? (float) ri(2, 5) : 0.0f;
        std::vector<float> out((size_t) DV * nh * N * ns, NAN), ref(out.size(), NAN);
        p.d_nb1 = DV * 4; p.d_nb2 = (size_t) DV * 4 * nh; p.d_nb3 = (size_t) DV * 4 * nh * N;
        p.dst = (char *) ref.data();
        attn_reference_store(p);
        p.dst = (char *) out.data();
        if (!fattn_supported(p)) { printf("unsupported?\n"); return 1; }
        fattn_force_portable(portable);
        size_t ws = fattn_work_size(p, nth);
        std::vector<char> wbuf(ws);
        barrier_t b; b.nth = nth;
        std::vector<std::thread> th;
        for (int i = 0; i < nth; i++) th.emplace_back([&, i] { fattn_compute(p, i, nth, wbuf.data(), ws, barrier, &b); });
        for (auto & t : th) t.join();
        double num = 0, den = 0; bool bad = false; int nzero_bad = 0;
        for (size_t i = 0; i < out.size(); i++) {
            if (std::isnan(out[i])) bad = true;
            if (ref[i] == 0 && out[i] != 0) nzero_bad++;
            num += (double) (out[i] - ref[i]) * (out[i] - ref[i]); den += (double) ref[i] * ref[i];
        }
        double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
        worst = std::max(worst, rel);
        if (bad || rel > 1e-5 || nzero_bad) {
            fails++;
            printf("FAIL case %d: DK=%d G=%d nhkv=%d N=%d ns=%d nkv=%d type=%d mask=%d alibi=%d cap=%d sinks=%d nth=%d portable=%d rel=%g nan=%d zerobad=%d\n",
                c, DK, G, nhkv, N, ns, nkv, (int) type, has_mask, alibi, softcap, sinks, nth, portable, rel, bad, nzero_bad);
        }
    }
    printf("%d cases, %d failures, worst rel %g\n", n_cases, fails, worst);
    return fails != 0;
}
