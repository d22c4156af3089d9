// Q6_K weights x Q8_K activations for batches of rows, on AVX-512 VNNI. Most Q4_K_M files keep
// their output matrix and about half their attn_v and ffn_down tensors as Q6_K, which ggml
// repacks only on ARM: on x86 every batch ran its generic matmul, one weight row against one
// activation row at a time (ggml_vec_dot_q6_K_q8_K), unpacking the 6-bit weights again for
// every row. On a 1B Q4_K_M model that was 46% of an 8-stream decode step (Zen 4, 2 threads).
// This kernel unpacks each weight block once for up to 8 rows, and each row gets bit for bit
// what ggml's 1-row kernel gives it; matmul_hook.cpp hands it ggml's chunks (native/patches/0018).
#pragma once

#include <cstddef>

namespace llamafuse {
namespace cpu {

// True where this build has the kernel (compiled with AVX-512 F/BW/VL and VNNI).
bool matmul_q6_k_available();

// One chunk of ggml's generic matmul: nc weight rows of n inputs (a multiple of 256) as plain
// block_q6_K rows, bx bytes apart; nr activation rows as ggml quantized them, plain block_q8_K
// rows by bytes apart; s[row * bs + col] receives each dot product. Returns false, computing
// nothing, for one row (ggml's 1-row kernel streams the weights as fast), shapes outside that
// contract, or where unavailable.
bool matmul_q6_k_rows(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nr, int nc);

} // namespace cpu
} // namespace llamafuse
