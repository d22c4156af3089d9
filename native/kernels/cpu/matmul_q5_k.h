// Q5_K weights x Q8_K activations for batches of rows, on AVX-512 VNNI: the kernel for Q5_K_M
// files (Q5_K, with Q6_K in the same places as Q4_K_M). ggml repacks Q5_K only on ARM, so on
// x86 every batch ran its generic matmul, one weight row against one activation row at a time
// (ggml_vec_dot_q5_K_q8_K), unpacking the 5-bit weights again for every row. This kernel
// unpacks each weight block once for up to 8 rows, and each row gets bit for bit what ggml's
// 1-row kernel gives it; matmul_hook.cpp hands it ggml's chunks (native/patches/0018).
#pragma once

#include <cstddef>

namespace llamafuse {
namespace cpu {

// True where this build has the kernel (compiled with AVX-512 F/BW/VL and VNNI).
bool matmul_q5_k_available();

// One chunk of ggml's generic matmul: nc weight rows of n inputs (a multiple of 256) as plain
// block_q5_K rows, bx bytes apart; nr activation rows as ggml quantized them, plain block_q8_K
// rows by bytes apart; s[row * bs + col] receives each dot product. Returns false, computing
// nothing, for one row (ggml's 1-row kernel streams the weights as fast), shapes outside that
// contract, or where unavailable.
bool matmul_q5_k_rows(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nr, int nc);

} // namespace cpu
} // namespace llamafuse
