// Standalone timing of the fused CPU attention kernels (no ggml): one op over `layers` distinct
// caches laid out as llama.cpp's ([D, n_head_kv, n_kv]), CPU time per thread so that other
// load on a shared machine does not count. Build as fattn_check.cpp, then:
//   ./fattn_perf D G depth q8(0|1) n_tokens n_head_kv [threads]
//   e.g. ./fattn_perf 128 4 16384 0 1 8 1     (decode)   ./fattn_perf 128 4 4096 0 512 1 1 (prefill)
#include "fattn_cpu.h"
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
#include <algorithm>
#include <ctime>
using namespace llamafuse;
using namespace llamafuse::cpu;
int main(int argc, char ** argv) {
    int D = atoi(argv[1]), G = atoi(argv[2]), depth = atoi(argv[3]), q8 = atoi(argv[4]), N = atoi(argv[5]), nhkv = atoi(argv[6]);
    int nth = argc > 7 ? atoi(argv[7]) : 2;
    attn_kv_type type = q8 ? attn_kv_type::q8_0 : attn_kv_type::f16;
    int nkv = depth + (N > 1 ? N : 0);
    size_t rowb = q8 ? D / 32 * 34 : D * 2;
    size_t layer_bytes = rowb * nkv * nhkv * 2;
    int L = std::max<size_t>(1, std::min<size_t>(8, (128u << 20) / layer_bytes + 1));
    std::vector<std::vector<char>> ks(L), vs(L);
    std::mt19937 rng(1);
    for (int l = 0; l < L; l++) {
        ks[l].resize(rowb * nkv * nhkv); vs[l].resize(rowb * nkv * nhkv);
        for (auto * b : {&ks[l], &vs[l]}) {
            if (!q8) { uint16_t * h = (uint16_t *) b->data(); for (size_t i = 0; i < b->size() / 2; i++) h[i] = _cvtss_sh((rng() % 2000) / 1000.0f - 1, 0); }
            else { for (size_t r = 0; r < b->size() / 34; r++) { block_q8_0 * bl = (block_q8_0 *) b->data() + r; bl->d = _cvtss_sh(0.01f, 0); for (int i = 0; i < 32; i++) bl->qs[i] = (int8_t) (rng() % 255 - 127); } }
        }
    }
    int nh = G * nhkv;
    std::vector<float> q((size_t) D * N * nh); for (auto & x : q) x = (rng() % 2000) / 1000.0f - 1;
    std::vector<uint16_t> mask((size_t) nkv * N);
    for (int t = 0; t < N; t++) for (int j = 0; j < nkv; j++) mask[(size_t) t * nkv + j] = _cvtss_sh(j <= depth + t ? 0.0f : -INFINITY, 0);
    std::vector<float> out((size_t) D * nh * N);
    attn_op p{};
    p.q = (const char *) q.data(); p.q_nb1 = D * 4 * nh; p.q_nb2 = D * 4; p.q_nb3 = (size_t) D * 4 * N * nh;
    p.k_nb1 = rowb * nhkv; p.k_nb2 = rowb; p.k_nb3 = 0;
    p.v_nb1 = rowb * nhkv; p.v_nb2 = rowb; p.v_nb3 = 0;
    if (N > 1) { p.mask = (const char *) mask.data(); p.m_nb1 = nkv * 2; p.m_nb2 = p.m_nb3 = (size_t) nkv * 2 * N; p.m_ne2 = p.m_ne3 = 1; }
    p.dst = (char *) out.data(); p.d_nb1 = D * 4; p.d_nb2 = (size_t) D * 4 * nh; p.d_nb3 = 0;
    p.type = type; p.DK = p.DV = D; p.n_tokens = N; p.n_head = nh; p.n_stream = 1; p.n_kv = nkv; p.n_head_kv = nhkv; p.n_stream_kv = 1;
    p.scale = 1.0f / std::sqrt((float) D);
    size_t ws = fattn_work_size(p, nth);
    std::vector<char> wbuf(ws);
    std::vector<double> times;
    int reps = N > 1 ? 3 : 6;
    for (int rep = 0; rep < reps; rep++) {
        timespec c0, c1; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        auto t0 = std::chrono::steady_clock::now();
        for (int l = 0; l < L; l++) {
            p.k = ks[l].data(); p.v = vs[l].data();
            barrier_t b; b.nth = nth;
            std::vector<std::thread> th;
            for (int i = 0; i < nth; i++) th.emplace_back([&, i] { fattn_compute(p, i, nth, wbuf.data(), ws, barrier, &b); });
            for (auto & t : th) t.join();
        }
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        double cpu = (c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) * 1e-9;
        (void) t0;
        times.push_back(cpu / nth / L * 1e6);  // CPU time per thread: immune to preemption
    }
    std::sort(times.begin(), times.end());
    double us = times[times.size() / 2];
    double gflop = 4.0 * N * nh * (N > 1 ? depth + N / 2.0 : depth) * D / 1e9;
    printf("D=%d G=%d depth=%d %s N=%d hkv=%d L=%d: %.1f us/op, %.2f GB/s, %.1f GFLOP/s\n", D, G, depth, q8 ? "q8_0" : "f16", N, nhkv, L, us, layer_bytes / us / 1e3, gflop / us * 1e6);
}
