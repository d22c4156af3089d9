#pragma once
// A float32 CPU model of what the CUDA kernels compute, step for step in the numbers that
// matter: scores in log2 units, the online softmax over key tiles with the -inf guards,
// split-KV partials merged the way fattn_combine merges them, the sink added at the end,
// and optionally the kernels' f16 roundings (Q and P as tensor-core operands). It lets
// the selftest check the algorithm and its error budget against the float64 reference on
// a machine with no GPU; the GPU harness then checks the kernels against the same reference.

#include "reference.h"

namespace fattn_bench {

struct emulate_opts {
    int tile = 32;          // keys per online-softmax step
    int n_splits = 1;       // split-KV chunks (decode); partials merged as fattn_combine does
    bool f16_q = false;     // round the pre-scaled q to f16 (prefill's A operand)
    bool f16_p = false;     // round probabilities to f16 before P.V (prefill's A operand)
};

// out [seq][token][head][D], f32
std::vector<float> emulate(const problem & pr, const host_data & d, const emulate_opts & o);

} // namespace fattn_bench
