// Q8_0 weights x Q8_0 activations for decode steps of a few rows, on AVX-512 VNNI. ggml keeps
// Q8_0 weights as they are on x86 (no repacking without AMX), and a step of 2 or more rows ran
// llamafile's sgemm (tinyBLAS), which takes 4 weight rows x 4 activation rows per tile, signs
// moved onto the activations and one 8-lane dot per (row, column, block): a 1B Q8_0 model's
// 8-stream decode step took 147-172 ms against 53-55 for one row (83% in its gemm4xN; Zen 4,
// 2 threads). This kernel takes up to 8 rows against 4 weight rows at once, two (row, column)
// dots per 512-bit register, and gives every output bit for bit what both ggml's 1-row kernel
// and tinyBLAS give it; matmul_hook.cpp claims such steps from sgemm and hands it ggml's
// chunks (native/patches/0018).
#pragma once

#include <cstddef>

namespace llamafuse {
namespace cpu {

// True where this build has the kernel (compiled with AVX-512 F/BW/VL and VNNI).
bool matmul_q8_0_available();

// The activation row counts the kernel takes from sgemm: decode steps of 2-16 rows. Past 16
// ggml's generic matmul would hand it chunks of 16 rows, each reading the weights again,
// where sgemm reads them once (prompts stay on sgemm).
bool matmul_q8_0_claims(int n, int nr);

// One chunk of ggml's generic matmul: nc weight rows of n inputs (a multiple of 32) as plain
// block_q8_0 rows, bx bytes apart; nr activation rows as ggml quantized them, plain block_q8_0
// rows by bytes apart; s[row * bs + col] receives each dot product. Returns false, computing
// nothing, for one row (ggml's 1-row kernel; a single stream's step is bound by reading the
// weights: ~50 ms for the 1B model's 1.3 GB), shapes outside that contract, or where
// unavailable.
bool matmul_q8_0_rows(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nr, int nc);

} // namespace cpu
} // namespace llamafuse
