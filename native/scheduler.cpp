#include "scheduler.h"

#include "beams.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace llamafuse {

namespace {

enum Ctrl { CTRL_ABORT = 0, CTRL_LEAVE = 1, CTRL_CONSUMED = 2, CTRL_PAUSED = 3 };

// Sequentially consistent, like JS's Atomics: "mark paused, then look at consumed" here and
// "store consumed, then look at paused" in JS must not both miss the other's store.
int32_t load_ctrl(const int32_t * p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
void store_ctrl(int32_t * p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }

using Clock = std::chrono::steady_clock;
uint64_t ns_since(Clock::time_point t0) {
    return (uint64_t) std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
}

// JS is woken at most once per interval per generation: a tiny model makes a token every
// few hundred microseconds, and each wakeup runs JS that competes with the decode threads for
// cores (on a 2-core machine, stories260K at 1 thread: delivery took ~25% of a token's time
// with a wakeup per token or two, ~1% with none). A token waits at most max(interval, one
// step); a sequence that pauses or goes idle delivers at once.
constexpr std::chrono::microseconds kDeliverInterval{2000};

// Adaptive prefill budget (scheduler.h, step policy): a step holding prompt tokens beside
// generating ones should cost at most this many decode-only steps...
constexpr double kMixedStepCost = 2.0;
// ...but takes at least this many prompt tokens, so that a prompt always progresses.
constexpr int32_t kPrefillFloor = 16;
// Weight of the newest measurement in the step-time averages.
constexpr double kEmaWeight = 0.25;

double ema(double avg, double x) { return avg <= 0 ? x : avg + kEmaWeight * (x - avg); }

void napi_cleanup(void * self);

} // namespace

// Tokens released to JS but not yet delivered; shared with the thread-safe function's calls,
// which may run after the slot is gone.
struct SchedOutbox {
    std::mutex mu;
    std::vector<llama_token> ids;
    std::string bytes;
    std::vector<uint32_t> ends; // end of each token's bytes in `bytes`
    // With log-probabilities (n_top >= 0): one per token, and n_top alternatives per token.
    int32_t n_top = -1;
    std::vector<double> log_probs;
    std::vector<llama_token> top_ids;
    std::vector<double> top_log_probs;
    bool notify_pending = false;
};

// The main-thread half of a generation: its promise and the JS objects it keeps alive. It is
// the thread-safe function's context, deleted by its finalizer on the main thread.
struct SchedMain {
    explicit SchedMain(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
    Napi::Promise::Deferred deferred;
    Napi::ObjectReference sampler_ref, ctrl_ref;
    NativeSampler * sampler = nullptr; // none for a beam search
};

// One generation, as the loop thread sees it.
struct SchedSlot {
    llama_seq_id seq = 0;
    NativeSampler * sampler = nullptr;
    std::vector<llama_token> prompt;  // to evaluate (what the prompt cache did not hold)
    std::vector<llama_token> history; // fed to the sampler's penalty history at the start
    llama_token last_token = -1;      // the sequence's last token before this call (-1: unknown)
    int32_t max_tokens = 0, buffer = 0;
    bool stop_on_eog = true, reset_sampler = true;
    std::vector<std::string> stops;
    int32_t * ctrl = nullptr;
    // Log-probabilities of each generated token (-1: none asked): the log-softmax of the
    // model's logits (see token_log_probs), and the n_top most likely tokens of that row.
    int32_t n_top = -1;
    double pending_log_prob = 0.0;
    std::vector<std::pair<llama_token, double>> pending_top;
    std::vector<double> gen_log_probs;              // per generated token
    std::vector<std::pair<llama_token, double>> gen_top; // n_top per generated token

    bool started = false, done = false;
    size_t prompt_done = 0;
    llama_pos start_pos = 0;           // position of prompt[0]
    // A sampled token's text is matched against the stops and released at once (the consumer
    // gets it one decode earlier, which is the whole time to first token of a cached prompt);
    // the token itself is decoded in the next step, since tokens handed out stay in the cache.
    llama_token pending = -1;          // sampled and released; decoded in the next step
    bool stop_matched = false;         // `pending` completed a stop string: finish once it is decoded
    std::vector<llama_token> generated; // decoded
    int32_t released = 0;              // tokens handed to the outbox
    std::string held;                  // bytes that may start a stop string
    std::deque<std::pair<llama_token, size_t>> held_tokens;
    bool prompt_kept = true, exact = true;

    Napi::ThreadSafeFunction tsfn;
    SchedMain * main = nullptr;
    std::shared_ptr<SchedOutbox> out = std::make_shared<SchedOutbox>();
    Clock::time_point last_notify{};

    // A beam search instead of a sampled generation: its live beams (one sequence each) add
    // one token each to a step; `seq` is the one that holds the prompt.
    std::unique_ptr<BeamSearchState> beams;
    bool beams_ready = false; // the live beams' last tokens wait to be decoded

    // This step's part of the batch.
    size_t batch_first = 0, batch_count = 0;
    bool batch_generating = false;

    llama_pos next_pos() const { return start_pos + (llama_pos) prompt.size() + (llama_pos) generated.size(); }
};

namespace {

template <typename A, typename T>
A typed_copy(Napi::Env env, const std::vector<T> & v) {
    A a = A::New(env, v.size());
    std::copy(v.begin(), v.end(), a.Data());
    return a;
}

void deliver_js(Napi::Env env, Napi::Function fn, SchedOutbox & box) {
    std::vector<llama_token> ids, top_ids;
    std::string bytes;
    std::vector<uint32_t> ends;
    std::vector<double> log_probs, top_log_probs;
    {
        std::lock_guard<std::mutex> lock(box.mu);
        ids.swap(box.ids);
        bytes.swap(box.bytes);
        ends.swap(box.ends);
        log_probs.swap(box.log_probs);
        top_ids.swap(box.top_ids);
        top_log_probs.swap(box.top_log_probs);
        box.notify_pending = false;
    }
    if (ids.empty() || env == nullptr) return;
    Napi::Int32Array a = typed_copy<Napi::Int32Array>(env, ids);
    Napi::Uint32Array e = typed_copy<Napi::Uint32Array>(env, ends);
    Napi::Buffer<uint8_t> b = Napi::Buffer<uint8_t>::Copy(env, (const uint8_t *) bytes.data(), bytes.size());
    try {
        if (box.n_top < 0) fn.Call({a, b, e});
        else {
            fn.Call({a, b, e, typed_copy<Napi::Float64Array>(env, log_probs), typed_copy<Napi::Int32Array>(env, top_ids),
                     typed_copy<Napi::Float64Array>(env, top_log_probs)});
        }
    } catch (const Napi::Error &) {
        // src/generate.ts's callback records its own failures; nothing may escape into libuv.
    }
}

// Tokens are released in the order they were generated, so `released` is the index of this
// one in `generated` (and in the log-probability records).
void release_token(SchedSlot & s, llama_token t, const std::string & bytes) {
    std::lock_guard<std::mutex> lock(s.out->mu);
    s.out->ids.push_back(t);
    s.out->bytes += bytes;
    s.out->ends.push_back((uint32_t) s.out->bytes.size());
    if (s.n_top >= 0) {
        const size_t i = (size_t) s.released;
        s.out->log_probs.push_back(s.gen_log_probs[i]);
        for (size_t k = i * (size_t) s.n_top; k < (i + 1) * (size_t) s.n_top; ++k) {
            s.out->top_ids.push_back(s.gen_top[k].first);
            s.out->top_log_probs.push_back(s.gen_top[k].second);
        }
    }
    ++s.released;
}

// What OpenAI's logprobs and llama-server's n_probs (post_sampling_probs false, its default)
// report: the log-softmax of the model's logits for this position, in float64, before
// anything the sampler chain does (bias, penalties, grammar, temperature, truncation). The
// chosen token's log-probability, and the n_top most likely tokens (ties: lower id first).
void token_log_probs(const float * row, int32_t n_vocab, llama_token chosen, int32_t n_top, double & log_prob,
                     std::vector<std::pair<llama_token, double>> & top) {
    log_prob = (double) row[chosen] - row_log_probs(row, n_vocab, n_top, top);
}

void release_held(SchedSlot & s) {
    size_t end = 0;
    for (auto & [id, len] : s.held_tokens) {
        release_token(s, id, s.held.substr(end, len));
        end += len;
    }
    s.held.clear();
    s.held_tokens.clear();
}

void notify(SchedSlot & s, bool force) {
    const auto now = Clock::now();
    bool call = false;
    {
        std::lock_guard<std::mutex> lock(s.out->mu);
        if (!s.out->ids.empty() && !s.out->notify_pending && (force || now - s.last_notify >= kDeliverInterval)) {
            call = s.out->notify_pending = true;
        }
    }
    if (!call) return;
    s.last_notify = now;
    std::shared_ptr<SchedOutbox> box = s.out;
    s.tsfn.NonBlockingCall([box](Napi::Env env, Napi::Function fn) { deliver_js(env, fn, *box); });
}

void napi_cleanup(void * self);

// Room in the slot's buffer for one more token? When there is none, the slot is marked
// paused (JS calls wake() after its next read) and looked at again, so that a read between
// the first look and the mark is not missed.
bool has_room(SchedSlot & s) {
    if (s.released - load_ctrl(s.ctrl + CTRL_CONSUMED) < s.buffer) {
        if (load_ctrl(s.ctrl + CTRL_PAUSED)) store_ctrl(s.ctrl + CTRL_PAUSED, 0);
        return true;
    }
    store_ctrl(s.ctrl + CTRL_PAUSED, 1);
    if (s.released - load_ctrl(s.ctrl + CTRL_CONSUMED) < s.buffer) {
        store_ctrl(s.ctrl + CTRL_PAUSED, 0);
        return true;
    }
    return false;
}

} // namespace

// ---- JS class --------------------------------------------------------------------------------

Napi::Function NativeScheduler::define(Napi::Env env) {
    return DefineClass(env, "NativeScheduler", {
        InstanceMethod("submit", &NativeScheduler::Submit),
        InstanceMethod("submitBeams", &NativeScheduler::SubmitBeams),
        InstanceMethod("pause", &NativeScheduler::Pause),
        InstanceMethod("resume", &NativeScheduler::Resume),
        InstanceMethod("wake", &NativeScheduler::Wake),
        InstanceMethod("close", &NativeScheduler::Close),
        InstanceMethod("stats", &NativeScheduler::Stats),
    });
}

NativeScheduler::NativeScheduler(const Napi::CallbackInfo & info) : Napi::ObjectWrap<NativeScheduler>(info) {
    Napi::Object ctx = info[0].As<Napi::Object>();
    context_ref_ = Napi::Persistent(ctx);
    c_ = NativeContext::Unwrap(ctx);
    Napi::Object o = info[1].As<Napi::Object>();
    batch_size_ = std::max(1, get_i32(o, "batchSize"));
    prefill_chunk_ = std::max(1, get_i32(o, "prefillChunk"));
    seq_active_.assign(c_->n_seq(), false);
    env_ = info.Env();
    // At environment teardown the thread must stop before finalizers free the context.
    napi_add_env_cleanup_hook(env_, &napi_cleanup, this);
}

NativeScheduler::~NativeScheduler() {
    napi_remove_env_cleanup_hook(env_, &napi_cleanup, this);
    stop_thread();
}

namespace {
void napi_cleanup(void * self) { static_cast<NativeScheduler *>(self)->stop_thread(); }
} // namespace

void NativeScheduler::stop_thread() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        closing_ = true;
        store_ctrl(&abort_decode_, 1);
        cv_.notify_all();
    }
    std::lock_guard<std::mutex> join_lock(join_mu_);
    if (thread_.joinable()) thread_.join();
}

// submit(seq, sampler, prompt, history, opts, stops: Buffer[], ctrl, onTokens) → Promise<result>
//   opts: { maxTokens, stopOnEog, resetSampler, buffer, lastToken, logProbs }
//   logProbs >= 0: onTokens also gets (logProbs: Float64Array, topIds: Int32Array,
//   topLogProbs: Float64Array), logProbs entries per token in the last two
//   result: { reason, kept: Int32Array, promptKept, exact }
Napi::Value NativeScheduler::Submit(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    const llama_seq_id seq = info[0].As<Napi::Number>().Int32Value();
    if (c_->disposed()) return rejected(env, "ERR_DISPOSED", "the context is disposed");
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (closing_) return rejected(env, "ERR_DISPOSED", "the context is disposed");
        if (seq < 0 || (uint32_t) seq >= seq_active_.size()) return rejected(env, "ERR_INVALID_SEQUENCE", "no such sequence");
        if (seq_active_[seq]) return rejected(env, "ERR_BUSY", "sequence " + std::to_string(seq) + " is already generating");
    }
    Napi::Object sampler_obj = info[1].As<Napi::Object>();
    NativeSampler * sampler = NativeSampler::Unwrap(sampler_obj);
    Napi::Value bad = sampler->check_usable(env);
    if (!bad.IsEmpty()) return bad;
    if (sampler->n_vocab() != c_->n_vocab()) {
        sampler->release();
        return rejected(env, "ERR_INVALID_OPTION", "the sampler was built for another model");
    }

    auto s = std::make_unique<SchedSlot>();
    s->seq = seq;
    s->sampler = sampler;
    Napi::Int32Array prompt = info[2].As<Napi::Int32Array>();
    s->prompt.assign(prompt.Data(), prompt.Data() + prompt.ElementLength());
    Napi::Int32Array history = info[3].As<Napi::Int32Array>();
    s->history.assign(history.Data(), history.Data() + history.ElementLength());
    Napi::Object o = info[4].As<Napi::Object>();
    s->max_tokens = get_i32(o, "maxTokens");
    s->stop_on_eog = get_bool(o, "stopOnEog");
    s->reset_sampler = get_bool(o, "resetSampler");
    s->buffer = std::max(1, get_i32(o, "buffer"));
    s->last_token = get_i32(o, "lastToken");
    s->n_top = get_i32(o, "logProbs");
    if (s->n_top > c_->n_vocab()) s->n_top = c_->n_vocab();
    s->out->n_top = s->n_top;
    Napi::Array stops = info[5].As<Napi::Array>();
    for (uint32_t i = 0; i < stops.Length(); ++i) {
        Napi::Buffer<char> b = stops.Get(i).As<Napi::Buffer<char>>();
        s->stops.emplace_back(b.Data(), b.Length());
    }
    Napi::Int32Array ctrl = info[6].As<Napi::Int32Array>();
    s->ctrl = ctrl.Data();

    s->main = new SchedMain(env);
    s->main->sampler = sampler;
    s->main->sampler_ref = Napi::Persistent(sampler_obj);
    s->main->ctrl_ref = Napi::Persistent(ctrl.As<Napi::Object>());
    Napi::Promise promise = s->main->deferred.Promise();
    s->tsfn = Napi::ThreadSafeFunction::New(env, info[7].As<Napi::Function>(), "llamafuse-generate", 0, 1, s->main,
                                            [](Napi::Env, SchedMain * m) { delete m; });

    std::lock_guard<std::mutex> lock(mu_);
    seq_active_[seq] = true;
    incoming_.push_back(std::move(s));
    if (!thread_.joinable()) thread_ = std::thread(&NativeScheduler::loop, this);
    cv_.notify_all();
    return promise;
}

// submitBeams(seqs: Int32Array, prompt, opts, stops: Buffer[], ctrl, onTokens) → Promise<result>
//   opts: { maxTokens, lengthPenalty, stopOnEog }; the sequences are emptied first and last.
//   result: as submit's, plus hypotheses: [{ tokens: Int32Array, bytes: Buffer, logProb, score, stopReason }]
//   (reason "aborted" when ctrl's abort or leave was set).
Napi::Value NativeScheduler::SubmitBeams(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (c_->disposed()) return rejected(env, "ERR_DISPOSED", "the context is disposed");
    Napi::Int32Array seqs = info[0].As<Napi::Int32Array>();
    auto s = std::make_unique<SchedSlot>();
    s->beams = std::make_unique<BeamSearchState>();
    BeamSearchState & b = *s->beams;
    b.seqs.assign(seqs.Data(), seqs.Data() + seqs.ElementLength());
    if (b.seqs.empty() || (int32_t) b.seqs.size() > batch_size_) return rejected(env, "ERR_INVALID_OPTION", "a beam search needs 1 to batchSize sequences");
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (closing_) return rejected(env, "ERR_DISPOSED", "the context is disposed");
        for (llama_seq_id q : b.seqs) {
            if (q < 0 || (uint32_t) q >= seq_active_.size()) return rejected(env, "ERR_INVALID_SEQUENCE", "no such sequence");
            if (seq_active_[q]) return rejected(env, "ERR_BUSY", "sequence " + std::to_string(q) + " is already generating");
        }
    }
    s->seq = b.seqs[0];
    b.width = (int32_t) b.seqs.size();
    Napi::Int32Array prompt = info[1].As<Napi::Int32Array>();
    s->prompt.assign(prompt.Data(), prompt.Data() + prompt.ElementLength());
    if (s->prompt.empty()) return rejected(env, "ERR_INVALID_BATCH", "a beam search needs a prompt");
    Napi::Object o = info[2].As<Napi::Object>();
    b.max_tokens = std::max(1, get_i32(o, "maxTokens"));
    b.length_penalty = o.Get("lengthPenalty").As<Napi::Number>().DoubleValue();
    b.stop_on_eog = get_bool(o, "stopOnEog");
    s->max_tokens = b.max_tokens;
    Napi::Array stops = info[3].As<Napi::Array>();
    for (uint32_t i = 0; i < stops.Length(); ++i) {
        Napi::Buffer<char> buf = stops.Get(i).As<Napi::Buffer<char>>();
        b.stops.emplace_back(buf.Data(), buf.Length());
    }
    Napi::Int32Array ctrl = info[4].As<Napi::Int32Array>();
    s->ctrl = ctrl.Data();
    s->buffer = 1;

    s->main = new SchedMain(env);
    s->main->ctrl_ref = Napi::Persistent(ctrl.As<Napi::Object>());
    Napi::Promise promise = s->main->deferred.Promise();
    s->tsfn = Napi::ThreadSafeFunction::New(env, info[5].As<Napi::Function>(), "llamafuse-beams", 0, 1, s->main,
                                            [](Napi::Env, SchedMain * m) { delete m; });

    std::lock_guard<std::mutex> lock(mu_);
    for (llama_seq_id q : s->beams->seqs) seq_active_[q] = true;
    incoming_.push_back(std::move(s));
    if (!thread_.joinable()) thread_ = std::thread(&NativeScheduler::loop, this);
    cv_.notify_all();
    return promise;
}

class SchedPauseWorker : public PromiseWorker {
public:
    SchedPauseWorker(Napi::Env env, NativeScheduler * s) : PromiseWorker(env, s->Value()), s_(s) {}

protected:
    void run() override {
        std::unique_lock<std::mutex> lock(s_->mu_);
        s_->cv_.wait(lock, [&] { return !s_->in_step_; });
    }

private:
    NativeScheduler * s_;
};

// pause(): the loop starts no new step until resume(); resolves once the step in flight (if
// any) is done. Calls nest: each pause() needs its resume().
Napi::Value NativeScheduler::Pause(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    {
        std::lock_guard<std::mutex> lock(mu_);
        ++pause_requests_;
        if (!in_step_) {
            auto d = Napi::Promise::Deferred::New(env);
            d.Resolve(env.Undefined());
            return d.Promise();
        }
    }
    return (new SchedPauseWorker(env, this))->start();
}

Napi::Value NativeScheduler::Resume(const Napi::CallbackInfo & info) {
    std::lock_guard<std::mutex> lock(mu_);
    if (pause_requests_ > 0) --pause_requests_;
    cv_.notify_all();
    return info.Env().Undefined();
}

// wake(): a consumer took tokens from a full buffer, or set abort/leave.
Napi::Value NativeScheduler::Wake(const Napi::CallbackInfo & info) {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
    return info.Env().Undefined();
}

class SchedCloseWorker : public PromiseWorker {
public:
    SchedCloseWorker(Napi::Env env, NativeScheduler * s) : PromiseWorker(env, s->Value()), s_(s) {}

protected:
    void run() override { s_->stop_thread(); }

private:
    NativeScheduler * s_;
};

// close(): ends every generation (ERR_DISPOSED) within one step and joins the thread.
Napi::Value NativeScheduler::Close(const Napi::CallbackInfo & info) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        closing_ = true;
        store_ctrl(&abort_decode_, 1);
        cv_.notify_all();
    }
    return (new SchedCloseWorker(info.Env(), this))->start();
}

Napi::Value NativeScheduler::Stats(const Napi::CallbackInfo & info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("steps", (double) steps_.load(std::memory_order_relaxed));
    o.Set("decodedTokens", (double) decoded_tokens_.load(std::memory_order_relaxed));
    o.Set("stepNs", (double) step_ns_.load(std::memory_order_relaxed));
    o.Set("decodeNs", (double) decode_ns_.load(std::memory_order_relaxed));
    o.Set("sampleNs", (double) sample_ns_.load(std::memory_order_relaxed));
    o.Set("acquireNs", (double) acquire_ns_.load(std::memory_order_relaxed));
    o.Set("textNs", (double) text_ns_.load(std::memory_order_relaxed));
    o.Set("mixedSteps", (double) mixed_steps_.load(std::memory_order_relaxed));
    o.Set("mixedPromptTokens", (double) mixed_prompt_tokens_.load(std::memory_order_relaxed));
    o.Set("mixedPromptTokensMax", mixed_prompt_max_.load(std::memory_order_relaxed));
    o.Set("prefillBudget", prefill_budget_last_.load(std::memory_order_relaxed));
    o.Set("lastRowsSkipped", (double) rows_skipped_.load(std::memory_order_relaxed));
    return o;
}

// ---- the loop ----------------------------------------------------------------------------------

bool NativeScheduler::has_work() {
    if (!incoming_.empty()) return true;
    for (auto & sp : slots_) {
        SchedSlot & s = *sp;
        if (s.done) continue;
        if (!s.started || load_ctrl(s.ctrl + CTRL_ABORT) || load_ctrl(s.ctrl + CTRL_LEAVE)) return true;
        if (s.prompt_done < s.prompt.size()) return true;
        if (s.beams_ready) return true;
        if (s.pending >= 0 && has_room(s)) return true;
    }
    return false;
}

void NativeScheduler::loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
        if (closing_) break;
        if (pause_requests_ > 0) {
            cv_.wait(lock);
            continue;
        }
        while (!incoming_.empty()) {
            slots_.push_back(std::move(incoming_.front()));
            incoming_.pop_front();
        }
        if (!has_work()) {
            // Going idle: whatever is waiting in an outbox goes to JS now, not at the next step.
            lock.unlock();
            flush_outboxes(true);
            lock.lock();
            if (closing_ || pause_requests_ > 0 || has_work()) continue;
            cv_.wait(lock);
            continue;
        }
        in_step_ = true;
        lock.unlock();
        run_step();
        lock.lock();
        in_step_ = false;
        slots_.erase(std::remove_if(slots_.begin(), slots_.end(), [](const std::unique_ptr<SchedSlot> & s) { return s->done; }), slots_.end());
        cv_.notify_all();
    }
    // Closing: every generation still here ends with ERR_DISPOSED.
    std::vector<std::unique_ptr<SchedSlot>> rest;
    rest.swap(slots_);
    while (!incoming_.empty()) {
        rest.push_back(std::move(incoming_.front()));
        incoming_.pop_front();
    }
    in_step_ = false;
    cv_.notify_all();
    lock.unlock();
    for (auto & s : rest) {
        if (!s->done) {
            s->exact = false;
            fail_slot(*s, "ERR_DISPOSED", "the context was disposed during this generation");
        }
    }
}

void NativeScheduler::flush_outboxes(bool force) {
    for (auto & s : slots_) if (!s->done) notify(*s, force);
}

void NativeScheduler::start_slot(SchedSlot & s) {
    s.started = true;
    if (s.beams) {
        clear_beam_sequences(s);
        s.start_pos = 0;
        if (s.prompt.size() > c_->n_ctx()) {
            throw CodedError("ERR_CONTEXT_FULL", "the beam search's prompt of " + std::to_string(s.prompt.size()) + " tokens does not fit in the context's " +
                std::to_string(c_->n_ctx()) + " positions");
        }
        return; // the prompt is evaluated on the first sequence in the coming steps
    }
    if (s.reset_sampler) s.sampler->reset();
    if (!s.history.empty()) s.sampler->accept_history(s.history.data(), s.history.size());
    s.start_pos = c_->next_pos(s.seq);
    if (!s.prompt.empty()) {
        if ((size_t) s.start_pos + s.prompt.size() > c_->n_ctx()) {
            throw CodedError("ERR_CONTEXT_FULL", "sequence " + std::to_string(s.seq) + " holds " + std::to_string(s.start_pos) + " of " +
                std::to_string(c_->n_ctx()) + " positions; the prompt's " + std::to_string(s.prompt.size()) +
                " tokens do not fit (nothing was decoded; the context is unchanged)");
        }
        return; // evaluated in the coming steps
    }
    if (s.max_tokens == 0) {
        finish_slot(s, "maxTokens", true);
        return;
    }
    const float * l = c_->logits_for(s.seq, &abort_decode_);
    if (!l) throw CodedError("ERR_NO_LOGITS", "sequence " + std::to_string(s.seq) + " has no logits to continue from: give generate a prompt");
    sample_next(s, l);
}

void NativeScheduler::sample_next(SchedSlot & s, const float * row) {
    const auto t0 = Clock::now();
    SampleResult r = s.sampler->sample_row(row, c_->n_vocab(), -1);
    sample_ns_.fetch_add(ns_since(t0), std::memory_order_relaxed);
    if (s.stop_on_eog && llama_vocab_is_eog(c_->vocab(), r.token)) {
        finish_slot(s, "eog", true);
        return;
    }
    s.pending = r.token;
    if (s.n_top >= 0) token_log_probs(row, c_->n_vocab(), r.token, s.n_top, s.pending_log_prob, s.pending_top);
    const auto t_text = Clock::now();
    take_token(s, r.token);
    text_ns_.fetch_add(ns_since(t_text), std::memory_order_relaxed);
}

// A token was sampled: its text goes through the stop-string matcher. When a stop string
// completes, the text before it is released, the rest dropped, and the slot finishes once
// the token is decoded.
void NativeScheduler::take_token(SchedSlot & s, llama_token t) {
    if (s.n_top >= 0) {
        s.gen_log_probs.push_back(s.pending_log_prob);
        s.gen_top.insert(s.gen_top.end(), s.pending_top.begin(), s.pending_top.end());
    }
    std::string piece = token_text_piece(c_->vocab(), t);
    if (s.stops.empty()) {
        release_token(s, t, piece);
        return;
    }
    s.held += piece;
    s.held_tokens.emplace_back(t, piece.size());
    size_t at = std::string::npos;
    for (const std::string & stop : s.stops) at = std::min(at, s.held.find(stop));
    if (at != std::string::npos) {
        size_t end = 0;
        for (auto & [id, len] : s.held_tokens) {
            if (end + len <= at) {
                release_token(s, id, s.held.substr(end, len));
                end += len;
                continue;
            }
            if (end < at) release_token(s, id, s.held.substr(end, at - end));
            break;
        }
        s.held.clear();
        s.held_tokens.clear();
        s.stop_matched = true;
        return;
    }
    // Hold back the longest tail that could still become a stop string.
    size_t boundary = s.held.size();
    for (const std::string & stop : s.stops) {
        for (size_t n = std::min(stop.size() - 1, s.held.size()); n > 0; --n) {
            if (s.held.compare(s.held.size() - n, n, stop, 0, n) == 0) {
                boundary = std::min(boundary, s.held.size() - n);
                break;
            }
        }
    }
    size_t end = 0;
    while (!s.held_tokens.empty() && end + s.held_tokens.front().second <= boundary) {
        release_token(s, s.held_tokens.front().first, s.held.substr(end, s.held_tokens.front().second));
        end += s.held_tokens.front().second;
        s.held_tokens.pop_front();
    }
    s.held.erase(0, end);
}

// The consumer left or aborted: the cache keeps the prompt and the tokens it took, and the
// next-token logits are those after the last kept token (decoded again when the loop had
// run ahead of the consumer). A prompt not yet fully evaluated is removed (all or nothing).
void NativeScheduler::cancel_slot(SchedSlot & s, const char * reason) {
    if (s.beams) {
        s.beams->end("aborted");
        finish_beams(s, "aborted");
        return;
    }
    llama_memory_t mem = llama_get_memory(c_->ctx());
    if (!s.started || s.prompt_done < s.prompt.size()) {
        if (s.started && s.prompt_done > 0) {
            llama_memory_seq_rm(mem, s.seq, s.start_pos, -1);
            c_->set_has_logits(s.seq, false);
        }
        s.prompt_kept = false;
        finish_slot(s, reason, false);
        return;
    }
    const size_t consumed = (size_t) std::max(0, load_ctrl(s.ctrl + CTRL_CONSUMED));
    if (s.pending >= 0 && consumed > s.generated.size()) {
        // The consumer read the token sampled last, which is not decoded yet: it is kept too.
        std::vector<float> row((size_t) c_->n_vocab());
        try {
            c_->decode({s.pending}, {s.seq}, {1}, row.data(), &abort_decode_);
            s.generated.push_back(s.pending);
        } catch (const CodedError &) {
            // not decoded: the cache ends before it, and `kept` says so
        }
    }
    s.pending = -1;
    const size_t kept = std::min(consumed, s.generated.size());
    if (kept < s.generated.size()) {
        const llama_pos gen0 = s.start_pos + (llama_pos) s.prompt.size();
        const llama_token redo = kept > 0 ? s.generated[kept - 1] : !s.prompt.empty() ? s.prompt.back() : s.last_token;
        const llama_pos from = redo >= 0 ? gen0 + (llama_pos) kept - 1 : gen0;
        llama_memory_seq_rm(mem, s.seq, from, -1);
        c_->set_has_logits(s.seq, false);
        s.generated.resize(kept);
        if (redo >= 0) {
            std::vector<float> row((size_t) c_->n_vocab());
            try {
                c_->decode({redo}, {s.seq}, {1}, row.data(), &abort_decode_);
            } catch (const CodedError &) {
                s.exact = false; // the token at `from` is gone: the JS token list cannot say so
            }
        }
    }
    finish_slot(s, reason, false);
}

void NativeScheduler::release_sequences(SchedSlot & s) {
    std::lock_guard<std::mutex> lock(mu_);
    seq_active_[s.seq] = false;
    if (s.beams) for (llama_seq_id q : s.beams->seqs) seq_active_[q] = false;
}

void NativeScheduler::clear_beam_sequences(SchedSlot & s) {
    llama_memory_t mem = llama_get_memory(c_->ctx());
    for (llama_seq_id q : s.beams->seqs) {
        llama_memory_seq_rm(mem, q, -1, -1);
        c_->set_has_logits(q, false);
    }
}

// The search is over (or was cancelled): its sequences are emptied and the hypotheses go to JS.
void NativeScheduler::finish_beams(SchedSlot & s, const char * reason) {
    clear_beam_sequences(s);
    finish_slot(s, reason, false);
}

// After a step: the search's next beams, with their sequences' copies made now (before their
// tokens are decoded in the next step).
void NativeScheduler::expand_beams(SchedSlot & s, const std::vector<const float *> & rows) {
    const auto t0 = Clock::now();
    const std::vector<std::pair<llama_seq_id, llama_seq_id>> copies = s.beams->expand(rows, c_->n_vocab(), c_->vocab());
    llama_memory_t mem = llama_get_memory(c_->ctx());
    for (auto [from, to] : copies) {
        llama_memory_seq_rm(mem, to, -1, -1);
        llama_memory_seq_cp(mem, from, to, -1, -1);
    }
    sample_ns_.fetch_add(ns_since(t0), std::memory_order_relaxed);
    if (s.beams->over) finish_beams(s, "done");
    else s.beams_ready = true;
}

void NativeScheduler::finish_slot(SchedSlot & s, const char * reason, bool flush_held) {
    if (s.done) return;
    if (flush_held) release_held(s);
    s.done = true;
    release_sequences(s);
    std::shared_ptr<SchedOutbox> box = s.out;
    SchedMain * m = s.main;
    std::string why = reason;
    std::vector<llama_token> kept = s.generated;
    const bool prompt_kept = s.prompt_kept, exact = s.exact;
    auto hyps = std::make_shared<std::vector<BeamHypothesis>>();
    if (s.beams) *hyps = s.beams->result();
    const bool beams = s.beams != nullptr;
    s.tsfn.NonBlockingCall([box, m, why, kept, prompt_kept, exact, hyps, beams](Napi::Env env, Napi::Function fn) {
        if (env == nullptr) return;
        deliver_js(env, fn, *box);
        if (m->sampler) m->sampler->release();
        Napi::Object o = Napi::Object::New(env);
        if (beams) {
            Napi::Array list = Napi::Array::New(env, hyps->size());
            for (size_t i = 0; i < hyps->size(); ++i) {
                const BeamHypothesis & h = (*hyps)[i];
                Napi::Object ho = Napi::Object::New(env);
                Napi::Int32Array t = Napi::Int32Array::New(env, h.tokens.size());
                std::copy(h.tokens.begin(), h.tokens.end(), t.Data());
                ho.Set("tokens", t);
                ho.Set("bytes", Napi::Buffer<uint8_t>::Copy(env, (const uint8_t *) h.bytes.data(), h.bytes.size()));
                ho.Set("logProb", h.log_prob);
                ho.Set("score", h.score);
                ho.Set("stopReason", h.reason);
                list.Set((uint32_t) i, ho);
            }
            o.Set("hypotheses", list);
        }
        o.Set("reason", why);
        Napi::Int32Array k = Napi::Int32Array::New(env, kept.size());
        std::copy(kept.begin(), kept.end(), k.Data());
        o.Set("kept", k);
        o.Set("promptKept", prompt_kept);
        o.Set("exact", exact);
        m->deferred.Resolve(o);
    });
    s.tsfn.Release();
}

void NativeScheduler::fail_slot(SchedSlot & s, const std::string & code, const std::string & message) {
    if (s.done) return;
    s.done = true;
    release_sequences(s);
    SchedMain * m = s.main;
    s.tsfn.NonBlockingCall([m, code, message](Napi::Env env, Napi::Function) {
        if (env == nullptr) return;
        if (m->sampler) m->sampler->release();
        m->deferred.Reject(make_error(env, code, message).Value());
    });
    s.tsfn.Release();
}

int32_t NativeScheduler::prefill_budget(int32_t n_generating, int32_t waiting) const {
    if (n_generating == 0) return prefill_chunk_ * waiting; // no stream waits on this step
    const int32_t floor = std::min(prefill_chunk_, kPrefillFloor);
    // The decode-only time for this many generating tokens, or for the nearest count measured
    // (streams come and go while a long prompt is evaluated, and then no step is decode-only).
    double base = 0;
    const int32_t n = (int32_t) decode_only_ns_.size();
    for (int32_t d = 0; d < n && base <= 0; ++d) {
        if (n_generating - d >= 0 && n_generating - d < n) base = decode_only_ns_[n_generating - d];
        if (base <= 0 && n_generating + d < n) base = decode_only_ns_[n_generating + d];
    }
    if (base <= 0 || prompt_token_ns_ <= 0) return floor;
    // each prompt waiting past the first allows the step one more decode-only step's time
    const double cost = kMixedStepCost + (waiting - 1);
    const double fit = (cost - 1.0) * base / prompt_token_ns_;
    const int32_t grown = std::max(floor, 2 * last_mixed_prompt_);
    return std::max(floor, std::min({prefill_chunk_ * waiting, grown, (int32_t) std::min(fit, 1e9)}));
}

void NativeScheduler::observe_step(int32_t n_generating, int32_t n_prompt, uint64_t decode_ns) {
    const double t = (double) decode_ns;
    if (n_prompt == 0) {
        if (n_generating <= 0) return;
        if ((int32_t) decode_only_ns_.size() <= n_generating) decode_only_ns_.resize(n_generating + 1, 0.0);
        decode_only_ns_[n_generating] = ema(decode_only_ns_[n_generating], t);
        return;
    }
    if (n_generating == 0) {
        // A prompt alone: time per token with the step's fixed cost in it (an overestimate of
        // the extra cost per prompt token), a first guess until a mixed step is measured.
        if (prompt_token_ns_ <= 0) prompt_token_ns_ = t / n_prompt;
        return;
    }
    const double base = n_generating < (int32_t) decode_only_ns_.size() ? decode_only_ns_[n_generating] : 0;
    // The extra time over the decode-only step (the whole step until that is measured).
    const double extra = std::max(1.0, t - base) / n_prompt;
    prompt_token_ns_ = ema(prompt_token_ns_, extra);
    last_mixed_prompt_ = n_prompt;
    mixed_steps_.fetch_add(1, std::memory_order_relaxed);
    mixed_prompt_tokens_.fetch_add((uint64_t) n_prompt, std::memory_order_relaxed);
    if (n_prompt > mixed_prompt_max_.load(std::memory_order_relaxed)) mixed_prompt_max_.store(n_prompt, std::memory_order_relaxed);
}

void NativeScheduler::run_step() {
    const auto t_step = Clock::now();
    // The JS side pauses the loop before any other call on the context, so the busy flag is
    // free here; taking it still keeps a call that bypassed the queue from racing llama.cpp.
    const auto t_acquire = Clock::now();
    while (!c_->try_acquire()) {
        if (load_ctrl(&abort_decode_)) return;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    struct Release {
        NativeContext * c;
        ~Release() { c->release(); }
    } release{c_};
    acquire_ns_.fetch_add(ns_since(t_acquire), std::memory_order_relaxed);

    // 1. Cancellations, then new generations.
    for (auto & sp : slots_) {
        SchedSlot & s = *sp;
        if (s.done) continue;
        try {
            if (load_ctrl(s.ctrl + CTRL_ABORT)) cancel_slot(s, "aborted");
            else if (load_ctrl(s.ctrl + CTRL_LEAVE)) cancel_slot(s, "stop");
            else if (!s.started) start_slot(s);
        } catch (const CodedError & e) {
            s.exact = false;
            fail_slot(s, e.code, e.what());
        }
    }

    // 2. The batch: one token per generating sequence with room in its buffer, then prompt
    //    chunks in arrival order.
    std::vector<llama_token> tokens;
    std::vector<llama_seq_id> seqs;
    std::vector<uint8_t> want;
    std::vector<SchedSlot *> in_batch;
    const int32_t n_ctx = (int32_t) c_->n_ctx();
    for (auto & sp : slots_) {
        SchedSlot & s = *sp;
        if (s.beams && s.beams_ready && !s.done) {
            // A beam search: every live beam's last token, or none this step (a group is
            // never split across steps).
            const auto & live = s.beams->live;
            if ((int32_t) (tokens.size() + live.size()) > batch_size_) continue;
            bool fits = true;
            for (const auto & b : live) fits = fits && s.start_pos + (llama_pos) s.prompt.size() + (llama_pos) b.tokens.size() <= n_ctx;
            if (!fits) {
                s.beams->end("contextFull");
                finish_beams(s, "done");
                continue;
            }
            s.batch_first = tokens.size();
            s.batch_count = live.size();
            s.batch_generating = true;
            s.beams_ready = false;
            for (const auto & b : live) {
                tokens.push_back(b.tokens.back());
                seqs.push_back(b.seq);
                want.push_back(1);
            }
            in_batch.push_back(&s);
            continue;
        }
        if (s.done || s.pending < 0) continue;
        if ((int32_t) tokens.size() >= batch_size_) break;
        if (!has_room(s)) {
            notify(s, true); // paused until the consumer reads: everything waiting goes out now
            continue;
        }
        if (s.next_pos() + 1 > n_ctx) {
            finish_slot(s, "contextFull", true);
            continue;
        }
        s.batch_first = tokens.size();
        s.batch_count = 1;
        s.batch_generating = true;
        tokens.push_back(s.pending);
        seqs.push_back(s.seq);
        // The generation's last token needs no logits row: the sequence owes it (see
        // NativeContext::owe_logits), and pays only if something continues from it.
        want.push_back(s.stop_matched || (int32_t) s.generated.size() + 1 >= s.max_tokens ? 0 : 1);
        in_batch.push_back(&s);
    }
    // The time bound (prefill_budget) splits long prompts; a short one (at most a chunk) is
    // taken whole while the chunk has room, so that a burst of requests starts generating
    // within a step or two instead of one floor's worth of tokens per step. With nothing
    // generating, nobody waits on this step: short prompts fill the whole batch, so that a
    // pool's slots filling at once start together (see the step policy in scheduler.h).
    const int32_t n_generating = (int32_t) tokens.size();
    int32_t waiting = 0; // prompts not fully evaluated (at least 1 below: the factor on the bounds)
    for (const auto & sp : slots_) waiting += !sp->done && sp->started && sp->prompt_done < sp->prompt.size();
    waiting = std::max<int32_t>(1, waiting);
    const int32_t room = batch_size_ - n_generating;
    const int32_t timed = std::min(prefill_budget(n_generating, waiting), room);
    int32_t chunk_left = n_generating == 0 ? room : std::min(prefill_chunk_ * waiting, room), budget = timed;
    for (auto & sp : slots_) {
        SchedSlot & s = *sp;
        if (chunk_left <= 0) break;
        if (s.done || !s.started || s.prompt_done >= s.prompt.size()) continue;
        const size_t left = s.prompt.size() - s.prompt_done;
        const bool whole = s.prompt.size() <= (size_t) prefill_chunk_ && left <= (size_t) chunk_left;
        if (!whole && budget <= 0) continue;
        const size_t take = whole ? left : std::min({(size_t) budget, (size_t) chunk_left, left});
        s.batch_first = tokens.size();
        s.batch_count = take;
        s.batch_generating = false;
        for (size_t i = 0; i < take; ++i) {
            tokens.push_back(s.prompt[s.prompt_done + i]);
            seqs.push_back(s.seq);
            want.push_back(0);
        }
        if (s.prompt_done + take == s.prompt.size()) want.back() = 1;
        budget -= (int32_t) take;
        chunk_left -= (int32_t) take;
        in_batch.push_back(&s);
    }
    if (tokens.empty()) return;
    if (n_generating > 0 && (int32_t) tokens.size() > n_generating) prefill_budget_last_.store(timed, std::memory_order_relaxed);

    // 3. One decode for all of them.
    size_t rows = 0;
    for (uint8_t w : want) rows += w;
    out_.resize(rows * (size_t) c_->n_vocab());
    const auto t_decode = Clock::now();
    try {
        c_->decode(tokens, seqs, want, out_.data(), &abort_decode_);
    } catch (const CodedError & e) {
        decode_ns_.fetch_add(ns_since(t_decode), std::memory_order_relaxed);
        if (e.code == "ERR_ABORTED") return; // closing: the loop fails every generation
        // Nothing of this batch was kept (decode is all or nothing).
        for (SchedSlot * s : in_batch) {
            if (s->beams) {
                // The search ends with what it has when the cache is full, as a failed
                // forward left it; any other failure fails it.
                if (e.code == "ERR_CONTEXT_FULL") {
                    s->beams->end("contextFull");
                    finish_beams(*s, "done");
                } else {
                    clear_beam_sequences(*s);
                    fail_slot(*s, e.code, e.what());
                }
            } else if (s->batch_generating) {
                s->pending = -1;
                if (e.code == "ERR_CONTEXT_FULL") finish_slot(*s, "contextFull", true);
                else fail_slot(*s, e.code, e.what());
            } else {
                if (s->prompt_done > 0) llama_memory_seq_rm(llama_get_memory(c_->ctx()), s->seq, s->start_pos, -1);
                s->prompt_kept = false;
                fail_slot(*s, e.code, e.what());
            }
        }
        return;
    }
    const uint64_t decode_ns = ns_since(t_decode);
    decode_ns_.fetch_add(decode_ns, std::memory_order_relaxed);
    decoded_tokens_.fetch_add(tokens.size(), std::memory_order_relaxed);
    observe_step(n_generating, (int32_t) tokens.size() - n_generating, decode_ns);
    steps_.fetch_add(1, std::memory_order_relaxed);

    // 4. Each sequence takes its row: text and stops for a generated token, then the next pick.
    size_t row = 0;
    for (SchedSlot * sp : in_batch) {
        SchedSlot & s = *sp;
        if (s.beams) {
            // A beam search takes a row per live beam (or the prompt's last one), expands.
            std::vector<const float *> beam_rows;
            const bool last_chunk = s.batch_generating || s.prompt_done + s.batch_count == s.prompt.size();
            if (s.batch_generating) {
                for (size_t i = 0; i < s.batch_count; ++i) beam_rows.push_back(out_.data() + (row++) * (size_t) c_->n_vocab());
            } else {
                s.prompt_done += s.batch_count;
                if (last_chunk) beam_rows.push_back(out_.data() + (row++) * (size_t) c_->n_vocab());
            }
            if (last_chunk) expand_beams(s, beam_rows);
            continue;
        }
        const float * logits = want[s.batch_first + s.batch_count - 1] ? out_.data() + (row++) * (size_t) c_->n_vocab() : nullptr;
        try {
            if (s.batch_generating) {
                s.generated.push_back(s.pending);
                s.pending = -1;
                if (!logits) {
                    c_->owe_logits(s.seq, s.generated.back());
                    rows_skipped_.fetch_add(1, std::memory_order_relaxed);
                }
                if (s.stop_matched) finish_slot(s, "stop", false);
                else if ((int32_t) s.generated.size() >= s.max_tokens) finish_slot(s, "maxTokens", true);
                else sample_next(s, logits);
            } else {
                s.prompt_done += s.batch_count;
                if (s.prompt_done < s.prompt.size()) continue;
                if (s.max_tokens == 0) finish_slot(s, "maxTokens", true);
                else sample_next(s, logits);
            }
        } catch (const CodedError & e) {
            fail_slot(s, e.code, e.what());
        }
        if (!s.done) {
            const auto t_notify = Clock::now();
            // The first token goes out at once (time to first token); later ones in batches.
            notify(s, s.generated.empty());
            text_ns_.fetch_add(ns_since(t_notify), std::memory_order_relaxed);
        }
    }
    step_ns_.fetch_add(ns_since(t_step), std::memory_order_relaxed);
}

} // namespace llamafuse
