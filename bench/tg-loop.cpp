// llama-bench's tg test reduced to its loop (one token per llama_decode, random next token),
// with a llamafuse context's settings (flash attention on, f16 cache, unified KV, own ggml
// threadpool at poll 50): the per-token floor that bench/streams.bench.ts compares the native
// generate loop with, where llama-bench itself is not built (LLAMAFUSE_LLAMA_TOOLS).
// Reports wall tokens/s and process CPU time per token (the fair figure on a loaded machine).
//   cd build && c++ -O2 -std=gnu++17 -I../deps/llama.cpp/include -I../deps/llama.cpp/ggml/include \
//     ../bench/tg-loop.cpp -o tg-loop llama.cpp/src/libllama.a llama.cpp/ggml/src/libggml.a \
//     llama.cpp/ggml/src/libggml-cpu.a llama.cpp/ggml/src/libggml-base.a -ldl -lm -lpthread -fopenmp
//   ./tg-loop model.gguf <threads> <tokens> <repetitions>
#include "llama.h"
#include "ggml-cpu.h"
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>
int main(int argc, char ** argv) {
    const char * path = argv[1];
    int threads = atoi(argv[2]), n_gen = atoi(argv[3]), reps = atoi(argv[4]);
    llama_backend_init();
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    auto mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(path, mp);
    auto cp = llama_context_default_params();
    cp.n_ctx = 1024; cp.n_batch = 512; cp.n_ubatch = 512; cp.n_threads = threads; cp.n_threads_batch = threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED; cp.kv_unified = true; cp.no_perf = true;
    llama_context * ctx = llama_init_from_model(model, cp);
    auto tpp = ggml_threadpool_params_default(threads); tpp.poll = 50;
    ggml_threadpool * tp = ggml_threadpool_new(&tpp);
    llama_attach_threadpool(ctx, tp, tp);
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    std::vector<double> rates, cpu_us;
    auto cpu_now = [] { timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; };
    for (int r = 0; r < reps; ++r) {
        llama_memory_clear(llama_get_memory(ctx), true);
        llama_token tok = llama_vocab_bos(vocab);
        auto t0 = std::chrono::steady_clock::now();
        double c0 = cpu_now();
        for (int i = 0; i < n_gen; ++i) {
            llama_batch b = llama_batch_get_one(&tok, 1);
            if (llama_decode(ctx, b)) { fprintf(stderr, "decode failed\n"); return 1; }
            tok = std::rand() % n_vocab;
        }
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        rates.push_back(n_gen / s);
        cpu_us.push_back((cpu_now() - c0) / n_gen);
    }
    std::sort(rates.begin(), rates.end());
    std::sort(cpu_us.begin(), cpu_us.end());
    printf("tg%d threads %d: median CPU time %.1f us/token\n", n_gen, threads, cpu_us[cpu_us.size() / 2]);
    printf("tg%d threads %d: median %.0f tok/s (", n_gen, threads, rates[rates.size() / 2]);
    for (double x : rates) printf(" %.0f", x);
    printf(" )\n");
    llama_free(ctx); ggml_threadpool_free(tp); llama_model_free(model);
}
