#include "generate.h"

#include "context.h"
#include "sampling.h"

#include <chrono>
#include <memory>
#include <mutex>

namespace llamafuse {

namespace {

enum Ctrl { CTRL_ABORT = 0, CTRL_STOP = 1 };

// Tokens produced but not yet handed to JS; shared with the thread-safe function's calls,
// which may run after the worker is gone.
struct Outbox {
    std::mutex mu;
    std::vector<llama_token> tokens;
    bool notify_pending = false;

    std::vector<llama_token> take() {
        std::lock_guard<std::mutex> lock(mu);
        std::vector<llama_token> out;
        out.swap(tokens);
        notify_pending = false;
        return out;
    }
};

class GenerateWorker : public PromiseWorker {
public:
    GenerateWorker(const Napi::CallbackInfo & info, NativeContext * c, NativeSampler * s)
        : PromiseWorker(info.Env(), info[0].As<Napi::Object>()), c_(c), s_(s), out_(std::make_shared<Outbox>()) {
        sampler_ref_ = Napi::Persistent(info[1].As<Napi::Object>());
        Napi::Int32Array prompt = info[2].As<Napi::Int32Array>();
        prompt_.assign(prompt.Data(), prompt.Data() + prompt.ElementLength());
        seq_ = info[3].As<Napi::Number>().Int32Value();
        Napi::Object o = info[4].As<Napi::Object>();
        max_tokens_ = get_i32(o, "maxTokens");
        stop_on_eog_ = get_bool(o, "stopOnEog");
        reset_sampler_ = get_bool(o, "resetSampler");
        accept_prompt_ = get_bool(o, "acceptPrompt");
        Napi::Int32Array ctrl = info[5].As<Napi::Int32Array>();
        ctrl_ = ctrl.Data();
        ctrl_ref_ = Napi::Persistent(ctrl.As<Napi::Object>());
        tsfn_ = Napi::ThreadSafeFunction::New(info.Env(), info[6].As<Napi::Function>(), "llamafuse-generate", 0, 1);
    }
    ~GenerateWorker() override {
        c_->release();
        s_->release();
    }

protected:
    void run() override {
        // Released on every path: queued deliveries still run, then the function is finalized.
        struct Releaser {
            Napi::ThreadSafeFunction & f;
            ~Releaser() { f.Release(); }
        } releaser{tsfn_};
        const int32_t n_vocab = c_->n_vocab();
        if (n_vocab != s_->n_vocab()) throw CodedError("ERR_INVALID_OPTION", "the sampler was built for another model");
        std::vector<float> row((size_t) n_vocab);

        if (!prompt_.empty()) {
            std::vector<llama_seq_id> seqs(prompt_.size(), seq_);
            std::vector<uint8_t> want(prompt_.size(), 0);
            want.back() = 1;
            c_->decode(prompt_, seqs, want, row.data(), ctrl_ + CTRL_ABORT);
        }
        if (!c_->last_logits(seq_)) {
            throw CodedError("ERR_NO_LOGITS", "sequence " + std::to_string(seq_) + " has no logits to continue from: give generate a prompt");
        }
        if (reset_sampler_) s_->reset();
        if (accept_prompt_) s_->accept_history(prompt_.data(), prompt_.size());

        const llama_vocab * vocab = c_->vocab();
        std::vector<llama_token> one(1);
        const std::vector<llama_seq_id> one_seq(1, seq_);
        const std::vector<uint8_t> one_want(1, 1);
        reason_ = "maxTokens";
        for (int32_t i = 0; i < max_tokens_; ++i) {
            if (!may_continue()) break;
            SampleResult r = s_->sample_row(c_->last_logits(seq_), n_vocab, -1);
            if (stop_on_eog_ && llama_vocab_is_eog(vocab, r.token)) {
                reason_ = "eog";
                break;
            }
            one[0] = r.token;
            try {
                c_->decode(one, one_seq, one_want, row.data(), ctrl_ + CTRL_ABORT);
            } catch (const CodedError & e) {
                // Tokens already delivered stay valid (and decoded); say why it ended.
                if (e.code == "ERR_ABORTED") { reason_ = "aborted"; break; }
                if (e.code == "ERR_CONTEXT_FULL") { reason_ = "contextFull"; break; }
                throw;
            }
            ++generated_;
            deliver(r.token);
        }
    }

    Napi::Value result(Napi::Env env) override {
        std::vector<llama_token> tail = out_->take();
        Napi::Int32Array t = Napi::Int32Array::New(env, tail.size());
        std::copy(tail.begin(), tail.end(), t.Data());
        Napi::Object o = Napi::Object::New(env);
        o.Set("reason", reason_);
        o.Set("tail", t);
        o.Set("generated", generated_);
        return o;
    }

private:
    int32_t load(Ctrl k) const { return __atomic_load_n(ctrl_ + k, __ATOMIC_ACQUIRE); }

    // False when the loop must end (abort, or stop: a stop string matched or the consumer left).
    // The loop never waits for the consumer: a consumer may await other calls on this context
    // inside its loop, and those are queued behind this generation.
    bool may_continue() {
        if (load(CTRL_ABORT)) { reason_ = "aborted"; return false; }
        if (load(CTRL_STOP)) { reason_ = "stop"; return false; }
        return true;
    }

    // Wakes the event loop at most once per kDeliverInterval: a tiny model makes a token every
    // few hundred microseconds, and waking JS for each one costs the decode thread CPU time on
    // small machines. A token waits at most max(interval, one decode); the rest arrive with
    // the completion.
    static constexpr std::chrono::microseconds kDeliverInterval{1000};

    void deliver(llama_token t) {
        bool call = false;
        const auto now = std::chrono::steady_clock::now();
        {
            std::lock_guard<std::mutex> lock(out_->mu);
            out_->tokens.push_back(t);
            if (!out_->notify_pending && now - last_notify_ >= kDeliverInterval) call = out_->notify_pending = true;
        }
        if (!call) return;
        last_notify_ = now;
        std::shared_ptr<Outbox> box = out_;
        tsfn_.NonBlockingCall([box](Napi::Env env, Napi::Function fn) {
            std::vector<llama_token> got = box->take();
            if (got.empty() || env == nullptr) return; // the completion already took them
            Napi::Int32Array a = Napi::Int32Array::New(env, got.size());
            std::copy(got.begin(), got.end(), a.Data());
            fn.Call({a});
        });
    }

    NativeContext * c_;
    NativeSampler * s_;
    Napi::ObjectReference sampler_ref_, ctrl_ref_;
    std::vector<llama_token> prompt_;
    llama_seq_id seq_;
    int32_t max_tokens_;
    bool stop_on_eog_, reset_sampler_, accept_prompt_;
    const int32_t * ctrl_;
    Napi::ThreadSafeFunction tsfn_;
    std::shared_ptr<Outbox> out_;
    std::string reason_ = "maxTokens";
    int32_t generated_ = 0;
    std::chrono::steady_clock::time_point last_notify_{};
};

} // namespace

Napi::Value generate_start(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    NativeContext * c = NativeContext::Unwrap(info[0].As<Napi::Object>());
    NativeSampler * s = NativeSampler::Unwrap(info[1].As<Napi::Object>());
    Napi::Value bad = s->check_usable(env);
    if (!bad.IsEmpty()) return bad;
    bad = c->check_usable(env);
    if (!bad.IsEmpty()) {
        s->release();
        return bad;
    }
    return (new GenerateWorker(info, c, s))->start();
}

} // namespace llamafuse
