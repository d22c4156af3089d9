// Q4_0 weights x Q8_0 activations for batches of rows, on AVX-512 VNNI without AMX
// (AMD Zen 4/5, Intel Ice Lake / Sapphire Rapids parts without tiles). ggml keeps Q4_0
// weights there repacked eight columns at a time (its CPU_REPACK buffer, "q4_0_8x8"), and runs
// a decode step of several streams or a prompt through its own kernels for that layout: one
// that spends three instructions on signs for every multiply (4 rows at a time), and a 1-row
// kernel for the rows past a multiple of 4, which reads all the weights again for each of
// them. This one takes every row, once, in the same layouts, and gives bit for bit the same
// floats (so a stream's logits never depend on which other streams share its step);
// matmul_hook.cpp hands it ggml's chunks (native/patches/0017).
#pragma once

#include <cstddef>

namespace llamafuse {
namespace cpu {

// True where this build has the kernel (compiled with AVX-512 F/BW/VL and VNNI).
bool matmul_q4_0_available();

// One chunk of ggml's q4_0_8x8 matmul (ggml-cpu/repack.h's layouts): n
// inputs (a multiple of 32), nc weight columns (a multiple of 8) in block_q4_0x8 groups, nr
// activation rows as ggml quantized them: nr / 4 block_q8_0x4 groups, then the last nr % 4
// as plain block_q8_0 rows; s[row * bs + col] receives each dot product.
// Returns false, computing nothing, for one row (ggml's 1-row kernel is as fast), for shapes
// outside that contract, or where unavailable.
bool matmul_q4_0_gemm(int n, float * s, size_t bs, const void * vx, const void * vy, int nr, int nc);

} // namespace cpu
} // namespace llamafuse
