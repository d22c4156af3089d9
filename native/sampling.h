// NativeSampler: a llama_sampler chain built once from a resolved stage list (src/sampling.ts
// decides which stages exist and in what order; nothing here applies policy), reused for
// every token so that stateful stages (penalties, DRY, mirostat, the RNG, the grammar) keep
// their history. Samples from a context's stored last logits for a sequence, or from a
// logits array given directly (sampleLogits: benchmarks and distribution tests).
#pragma once

#include "common.h"
#include "context.h"

#include "llama.h"

#include <atomic>
#include <vector>

namespace llamafuse {

struct SampleResult {
    llama_token token = -1;
    float log_prob = 0.0f;                 // valid when asked for (n_top >= 0)
    std::vector<llama_token> top_tokens;   // best n_top candidates, most likely first
    std::vector<float> top_log_probs;
};

class NativeSampler : public Napi::ObjectWrap<NativeSampler> {
public:
    static Napi::Function define(Napi::Env env);
    NativeSampler(const Napi::CallbackInfo & info);
    ~NativeSampler() override;

    // ---- used by workers, off the main thread, while the sampler's busy flag is held ----
    // Applies grammar (if any) then the chain to `logits` (n_vocab floats), accepts the
    // chosen token into every stage, and returns it. n_top < 0: no log-probs; n_top >= 0:
    // the chosen token's log-prob and the n_top best candidates'. Log-probs are the
    // log-softmax of the logits the chain left on the candidates it kept (after bias,
    // grammar, penalties, truncation and temperature); removed candidates have probability 0.
    // Throws CodedError (ERR_NO_CANDIDATES, ERR_INVALID_GRAMMAR).
    SampleResult sample_row(const float * logits, int32_t n_vocab, int32_t n_top);
    // Resets every stage (penalty history, grammar, RNG back to its seed).
    void reset();
    // Feeds tokens into the chain's history (penalties, DRY) without touching the grammar.
    void accept_history(const llama_token * tokens, size_t n);
    bool try_acquire();
    void release();
    // A rejected promise (disposed sampler or model, or busy), or empty after taking the busy flag.
    Napi::Value check_usable(Napi::Env env);
    bool disposed() const { return chain_ == nullptr; }
    int32_t n_vocab() const { return n_vocab_; }

private:
    static Napi::Value Create(const Napi::CallbackInfo & info);
    Napi::Value Sample(const Napi::CallbackInfo & info);
    Napi::Value SampleLogits(const Napi::CallbackInfo & info);
    Napi::Value Reset(const Napi::CallbackInfo & info);
    Napi::Value Dispose(const Napi::CallbackInfo & info);
    void free_native();

    friend class SamplerCreateWorker;

    Napi::ObjectReference model_ref_; // the vocabulary must outlive the grammar and DRY stages
    NativeModel * model_ = nullptr;   // checked before each call: a disposed model has no vocabulary
    llama_sampler * chain_ = nullptr;
    llama_sampler * grammar_ = nullptr; // kept out of the chain: history feeds must skip it
    // Tokens the grammar accepts at creation and after every reset: the generation prompt a
    // chat template's tool-call or output-format grammar starts with (already in the prompt).
    std::vector<llama_token> grammar_prefill_;
    const llama_vocab * vocab_ = nullptr;
    int32_t n_vocab_ = 0;
    std::vector<llama_token_data> cur_;
    // The chain is greedy alone (temperature 0, nothing before it, no grammar): sample_row
    // takes the first largest logit directly, as llama.cpp's greedy stage would, without
    // building n_vocab candidates first (0.7 -> 0.2 ms a token on a 152K vocabulary, load ~5).
    bool greedy_only_ = false;
    std::atomic<bool> busy_{false};
};

} // namespace llamafuse
