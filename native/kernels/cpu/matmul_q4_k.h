// Q4_K weights x Q8_K activations for batches of rows, on AVX-512 VNNI without AMX: the
// Q4_K counterpart of matmul_q4_0 (most GGUF files are Q4_K_M). ggml keeps Q4_K weights on
// such CPUs repacked eight columns at a time ("q4_K_8x8") and ran a decode step of 8 streams of
// a 1B Q4_K_M model in 169 ms against 29 ms for one (Zen 4, 2 threads). Same layouts; each row
// gets bit for bit what ggml's 1-row kernel gives it (ggml's own batch kernel rounds
// differently, so with it a stream's logits depended on the rows sharing its step);
// matmul_hook.cpp hands it ggml's chunks (native/patches/0017).
#pragma once

#include <cstddef>

namespace llamafuse {
namespace cpu {

// True where this build has the kernel (compiled with AVX-512 F/BW/VL and VNNI).
bool matmul_q4_k_available();

// One chunk of ggml's q4_K_8x8 matmul (ggml-cpu/repack.h's layouts): n inputs (a multiple of
// 256), nc weight columns (a multiple of 8) in block_q4_Kx8 groups, nr activation rows as ggml
// quantized them: nr / 4 block_q8_Kx4 groups, then the last nr % 4 as plain block_q8_K rows;
// s[row * bs + col] receives each dot product. Returns false, computing nothing, for one row
// (ggml's 1-row kernel streams the weights), shapes outside that contract, or where unavailable.
bool matmul_q4_k_gemm(int n, float * s, size_t bs, const void * vx, const void * vy, int nr, int nc);

} // namespace cpu
} // namespace llamafuse
