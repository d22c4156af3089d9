#include "sampling.h"

#include "abort_guard.h"
#include "grammar_check.h"
#include "log.h"

// llama.cpp's grammar internals (pinned tree, linked statically): the parser stacks alive.
#include "llama-grammar.h"  // llama.cpp/src/, on the include path (deps/ or an installed package's vendor/)

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <thread>
#include <unordered_map>

namespace llamafuse {

Napi::Function NativeSampler::define(Napi::Env env) {
    Napi::Function fn = DefineClass(env, "NativeSampler", {
        StaticMethod("create", &NativeSampler::Create),
        InstanceMethod("sample", &NativeSampler::Sample),
        InstanceMethod("sampleLogits", &NativeSampler::SampleLogits),
        InstanceMethod("reset", &NativeSampler::Reset),
        InstanceMethod("dispose", &NativeSampler::Dispose),
    });
    addon_data(env).set_constructor("NativeSampler", fn);
    return fn;
}

NativeSampler::NativeSampler(const Napi::CallbackInfo & info) : Napi::ObjectWrap<NativeSampler>(info) {}
NativeSampler::~NativeSampler() { free_native(); }

void NativeSampler::free_native() {
    if (chain_) llama_sampler_free(chain_);
    if (grammar_) llama_sampler_free(grammar_);
    chain_ = grammar_ = nullptr;
}

bool NativeSampler::try_acquire() {
    bool expected = false;
    return busy_.compare_exchange_strong(expected, true);
}
void NativeSampler::release() { busy_.store(false); }

Napi::Value NativeSampler::check_usable(Napi::Env env) {
    if (disposed()) return rejected(env, "ERR_DISPOSED", "the sampler is disposed");
    if (model_->disposed()) return rejected(env, "ERR_DISPOSED", "the model is disposed");
    if (!try_acquire()) return rejected(env, "ERR_BUSY", "the sampler is in use by another call");
    return Napi::Value();
}

// ---- create --------------------------------------------------------------------------------
// One stage of the chain as src/sampling.ts resolved it: {kind, ...parameters}.

struct StageSpec {
    std::string kind;
    double a = 0, b = 0, c = 0;
    int32_t n = 0, m = 0;
    uint32_t seed = 0;
    std::vector<llama_logit_bias> bias;
    std::vector<std::string> breakers;
};

static StageSpec read_stage(const Napi::Object & o) {
    StageSpec s;
    s.kind = get_str(o, "kind");
    const std::string & k = s.kind;
    if (k == "logit_bias") {
        Napi::Int32Array tokens = o.Get("tokens").As<Napi::Int32Array>();
        Napi::Float32Array biases = o.Get("biases").As<Napi::Float32Array>();
        for (size_t i = 0; i < tokens.ElementLength(); ++i) s.bias.push_back({tokens[i], biases[i]});
    } else if (k == "penalties") {
        s.n = get_i32(o, "lastN"); s.a = get_f64(o, "repeat"); s.b = get_f64(o, "frequency"); s.c = get_f64(o, "presence");
    } else if (k == "dry") {
        s.a = get_f64(o, "multiplier"); s.b = get_f64(o, "base"); s.n = get_i32(o, "allowedLength"); s.m = get_i32(o, "lastN");
        Napi::Array br = o.Get("breakers").As<Napi::Array>();
        for (uint32_t i = 0; i < br.Length(); ++i) s.breakers.push_back(br.Get(i).As<Napi::String>().Utf8Value());
    } else if (k == "top_k") {
        s.n = get_i32(o, "k");
    } else if (k == "top_p" || k == "min_p" || k == "typical") {
        s.a = get_f64(o, "p");
    } else if (k == "top_n_sigma") {
        s.a = get_f64(o, "n");
    } else if (k == "xtc") {
        s.a = get_f64(o, "probability"); s.b = get_f64(o, "threshold"); s.seed = get_u32(o, "seed");
    } else if (k == "temp") {
        s.a = get_f64(o, "t");
    } else if (k == "temp_ext") {
        s.a = get_f64(o, "t"); s.b = get_f64(o, "delta"); s.c = get_f64(o, "exponent");
    } else if (k == "mirostat") {
        s.a = get_f64(o, "tau"); s.b = get_f64(o, "eta"); s.n = get_i32(o, "m"); s.seed = get_u32(o, "seed");
    } else if (k == "mirostat_v2") {
        s.a = get_f64(o, "tau"); s.b = get_f64(o, "eta"); s.seed = get_u32(o, "seed");
    } else if (k == "dist") {
        s.seed = get_u32(o, "seed");
    }
    return s;
}

// penaltyLastN and dryPenaltyLastN size ring buffers that llama.cpp allocates up front: 2^31-1
// allocated gigabytes. A context's chains are bounded by its size in src/sampling.ts; here every
// chain is bounded by the model's training context, at least 64K and at most 1M tokens (a
// file's n_ctx_train is just a number: 2^31-1 would be no bound).
static int32_t max_history(const llama_model * model) {
    return std::clamp<int32_t>(llama_model_n_ctx_train(model), 65536, 1 << 20);
}
static int32_t bound_history(int32_t last_n, int32_t max_history) {
    return last_n < 0 ? last_n : std::min(last_n, max_history);
}

// ---- the grammar build, on a thread of its own ---------------------------------------------------
// llama.cpp's grammar constructor has no cancellation hook. grammar_check bounds what is known
// to make it slow (depth, left recursion, nested repetitions, fan-out), but cannot prove every
// grammar cheap, and a caller must be able to give up on one: its AbortSignal, or dispose() of
// the context it is for. So the constructor runs on a detached thread while the worker waits
// for it, polling the caller's abort flag every few milliseconds. On an abort the worker
// rejects with ERR_ABORTED at once; the build is left to finish on its own and frees what it
// made. Nothing waits for it: not the libuv pool (which process exit joins, so a stuck pool
// thread kept process.exit from returning), not the context's dispose(). It holds a copy of
// its inputs and a share of the model (NativeModel::share), so the vocabulary it reads stays
// alive even if the model is disposed meanwhile.
// The cost of an abandoned build: its thread, the memory it allocates, and the model's memory
// (if disposed meanwhile) stay until it ends; for a build that never ended, until the process
// exits. Every build this project found slow is refused by grammar_check before it starts.
struct GrammarBuild {
    // inputs (owned: the worker may be gone when the build reads them)
    std::shared_ptr<llama_model> model;
    const llama_vocab * vocab = nullptr;
    std::string grammar;
    bool lazy = false;
    std::vector<std::string> patterns;
    std::vector<llama_token> tokens;
    std::vector<llama_token> prefill;
    int delay_ms = 0; // LLAMAFUSE_TEST_GRAMMAR_BUILD_DELAY_MS: stands in for a slow build in tests
    // outcome, under mu
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    bool abandoned = false;
    llama_sampler * smpl = nullptr;
    std::string code, message;
};

static void grammar_build_run(const std::shared_ptr<GrammarBuild> & b) {
    llama_sampler * smpl = nullptr;
    std::string code, message;
    if (b->delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(b->delay_ms)); // not interruptible, like llama.cpp
    // The guard turns any GGML_ASSERT reached by odd input into an exception instead of an
    // abort (the grammar code holds no locks; only its own containers unwind).
    log_clear_error();
    AbortGuard guard;
    try {
        if (b->lazy) {
            std::vector<const char *> pats;
            for (const auto & p : b->patterns) pats.push_back(p.c_str());
            smpl = llama_sampler_init_grammar_lazy_patterns(b->vocab, b->grammar.c_str(), "root", pats.data(), pats.size(),
                                                            b->tokens.data(), b->tokens.size());
        } else {
            smpl = llama_sampler_init_grammar(b->vocab, b->grammar.c_str(), "root");
        }
        if (!smpl) {
            std::string why = log_last_error();
            code = "ERR_INVALID_GRAMMAR";
            message = "invalid GBNF grammar" + (why.empty() ? std::string(" (parse error, or left recursion)") : ": " + why);
        }
    } catch (const std::exception & e) {
        code = "ERR_INVALID_GRAMMAR";
        message = std::string("invalid GBNF grammar: ") + e.what();
    }
    // The generation prompt is in the prompt already; a grammar that starts with it (chat
    // templates' tool-call grammars) is advanced past it. Throws if it does not fit.
    if (smpl) {
        try {
            for (llama_token t : b->prefill) llama_sampler_accept(smpl, t);
        } catch (const std::exception & e) {
            llama_sampler_free(smpl);
            smpl = nullptr;
            code = "ERR_INVALID_GRAMMAR";
            message = std::string("the grammar does not accept the generation prompt: ") + e.what();
        }
    }
    std::shared_ptr<llama_model> model;
    {
        std::lock_guard<std::mutex> lock(b->mu);
        if (b->abandoned) {
            if (smpl) llama_sampler_free(smpl);
            model = std::move(b->model); // freed below, outside the lock, if it was the last share
        } else {
            b->smpl = smpl;
            b->code = code;
            b->message = message;
        }
        b->done = true;
    }
    b->cv.notify_all();
}

static int test_build_delay_ms() {
    const char * v = std::getenv("LLAMAFUSE_TEST_GRAMMAR_BUILD_DELAY_MS");
    return v ? std::max(0, atoi(v)) : 0;
}

static llama_sampler * stage_init(const StageSpec & s, const llama_vocab * vocab, int32_t n_vocab, int32_t max_history) {
    const std::string & k = s.kind;
    if (k == "logit_bias") return llama_sampler_init_logit_bias(n_vocab, (int32_t) s.bias.size(), s.bias.data());
    if (k == "penalties") return llama_sampler_init_penalties(n_vocab, bound_history(s.n, max_history), (float) s.a, (float) s.b, (float) s.c);
    if (k == "dry") {
        std::vector<const char *> br;
        for (const auto & b : s.breakers) br.push_back(b.c_str());
        return llama_sampler_init_dry(vocab, (float) s.a, (float) s.b, s.n, bound_history(s.m, max_history), br.data(), br.size());
    }
    if (k == "top_k") return llama_sampler_init_top_k(s.n);
    if (k == "top_p") return llama_sampler_init_top_p((float) s.a, 1);
    if (k == "min_p") return llama_sampler_init_min_p((float) s.a, 1);
    if (k == "typical") return llama_sampler_init_typical((float) s.a, 1);
    if (k == "top_n_sigma") return llama_sampler_init_top_n_sigma((float) s.a);
    if (k == "xtc") return llama_sampler_init_xtc((float) s.a, (float) s.b, 1, s.seed);
    if (k == "temp") return llama_sampler_init_temp((float) s.a);
    if (k == "temp_ext") return llama_sampler_init_temp_ext((float) s.a, (float) s.b, (float) s.c);
    if (k == "mirostat") return llama_sampler_init_mirostat(n_vocab, s.seed, (float) s.a, (float) s.b, s.n);
    if (k == "mirostat_v2") return llama_sampler_init_mirostat_v2(s.seed, (float) s.a, (float) s.b);
    if (k == "dist") return llama_sampler_init_dist(s.seed);
    if (k == "greedy") return llama_sampler_init_greedy();
    throw CodedError("ERR_INVALID_OPTION", "unknown sampler stage \"" + k + "\"");
}

class SamplerCreateWorker : public PromiseWorker {
public:
    SamplerCreateWorker(const Napi::CallbackInfo & info, NativeModel * m) : PromiseWorker(info.Env(), info[0].As<Napi::Object>()), m_(m) {
        model_obj_ = Napi::Persistent(info[0].As<Napi::Object>());
        Napi::Object cfg = info[1].As<Napi::Object>();
        Napi::Array stages = cfg.Get("stages").As<Napi::Array>();
        for (uint32_t i = 0; i < stages.Length(); ++i) stages_.push_back(read_stage(stages.Get(i).As<Napi::Object>()));
        Napi::Value g = cfg.Get("grammar");
        if (g.IsString()) {
            grammar_ = g.As<Napi::String>().Utf8Value();
            has_grammar_ = true;
        }
        if (cfg.Has("grammarPrefill")) {
            Napi::Array pre = cfg.Get("grammarPrefill").As<Napi::Array>();
            for (uint32_t i = 0; i < pre.Length(); ++i) prefill_.push_back(pre.Get(i).As<Napi::Number>().Int32Value());
        }
        // Lazy grammar (tool calls): free output until a trigger pattern or token appears.
        if (cfg.Has("triggerPatterns")) {
            lazy_ = true;
            Napi::Array pats = cfg.Get("triggerPatterns").As<Napi::Array>();
            for (uint32_t i = 0; i < pats.Length(); ++i) trigger_patterns_.push_back(pats.Get(i).As<Napi::String>().Utf8Value());
            Napi::Array toks = cfg.Get("triggerTokens").As<Napi::Array>();
            for (uint32_t i = 0; i < toks.Length(); ++i) trigger_tokens_.push_back(toks.Get(i).As<Napi::Number>().Int32Value());
        }
        // Optional abort flag: an Int32Array over a SharedArrayBuffer; JS stores 1 to give up.
        if (info.Length() > 2 && info[2].IsTypedArray()) {
            Napi::Int32Array flag = info[2].As<Napi::Int32Array>();
            abort_flag_ = flag.Data();
            abort_ref_ = Napi::Persistent(flag.As<Napi::Object>());
        }
        model_share_ = m->share();
        vocab_ = m->vocab();
    }
    ~SamplerCreateWorker() override {
        if (chain_) llama_sampler_free(chain_);
        if (grammar_smpl_) llama_sampler_free(grammar_smpl_);
    }

protected:
    void run() override {
        if (m_->disposed()) throw CodedError("ERR_DISPOSED", "the model is disposed");
        n_vocab_ = llama_vocab_n_tokens(vocab_);
        const bool needs_vocab = has_grammar_ || std::any_of(stages_.begin(), stages_.end(), [](const StageSpec & s) { return s.kind == "dry"; });
        if (needs_vocab && !m_->has_tokenizer()) {
            throw CodedError("ERR_UNSUPPORTED", "grammar and DRY sampling need the model's token texts, and this model has no tokenizer");
        }
        check_abort();
        if (has_grammar_) {
            // What llama.cpp's parser and checks let through and then crash or hang on (depth,
            // left recursion behind nullable rules, exploding repetitions, fan-out) is refused
            // first; the parse error detail comes back in the message (grammar_check.h).
            grammar_check(vocab_, grammar_);
            check_abort();
            build_grammar();
        }
        llama_sampler_chain_params cp = llama_sampler_chain_default_params();
        cp.no_perf = true;
        chain_ = llama_sampler_chain_init(cp);
        AbortGuard guard; // stage constructors (DRY reads every token's text) may assert
        for (const StageSpec & s : stages_) {
            llama_sampler * st;
            try {
                st = stage_init(s, vocab_, n_vocab_, max_history(model_share_.get()));
            } catch (const GgmlAbort & e) {
                throw CodedError("ERR_INVALID_OPTION", "llama.cpp could not create the \"" + s.kind + "\" sampler: " + e.what());
            }
            if (!st) throw CodedError("ERR_NATIVE", "llama.cpp could not create the \"" + s.kind + "\" sampler");
            llama_sampler_chain_add(chain_, st);
            check_abort();
        }
    }

    void check_abort() const {
        if (abort_flag_ && __atomic_load_n(abort_flag_, __ATOMIC_ACQUIRE) != 0) {
            throw CodedError("ERR_ABORTED", "creating the sampler was aborted");
        }
    }

    // Runs the grammar constructor on its own thread (see GrammarBuild) and waits for it, or
    // for the abort flag.
    void build_grammar() {
        auto b = std::make_shared<GrammarBuild>();
        b->model = model_share_;
        b->vocab = vocab_;
        b->grammar = grammar_;
        b->lazy = lazy_;
        b->patterns = trigger_patterns_;
        b->tokens = trigger_tokens_;
        b->prefill = prefill_;
        b->delay_ms = test_build_delay_ms();
        try {
            std::thread([b] { grammar_build_run(b); }).detach();
        } catch (const std::system_error & e) {
            throw CodedError("ERR_NATIVE", std::string("could not start a thread for the grammar: ") + e.what());
        }
        std::unique_lock<std::mutex> lock(b->mu);
        while (!b->done) {
            b->cv.wait_for(lock, std::chrono::milliseconds(5));
            if (!b->done && abort_flag_ && __atomic_load_n(abort_flag_, __ATOMIC_ACQUIRE) != 0) {
                b->abandoned = true; // the build frees its sampler and model share when it ends
                throw CodedError("ERR_ABORTED", "creating the sampler was aborted (its grammar was still being built)");
            }
        }
        if (!b->code.empty()) throw CodedError(b->code, b->message);
        grammar_smpl_ = b->smpl;
        b->smpl = nullptr;
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object obj = addon_data(env).construct("NativeSampler");
        NativeSampler * s = NativeSampler::Unwrap(obj);
        s->model_ref_ = Napi::Persistent(model_obj_.Value());
        s->model_ = m_;
        s->chain_ = chain_;
        s->grammar_ = grammar_smpl_;
        s->grammar_prefill_ = std::move(prefill_);
        s->vocab_ = vocab_;
        s->n_vocab_ = n_vocab_;
        s->cur_.resize(n_vocab_);
        s->greedy_only_ = grammar_smpl_ == nullptr && stages_.size() == 1 && stages_[0].kind == "greedy";
        chain_ = grammar_smpl_ = nullptr;
        return obj;
    }

private:
    NativeModel * m_;
    Napi::ObjectReference model_obj_;
    std::shared_ptr<llama_model> model_share_; // for the grammar build, which may outlive this worker
    const int32_t * abort_flag_ = nullptr;
    Napi::ObjectReference abort_ref_;
    std::vector<StageSpec> stages_;
    std::string grammar_;
    bool has_grammar_ = false;
    bool lazy_ = false;
    std::vector<llama_token> prefill_;
    std::vector<std::string> trigger_patterns_;
    std::vector<llama_token> trigger_tokens_;
    const llama_vocab * vocab_ = nullptr;
    int32_t n_vocab_ = 0;
    llama_sampler * chain_ = nullptr;
    llama_sampler * grammar_smpl_ = nullptr;
};

Napi::Value NativeSampler::Create(const Napi::CallbackInfo & info) {
    NativeModel * m = NativeModel::Unwrap(info[0].As<Napi::Object>());
    if (m->disposed()) return rejected(info.Env(), "ERR_DISPOSED", "the model is disposed");
    return (new SamplerCreateWorker(info, m))->start();
}

// ---- sampling ----------------------------------------------------------------------------------

// The grammar stage's state, as llama-sampler.cpp lays it out at the pinned commit (the struct
// is private to that file): read only to count the parser's live stacks.
struct GrammarSamplerView {
    const llama_vocab * vocab;
    std::string grammar_str;
    std::string grammar_root;
    llama_grammar * grammar;
};

// Every step costs llama.cpp time in proportion to the live stacks (each candidate token is
// matched against each) and their square (advancing dedups pairwise). grammar_check bounds
// what the rules alone show; text can still drive an ambiguous grammar's stack count up token
// by token (a random grammar of nested repetitions went 0.3 -> 1.2 s a token over 8 tokens on
// stories260K's 512 tokens). Past the bound a sample fails with ERR_INVALID_GRAMMAR instead of
// stalling the context. LLAMAFUSE_TEST_GRAMMAR_MAX_STACKS lowers it for tests.
static size_t max_live_stacks() {
    static const size_t v = [] {
        const char * e = std::getenv("LLAMAFUSE_TEST_GRAMMAR_MAX_STACKS");
        return e && atoi(e) > 0 ? (size_t) atoi(e) : kMaxLiveGrammarStacks;
    }();
    return v;
}

// The most live stacks that share their top (the grammar position the next character must
// match): those are the ones that all take the same text and re-expand into each other. Stacks
// at different positions (an enum's strings) are cheap: most candidates fail them at once.
static size_t live_stacks(llama_sampler * grammar) {
    if (!grammar || std::strcmp(llama_sampler_name(grammar), "grammar") != 0) return 0;
    auto * view = static_cast<GrammarSamplerView *>(grammar->ctx);
    if (!view || !view->grammar) return 0;
    const llama_grammar_stacks & stacks = llama_grammar_get_stacks(view->grammar);
    if (stacks.size() <= max_live_stacks()) return stacks.size(); // cannot exceed the bound
    std::unordered_map<const llama_grammar_element *, size_t> per_top;
    size_t most = 0;
    for (const auto & st : stacks) most = std::max(most, st.empty() ? (size_t) 0 : ++per_top[st.back()]);
    return most;
}

// The first index of the largest logit, as the loop `if (x[t] > x[best]) best = t` from
// best = 0 finds it (NaNs never win; a NaN at 0 stays), in two passes that do not chain every
// comparison on the one before: the maximum over 8 interleaved running maxima, then the first
// index holding it. A 128K vocabulary: ~0.19 ms -> a few tens of us, per row of every greedy
// step (8 rows at 8 streams).
static int32_t first_argmax(const float * x, int32_t n) {
    if (std::isnan(x[0])) return 0;
    float m[8];
    for (int k = 0; k < 8; ++k) m[k] = x[0];
    int32_t t = 0;
    for (; t + 8 <= n; t += 8) {
        for (int k = 0; k < 8; ++k) m[k] = x[t + k] > m[k] ? x[t + k] : m[k];
    }
    for (; t < n; ++t) m[0] = x[t] > m[0] ? x[t] : m[0];
    float best = m[0];
    for (int k = 1; k < 8; ++k) best = m[k] > best ? m[k] : best;
    for (t = 0; t < n; ++t) {
        if (x[t] == best) return t;
    }
    return 0; // unreachable: best is one of x
}

SampleResult NativeSampler::sample_row(const float * logits, int32_t n_vocab, int32_t n_top) {
    if (greedy_only_ && n_top < 0 && n_vocab > 0) {
        const int32_t best = first_argmax(logits, n_vocab);
        if (!std::isfinite(logits[best])) {
            throw CodedError("ERR_NO_CANDIDATES", "no token can be sampled: every candidate was removed (by logitBias, the grammar or the samplers)");
        }
        SampleResult r;
        r.token = best;
        return r;
    }
    cur_.resize(n_vocab);
    for (llama_token t = 0; t < n_vocab; ++t) cur_[t] = llama_token_data{t, logits[t], 0.0f};
    llama_token_data_array arr = {cur_.data(), cur_.size(), -1, false};
    {
        // Grammar stages throw std::runtime_error on an impossible state and reach
        // GGML_ABORT on inconsistent input; neither may take the process down.
        const size_t stacks = live_stacks(grammar_);
        if (stacks > max_live_stacks()) {
            throw CodedError("ERR_INVALID_GRAMMAR", "the grammar's parser is at one place in " + std::to_string(stacks) + " ways after this text (the limit is " +
                             std::to_string(max_live_stacks()) + "; every token would take longer than the last): make the grammar less ambiguous");
        }
        AbortGuard guard;
        try {
            if (grammar_) llama_sampler_apply(grammar_, &arr);
            llama_sampler_apply(chain_, &arr);
        } catch (const std::exception & e) {
            throw CodedError("ERR_INVALID_GRAMMAR", std::string("sampling failed: ") + e.what());
        }
    }
    if (arr.selected < 0 || (size_t) arr.selected >= arr.size || !std::isfinite(arr.data[arr.selected].logit)) {
        throw CodedError("ERR_NO_CANDIDATES", "no token can be sampled: every candidate was removed (by logitBias, the grammar or the samplers)");
    }
    SampleResult r;
    r.token = arr.data[arr.selected].id;
    {
        AbortGuard guard;
        try {
            if (grammar_) llama_sampler_accept(grammar_, r.token);
            llama_sampler_accept(chain_, r.token);
        } catch (const std::exception & e) {
            throw CodedError("ERR_INVALID_GRAMMAR", std::string("the grammar could not accept the sampled token: ") + e.what());
        }
    }
    if (n_top < 0) return r;

    // log-softmax over what the chain kept (finite logits only).
    float max_l = -INFINITY;
    for (size_t i = 0; i < arr.size; ++i) max_l = std::max(max_l, arr.data[i].logit);
    double sum = 0.0;
    for (size_t i = 0; i < arr.size; ++i)
        if (std::isfinite(arr.data[i].logit)) sum += std::exp((double) arr.data[i].logit - max_l);
    const double lse = max_l + std::log(sum);
    r.log_prob = (float) (arr.data[arr.selected].logit - lse);
    if (n_top > 0) {
        std::vector<size_t> idx;
        idx.reserve(arr.size);
        for (size_t i = 0; i < arr.size; ++i) if (std::isfinite(arr.data[i].logit)) idx.push_back(i);
        const size_t k = std::min(idx.size(), (size_t) n_top);
        std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](size_t x, size_t y) {
            return arr.data[x].logit > arr.data[y].logit || (arr.data[x].logit == arr.data[y].logit && arr.data[x].id < arr.data[y].id);
        });
        for (size_t i = 0; i < k; ++i) {
            r.top_tokens.push_back(arr.data[idx[i]].id);
            r.top_log_probs.push_back((float) (arr.data[idx[i]].logit - lse));
        }
    }
    return r;
}

void NativeSampler::reset() {
    if (grammar_) {
        llama_sampler_reset(grammar_);
        for (llama_token t : grammar_prefill_) llama_sampler_accept(grammar_, t);
    }
    llama_sampler_reset(chain_);
}

void NativeSampler::accept_history(const llama_token * tokens, size_t n) {
    for (size_t i = 0; i < n; ++i) llama_sampler_accept(chain_, tokens[i]);
}

static Napi::Value sample_result_value(Napi::Env env, const SampleResult & r, int32_t n_top) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("token", r.token);
    if (n_top >= 0) {
        o.Set("logProb", r.log_prob);
        Napi::Int32Array tt = Napi::Int32Array::New(env, r.top_tokens.size());
        Napi::Float32Array tl = Napi::Float32Array::New(env, r.top_log_probs.size());
        std::copy(r.top_tokens.begin(), r.top_tokens.end(), tt.Data());
        std::copy(r.top_log_probs.begin(), r.top_log_probs.end(), tl.Data());
        o.Set("topTokens", tt);
        o.Set("topLogProbs", tl);
    }
    return o;
}

// sample(context, seq, nTop): from the context's stored last logits of `seq`. Holds both the
// context's and the sampler's busy flags.
class SampleWorker : public PromiseWorker {
public:
    SampleWorker(const Napi::CallbackInfo & info, NativeSampler * s, NativeContext * c)
        : PromiseWorker(info.Env(), info.This().As<Napi::Object>()), s_(s), c_(c) {
        ctx_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
        seq_ = info[1].As<Napi::Number>().Int32Value();
        n_top_ = info[2].As<Napi::Number>().Int32Value();
    }
    ~SampleWorker() override {
        c_->release();
        s_->release();
    }

protected:
    void run() override {
        const float * logits = c_->logits_for(seq_);
        if (!logits) throw CodedError("ERR_NO_LOGITS", "sequence " + std::to_string(seq_) + " has no logits to sample from: forward tokens to it first (with logits for its last token)");
        if (c_->n_vocab() != s_->n_vocab()) throw CodedError("ERR_INVALID_OPTION", "the sampler was built for another model");
        r_ = s_->sample_row(logits, c_->n_vocab(), n_top_);
    }
    Napi::Value result(Napi::Env env) override { return sample_result_value(env, r_, n_top_); }

private:
    NativeSampler * s_;
    NativeContext * c_;
    Napi::ObjectReference ctx_ref_;
    llama_seq_id seq_;
    int32_t n_top_;
    SampleResult r_;
};

Napi::Value NativeSampler::Sample(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    NativeContext * c = NativeContext::Unwrap(info[0].As<Napi::Object>());
    Napi::Value bad = check_usable(env);
    if (!bad.IsEmpty()) return bad;
    bad = c->check_usable(env);
    if (!bad.IsEmpty()) {
        release();
        return bad;
    }
    return (new SampleWorker(info, this, c))->start();
}

// sampleLogits(logits: Float32Array of n_vocab, nTop): the same chain over logits given directly
// (a copy is taken on the main thread), for benchmarks and tests on known distributions.
class SampleLogitsWorker : public PromiseWorker {
public:
    SampleLogitsWorker(const Napi::CallbackInfo & info, NativeSampler * s, NativeModel * m) : PromiseWorker(info.Env(), info.This().As<Napi::Object>()), s_(s), m_(m) {
        m_->context_opened(); // the model refuses to be freed while this runs
        Napi::Float32Array l = info[0].As<Napi::Float32Array>();
        logits_.assign(l.Data(), l.Data() + l.ElementLength());
        n_top_ = info[1].As<Napi::Number>().Int32Value();
    }
    ~SampleLogitsWorker() override {
        m_->context_closed();
        s_->release();
    }

protected:
    void run() override { r_ = s_->sample_row(logits_.data(), (int32_t) logits_.size(), n_top_); }
    Napi::Value result(Napi::Env env) override { return sample_result_value(env, r_, n_top_); }

private:
    NativeSampler * s_;
    NativeModel * m_;
    std::vector<float> logits_;
    int32_t n_top_;
    SampleResult r_;
};

Napi::Value NativeSampler::SampleLogits(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
        (int64_t) info[0].As<Napi::Float32Array>().ElementLength() != n_vocab_) {
        return rejected(env, "ERR_INVALID_OPTION", "logits must be a Float32Array of " + std::to_string(n_vocab_) + " values");
    }
    Napi::Value bad = check_usable(env);
    if (!bad.IsEmpty()) return bad;
    return (new SampleLogitsWorker(info, this, model_))->start();
}

Napi::Value NativeSampler::Reset(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (disposed() || model_->disposed()) throw make_error(env, "ERR_DISPOSED", "the sampler is disposed");
    if (busy_.load()) throw make_error(env, "ERR_BUSY", "the sampler is in use by another call");
    reset();
    return env.Undefined();
}

Napi::Value NativeSampler::Dispose(const Napi::CallbackInfo & info) {
    if (busy_.load()) throw make_error(info.Env(), "ERR_BUSY", "the sampler is in use by another call");
    free_native();
    model_ref_.Reset();
    return info.Env().Undefined();
}

} // namespace llamafuse
