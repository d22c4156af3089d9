#pragma once
// A CPU emulation of the CUDA subset that native/kernels/cuda's kernels use, so their real
// code (the *_kernel.cuh headers, compiled as host C++ with LF_CUDA_EMU) can run and be
// checked on a machine with no GPU. One host thread per CUDA thread, blocks one after the
// other; __syncthreads and the warp collectives are barriers. Semantics kept on purpose:
//   - cp.async copies land in shared memory only at the cp.async.wait_group that covers
//     them (a read before its wait sees stale bytes);
//   - shared memory starts filled with garbage (0xAA bytes), never zeros;
//   - shuffles, ldmatrix (plain and .trans) and mma.sync m16n8k16 exchange values between
//     the 32 lanes exactly as the PTX ISA's fragment layouts say.
// What it cannot show: speed, races that need real concurrency, or hardware behaviour that
// differs from the documentation (the GPU run checks those).

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#ifndef LF_CUDA_EMU
#define LF_CUDA_EMU 1
#endif

// CUDA's function-space qualifiers mean nothing on the host
#undef __global__
#undef __device__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)

namespace lf_emu {

struct copy_op {
    void * dst;
    const void * src;
    int bytes;
};

struct lane_frag {
    uint32_t a[4];
    uint32_t b[2];
    float c[4];
};

struct block_state {
    explicit block_state(int n_threads, size_t smem_bytes)
        : n_threads(n_threads), smem_bytes(smem_bytes),
          smem(static_cast<uint8_t *>(::operator new[](smem_bytes ? smem_bytes : 1, std::align_val_t(128)))),
          bar(n_threads) {
        std::memset(smem.get(), 0xAA, smem_bytes);   // exact size: an overflow is an overflow
        for (int w = 0; w < n_threads / 32; ++w) warp_bar.emplace_back(std::make_unique<std::barrier<>>(32));
        for (int g = 0; g < n_threads / 128; ++g) wg_bar.emplace_back(std::make_unique<std::barrier<>>(128));
        words.resize(n_threads / 32);
        ptrs.resize(n_threads / 32);
        frags.resize(n_threads / 32);
        wg_a.resize(n_threads);
        wg_desc.resize(n_threads);
        or_acc[0] = or_acc[1] = 0;
    }
    int n_threads;
    size_t smem_bytes;
    struct aligned_delete {
        void operator()(uint8_t * p) const { ::operator delete[](p, std::align_val_t(128)); }
    };
    std::unique_ptr<uint8_t[], aligned_delete> smem;
    std::barrier<> bar;
    std::vector<std::unique_ptr<std::barrier<>>> warp_bar;
    std::vector<std::unique_ptr<std::barrier<>>> wg_bar;   // warpgroups (wgmma)
    std::vector<std::array<uint32_t, 32>> words;
    std::vector<std::array<const void *, 32>> ptrs;
    std::vector<std::array<lane_frag, 32>> frags;
    std::vector<std::array<uint32_t, 4>> wg_a;   // wgmma A fragments of the warpgroup
    std::vector<uint64_t> wg_desc;
    std::atomic<int> or_acc[2];
    std::atomic<int> wg_desc_mismatch{0};
};

struct thread_state {
    uint3 tid{}, bid{};
    dim3 bdim, gdim;
    block_state * blk = nullptr;
    std::vector<copy_op> open;                  // issued, not yet committed
    std::deque<std::vector<copy_op>> groups;    // committed, not yet waited for
    int or_parity = 0;
};

inline thread_local thread_state tls;

inline uint8_t * block_smem() { return tls.blk->smem.get(); }   // 128-byte aligned, like the hardware's
inline int linear_tid() { return (int) tls.tid.x; }
inline int warp_id() { return linear_tid() / 32; }
inline int lane_id() { return linear_tid() % 32; }

inline void cp_async(void * dst, const void * src, int bytes) { tls.open.push_back({dst, src, bytes}); }
inline void cp_async_commit() {
    tls.groups.push_back(std::move(tls.open));
    tls.open.clear();
}
inline void cp_async_wait(int n) {
    while ((int) tls.groups.size() > n) {
        for (const copy_op & c : tls.groups.front()) std::memcpy(c.dst, c.src, c.bytes);
        tls.groups.pop_front();
    }
}

inline void warp_sync() { tls.blk->warp_bar[warp_id()]->arrive_and_wait(); }

inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float half_bits_to_float(uint16_t h) { __half x; std::memcpy(&x, &h, 2); return __half2float(x); }

// ldmatrix.m8n8.x4(.trans).b16: lanes 8i..8i+7 give the row addresses of matrix i; lane t
// receives, of each matrix, row t/4 elements 2(t%4), 2(t%4)+1 (transposed: column t/4,
// rows 2(t%4) and 2(t%4)+1).
inline void ldmatrix_x4(uint32_t r[4], const void * smem, bool trans) {
    auto & ptrs = tls.blk->ptrs[warp_id()];
    const int lane = lane_id();
    ptrs[lane] = smem;
    warp_sync();
    for (int i = 0; i < 4; ++i) {
        uint16_t lo, hi;
        if (!trans) {
            const uint16_t * row = static_cast<const uint16_t *>(ptrs[8 * i + lane / 4]);
            lo = row[2 * (lane % 4)];
            hi = row[2 * (lane % 4) + 1];
        } else {
            lo = static_cast<const uint16_t *>(ptrs[8 * i + 2 * (lane % 4)])[lane / 4];
            hi = static_cast<const uint16_t *>(ptrs[8 * i + 2 * (lane % 4) + 1])[lane / 4];
        }
        r[i] = (uint32_t) lo | ((uint32_t) hi << 16);
    }
    warp_sync();
}

// mma.sync.m16n8k16.row.col.f32.f16.f16.f32, fragments as the PTX ISA lays them out:
//   A 16x16: a0 (g, 2c..2c+1), a1 (g+8, 2c..), a2 (g, 2c+8..), a3 (g+8, 2c+8..)
//   B 16x8:  b0 (k 2c..2c+1, n g), b1 (k 2c+8.., n g)
//   C 16x8:  c0 c1 (g, 2c, 2c+1), c2 c3 (g+8, 2c, 2c+1)      with g = lane/4, c = lane%4
inline void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    auto & fr = tls.blk->frags[warp_id()];
    const int lane = lane_id();
    lane_frag & mine = fr[lane];
    for (int i = 0; i < 4; ++i) mine.a[i] = a[i];
    mine.b[0] = b0;
    mine.b[1] = b1;
    for (int i = 0; i < 4; ++i) mine.c[i] = c[i];
    warp_sync();
    auto A = [&](int row, int k) {
        const lane_frag & f = fr[(row % 8) * 4 + (k % 8) / 2];
        const uint32_t w = f.a[(row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)];
        return half_bits_to_float((uint16_t) (w >> (16 * (k & 1))));
    };
    auto B = [&](int k, int n) {
        const lane_frag & f = fr[n * 4 + (k % 8) / 2];
        const uint32_t w = f.b[k >= 8 ? 1 : 0];
        return half_bits_to_float((uint16_t) (w >> (16 * (k & 1))));
    };
    float out[4];
    for (int e = 0; e < 4; ++e) {
        const int row = lane / 4 + (e >= 2 ? 8 : 0);
        const int col = 2 * (lane % 4) + (e & 1);
        float acc = 0.0f;
        for (int k = 0; k < 16; ++k) acc += A(row, k) * B(k, col);
        out[e] = fr[lane].c[e] + acc;
    }
    warp_sync();
    for (int e = 0; e < 4; ++e) c[e] = out[e];
}

// wgmma.mma_async m64nNk16 .f32.f16.f16 with A from registers, issued by the calling
// thread's warpgroup (128 consecutive threads). The model it follows (no-swizzle only):
//   A: warp w holds rows 16w..16w+15 in mma.sync's A fragment layout;
//   D: warp w's rows, 8-column chunk j at d[4j .. 4j+3] in mma.sync's C layout;
//   B from the descriptor: start address, LBO (between core matrices adjacent along K),
//     SBO (between core matrices adjacent along N), all in 16-byte units; a core matrix is
//     8 rows of 16 bytes, 128 contiguous bytes. K-major (trans = false): a core row is 8
//     consecutive K of one n; MN-major (trans = true): 8 consecutive n of one k.
inline void wgmma_rs(float * d, int N, const uint32_t (&a)[4], uint64_t desc, int scale_d, bool trans) {
    block_state & b = *tls.blk;
    const int t = linear_tid();
    const int g0 = (t / 128) * 128;   // the warpgroup's first thread
    std::barrier<> & bar = *b.wg_bar[t / 128];
    for (int i = 0; i < 4; ++i) b.wg_a[t][i] = a[i];
    b.wg_desc[t] = desc;
    bar.arrive_and_wait();
    if (b.wg_desc[t] != b.wg_desc[g0]) b.wg_desc_mismatch = 1;
    const uint32_t start = (uint32_t) (desc & 0x3fff) << 4;
    const uint32_t lbo = (uint32_t) ((desc >> 16) & 0x3fff) << 4;
    const uint32_t sbo = (uint32_t) ((desc >> 32) & 0x3fff) << 4;
    const uint8_t * base = block_smem();
    auto B = [&](int k, int n) {
        const uint32_t off = trans ? start + (k / 8) * lbo + (n / 8) * sbo + (k % 8) * 16 + (n % 8) * 2
                                   : start + (k / 8) * lbo + (n / 8) * sbo + (n % 8) * 16 + (k % 8) * 2;
        if ((size_t) off + 2 > b.smem_bytes) {
            return std::numeric_limits<float>::quiet_NaN();   // outside the block's shared memory
        }
        uint16_t h;
        std::memcpy(&h, base + off, 2);
        return half_bits_to_float(h);
    };
    auto A = [&](int row, int k) {
        const int r = row % 16;
        const int owner = g0 + (row / 16) * 32 + (r % 8) * 4 + (k % 8) / 2;
        const uint32_t w = b.wg_a[owner][(r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)];
        return half_bits_to_float((uint16_t) (w >> (16 * (k & 1))));
    };
    const int w = (t - g0) / 32, lane = t % 32;   // warp within the warpgroup: rows 16w..
    std::vector<float> out(N / 2);
    for (int j = 0; j < N / 8; ++j) {
        for (int e = 0; e < 4; ++e) {
            const int row = 16 * w + lane / 4 + (e >= 2 ? 8 : 0);
            const int col = 8 * j + 2 * (lane % 4) + (e & 1);
            float acc = 0.0f;
            for (int k = 0; k < 16; ++k) acc += A(row, k) * B(k, col);
            out[4 * j + e] = (scale_d ? d[4 * j + e] : 0.0f) + acc;
        }
    }
    bar.arrive_and_wait();
    for (int i = 0; i < N / 2; ++i) d[i] = out[i];
}

// Runs `body` as a grid of blocks, one host thread per CUDA thread, blocks in turn.
template <typename F> void launch(dim3 grid, dim3 block, size_t smem_bytes, F && body) {
    const int n = (int) (block.x * block.y * block.z);
    for (unsigned bz = 0; bz < grid.z; ++bz) {
        for (unsigned by = 0; by < grid.y; ++by) {
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                block_state bs(n, smem_bytes);
                std::vector<std::thread> threads;
                threads.reserve(n);
                for (int t = 0; t < n; ++t) {
                    threads.emplace_back([&, t] {
                        tls = thread_state();
                        tls.tid = uint3{(unsigned) t, 0, 0};
                        tls.bid = uint3{bx, by, bz};
                        tls.bdim = block;
                        tls.gdim = grid;
                        tls.blk = &bs;
                        body();
                    });
                }
                for (std::thread & th : threads) th.join();
            }
        }
    }
}

} // namespace lf_emu

#define threadIdx (::lf_emu::tls.tid)
#define blockIdx (::lf_emu::tls.bid)
#define blockDim (::lf_emu::tls.bdim)
#define gridDim (::lf_emu::tls.gdim)

inline void __syncthreads() { ::lf_emu::tls.blk->bar.arrive_and_wait(); }

inline int __syncthreads_or(int v) {
    auto & t = ::lf_emu::tls;
    const int p = t.or_parity;
    t.or_parity ^= 1;
    if (t.tid.x == 0) t.blk->or_acc[p ^ 1] = 0;   // the next call's buffer; all finished reading it
    if (v) t.blk->or_acc[p].fetch_or(1);
    t.blk->bar.arrive_and_wait();
    const int r = t.blk->or_acc[p].load();
    t.blk->bar.arrive_and_wait();
    return r;
}

inline float __shfl_xor_sync(unsigned, float v, int lane_mask) {
    auto & words = ::lf_emu::tls.blk->words[::lf_emu::warp_id()];
    const int lane = ::lf_emu::lane_id();
    words[lane] = ::lf_emu::float_to_bits(v);
    ::lf_emu::warp_sync();
    const float r = ::lf_emu::bits_to_float(words[lane ^ lane_mask]);
    ::lf_emu::warp_sync();
    return r;
}

inline int __any_sync(unsigned, int v) {
    auto & words = ::lf_emu::tls.blk->words[::lf_emu::warp_id()];
    const int lane = ::lf_emu::lane_id();
    words[lane] = v ? 1u : 0u;
    ::lf_emu::warp_sync();
    int r = 0;
    for (int i = 0; i < 32; ++i) r |= (int) words[i];
    ::lf_emu::warp_sync();
    return r;
}

inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned) x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
