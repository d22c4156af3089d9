// CPU-only check of the hook's translation (the shared attn_op_from_node, then the CUDA
// backend's supported() rules): builds GGML_OP_FLASH_ATTN_EXT nodes the way llama.cpp does
// (permuted q, K/V as views of a cache with all kv heads of a token in one row), runs ggml's
// own CPU kernel on them, then computes the float64 reference *from the translated attn_op*
// (attn_reference, read through its strides) and compares. A wrong stride, head mapping, mask
// broadcast, scale, soft-cap, ALiBi or sink rule shows as an O(1) error. It also checks which
// nodes the hook accepts and declines. (attn_op -> the kernels' arguments is checked by the
// emulator, bench/gpu/emu, which runs the kernels on kernel_args_of(op) against the same reference.)
//
// Build and run (needs the addon's CPU build of ggml, i.e. build/llama.cpp/ggml/src):
//   make -C bench/gpu params-test && build/bench-gpu/params_test

#include "fattn_cuda.cuh"
#include "fattn_cuda_hook.h"
#include "reference.h"
#include "../../../native/kernels/attn_ggml.h"
#include "../../../native/kernels/attn_reference.h"

#include "ggml-cpu.h"
#include "ggml-cuda.h"
#include "ggml.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

namespace lc = llamafuse::cuda;

namespace {

// ---- ggml nodes as llama.cpp builds them -------------------------------------------------------

struct node_case {
    const char * name;
    int D = 128, n_head = 8, n_head_kv = 2, n_kv = 256, n_tokens = 1, n_seq = 1;
    ggml_type type_k = GGML_TYPE_F16, type_v = GGML_TYPE_F16;
    bool mask = true, sinks = false;
    float max_bias = 0.0f, softcap = 0.0f;
    int mask_heads = 1;          // mask->ne[2]
    bool expect_accept = true;
};

int g_fail = 0;

void fill_cache(ggml_tensor * t, fattn_bench::rng & g) {
    const int64_t n = ggml_nelements(t);
    std::vector<float> f(n);
    for (float & x : f) x = (float) g.uniform(-1.0, 1.0);
    if (t->type == GGML_TYPE_F32) {
        memcpy(t->data, f.data(), n * 4);
    } else {
        ggml_quantize_chunk(t->type, f.data(), t->data, 0, n / t->ne[0], t->ne[0], nullptr);
    }
}

// The FLASH_ATTN_EXT node for `c`, with random data, in `ctx`.
ggml_tensor * build_node(ggml_context * ctx, const node_case & c, fattn_bench::rng & g) {
    // q: [D, n_head, n_tokens, n_seq] permuted to [D, n_tokens, n_head, n_seq]
    ggml_tensor * q0 = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, c.D, c.n_head, c.n_tokens, c.n_seq);
    ggml_tensor * q = ggml_permute(ctx, q0, 0, 2, 1, 3);
    // cache: one row per token holding every kv head, kv_size > n_kv (the view is a prefix)
    const int kv_size = c.n_kv + 64;
    ggml_tensor * kc = ggml_new_tensor_2d(ctx, c.type_k, (int64_t) c.D * c.n_head_kv, (int64_t) kv_size * c.n_seq);
    ggml_tensor * vc = ggml_new_tensor_2d(ctx, c.type_v, (int64_t) c.D * c.n_head_kv, (int64_t) kv_size * c.n_seq);
    ggml_tensor * k = ggml_view_4d(ctx, kc, c.D, c.n_kv, c.n_head_kv, c.n_seq, kc->nb[1],
                                   ggml_row_size(c.type_k, c.D), kc->nb[1] * kv_size, 0);
    ggml_tensor * v = ggml_view_4d(ctx, vc, c.D, c.n_kv, c.n_head_kv, c.n_seq, vc->nb[1],
                                   ggml_row_size(c.type_v, c.D), vc->nb[1] * kv_size, 0);
    ggml_tensor * m = nullptr;
    if (c.mask) m = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, c.n_kv, c.n_tokens, c.mask_heads, c.n_seq);
    ggml_tensor * sk = c.sinks ? ggml_new_tensor_1d(ctx, GGML_TYPE_F32, c.n_head) : nullptr;

    for (int64_t i = 0; i < ggml_nelements(q0); ++i) ((float *) q0->data)[i] = (float) g.uniform(-1.0, 1.0);
    fill_cache(kc, g);
    fill_cache(vc, g);
    if (m) {
        ggml_fp16_t * md = (ggml_fp16_t *) m->data;
        for (int64_t i = 0; i < ggml_nelements(m); ++i) {
            const int64_t key = i % c.n_kv;
            const int64_t tok = (i / c.n_kv) % c.n_tokens;
            const bool masked = key > c.n_kv - 40 + tok || (tok == 1 && c.n_tokens > 2);   // causal-ish tail, one dead row
            md[i] = ggml_fp32_to_fp16(masked ? -INFINITY : (c.max_bias > 0.0f ? -(float) g.below(8) : 0.0f));
        }
    }
    if (sk) for (int i = 0; i < c.n_head; ++i) ((float *) sk->data)[i] = (float) g.uniform(-3.0, 3.0);

    ggml_tensor * out = ggml_flash_attn_ext(ctx, q, k, v, m, 1.0f / std::sqrt((float) c.D), c.max_bias, c.softcap);
    ggml_flash_attn_ext_add_sinks(out, sk);
    ggml_flash_attn_ext_set_prec(out, GGML_PREC_F32);
    return out;
}

const char * path_name(lc::fattn_path path) {
    switch (path) {
        case lc::fattn_path::decode: return "decode";
        case lc::fattn_path::decode_mma: return "tensor-core decode";
        case lc::fattn_path::prefill: return "prefill";
        default: return "none";
    }
}

void run_case(const node_case & c, uint64_t seed) {
    ggml_init_params ip = {size_t(256) << 20, nullptr, false};
    ggml_context * ctx = ggml_init(ip);
    fattn_bench::rng g(seed);
    ggml_tensor * out = build_node(ctx, c, g);

    llamafuse::attn_op op;
    const bool accepted = llamafuse::attn_op_from_node(out, op) && lc::fattn_supported(op);
    lc::kernel_args p;
    if (accepted) lc::kernel_args_of(op, p);
    bool ok = accepted == c.expect_accept;
    double rel = 0.0;
    if (accepted) {
        ggml_cgraph * gf = ggml_new_graph(ctx);
        ggml_build_forward_expand(gf, out);
        ggml_graph_compute_with_ctx(ctx, gf, 2);
        const std::vector<double> ref = llamafuse::attn_reference(op);
        const float * o = (const float *) out->data;
        double num = 0.0, den = 0.0;
        bool finite = true;
        for (size_t i = 0; i < ref.size(); ++i) {
            finite &= std::isfinite(o[i]);
            num += (o[i] - ref[i]) * (o[i] - ref[i]);
            den += ref[i] * ref[i];
        }
        rel = std::sqrt(num / std::max(den, 1e-300));
        // ggml's CPU path rounds q to f16 / q8_0 and accumulates f16 V in f16: a few 1e-3
        ok = ok && finite && rel < 2e-2;
    }
    if (!ok) ++g_fail;
    printf("  %s %-44s %s", ok ? "ok  " : "FAIL", c.name, accepted ? "accepted" : "declined");
    if (accepted) printf("  rel_l2 vs ggml CPU %.2e  (%s path)", rel, path_name(lc::fattn_choose(p)));
    printf("\n");
    ggml_free(ctx);
}

// ---- the hook's policy: which accepted shapes it actually takes ----------------------------------
// The hook as ggml-cuda would receive it, caught by a stand-in for ggml-cuda's setter.
ggml_cuda_fattn_hook g_hook{};
int g_policy_cases = 0;

void policy_case(const char * name, node_case c, int cc, bool expect) {
    ggml_init_params ip = {size_t(256) << 20, nullptr, false};
    ggml_context * ctx = ggml_init(ip);
    fattn_bench::rng g(7);
    ggml_tensor * out = build_node(ctx, c, g);
    const bool took = g_hook.accepts != nullptr && g_hook.accepts(out, cc, 132);
    const bool ok = took == expect;
    ++g_policy_cases;
    if (!ok) ++g_fail;
    printf("  %s %-58s %s\n", ok ? "ok  " : "FAIL", name, took ? "taken" : "left to ggml");
    ggml_free(ctx);
}

void run_policy_cases() {
    node_case dec4k;  dec4k.n_head = 32; dec4k.n_head_kv = 8; dec4k.n_kv = 4096;
    node_case dec8k = dec4k;  dec8k.n_kv = 8192;
    node_case q8_16k = dec4k; q8_16k.n_kv = 16384; q8_16k.type_k = q8_16k.type_v = GGML_TYPE_Q8_0;
    node_case pre = dec8k;    pre.n_tokens = 37;
    node_case bf16 = dec8k;   bf16.type_k = bf16.type_v = GGML_TYPE_BF16;

    unsetenv("LLAMAFUSE_CUDA_FATTN_ALL");
    llamafuse::attention_cuda_hook_install();
    printf("hook policy (default: where ours measured faster on an H200)\n");
    policy_case("decode f16, 4K keys (ggml's faster)", dec4k, 900, false);
    policy_case("decode f16, 8K keys", dec8k, 900, true);
    policy_case("decode q8_0, 16K keys", q8_16k, 900, true);
    policy_case("prefill f16, 37 tokens (ggml's faster)", pre, 900, false);
    policy_case("decode f16, 8K keys, sm_75 device", dec8k, 750, false);
    policy_case("decode bf16 (unsupported)", bf16, 900, false);
    llamafuse::attention_cuda_set_enabled(false);
    policy_case("decode f16, 8K keys, switch off", dec8k, 900, false);
    llamafuse::attention_cuda_set_enabled(true);

    setenv("LLAMAFUSE_CUDA_FATTN_ALL", "1", 1);
    llamafuse::attention_cuda_hook_install();
    printf("hook policy with LLAMAFUSE_CUDA_FATTN_ALL=1 (every supported shape)\n");
    policy_case("decode f16, 4K keys", dec4k, 900, true);
    policy_case("prefill f16, 37 tokens", pre, 900, true);
    policy_case("decode bf16 (unsupported)", bf16, 900, false);
    unsetenv("LLAMAFUSE_CUDA_FATTN_ALL");
}

} // namespace

// ggml-cuda is not linked here: this stands in for its setter and keeps the hook it is given.
void ggml_backend_cuda_set_fattn_hook(const ggml_cuda_fattn_hook * hook) {
    g_hook = hook ? *hook : ggml_cuda_fattn_hook{};
}

int main() {
    printf("hook translation: ggml FLASH_ATTN_EXT nodes -> attn_op, against ggml's CPU kernel\n");
    std::vector<node_case> cases;
    auto add = [&](node_case c) { cases.push_back(c); };
    { node_case c; c.name = "decode f16 D128 G4"; add(c); }
    { node_case c; c.name = "decode q8_0 D128 G4"; c.type_k = c.type_v = GGML_TYPE_Q8_0; add(c); }
    { node_case c; c.name = "decode f16 D64 G1 sinks softcap"; c.D = 64; c.n_head = 4; c.n_head_kv = 4; c.sinks = true; c.softcap = 20.0f; add(c); }
    { node_case c; c.name = "decode q8_0 D64 4 tokens ALiBi 2 seqs"; c.D = 64; c.type_k = c.type_v = GGML_TYPE_Q8_0; c.n_tokens = 4; c.max_bias = 8.0f; c.n_seq = 2; add(c); }
    { node_case c; c.name = "prefill f16 D128 G4 37 tokens"; c.n_tokens = 37; add(c); }
    { node_case c; c.name = "prefill q8_0 D64 G2 sinks ALiBi"; c.D = 64; c.type_k = c.type_v = GGML_TYPE_Q8_0; c.n_tokens = 20; c.sinks = true; c.max_bias = 8.0f; add(c); }
    { node_case c; c.name = "prefill f16 no mask 2 seqs"; c.n_tokens = 9; c.mask = false; c.n_seq = 2; add(c); }
    { node_case c; c.name = "declines: bf16 cache"; c.type_k = c.type_v = GGML_TYPE_BF16; c.expect_accept = false; add(c); }
    { node_case c; c.name = "declines: q4_0 cache"; c.type_k = c.type_v = GGML_TYPE_Q4_0; c.expect_accept = false; add(c); }
    { node_case c; c.name = "declines: K f16, V q8_0"; c.type_v = GGML_TYPE_Q8_0; c.expect_accept = false; add(c); }
    { node_case c; c.name = "declines: head dim 96"; c.D = 96; c.expect_accept = false; add(c); }
    { node_case c; c.name = "declines: mask per head"; c.mask_heads = 8; c.expect_accept = false; add(c); }
    { node_case c; c.name = "declines: f32 cache"; c.type_k = c.type_v = GGML_TYPE_F32; c.expect_accept = false; add(c); }
    uint64_t seed = 1;
    for (const node_case & c : cases) run_case(c, seed++);
    run_policy_cases();
    printf("hook translation and policy: %zu + %d cases, %d failed\n", cases.size(), g_policy_cases, g_fail);
    return g_fail == 0 ? 0 : 1;
}
