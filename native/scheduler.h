// NativeScheduler: one per context. A native thread runs every active generation of the
// context together: each step is one llama_decode holding the next token of every generating
// sequence plus a chunk of the prompts still being evaluated (chunked prefill). Per sequence
// it keeps its own sampler chain, stop strings (matched on bytes, here), abort/leave flags
// and a bounded buffer: a sequence whose consumer stopped reading waits, the others go on.
// No JavaScript runs per token: token ids and their text (bytes) go to JS in coalesced
// deliveries through a thread-safe function.
//
// Step policy (fairness):
//   - every generating sequence whose buffer has room adds exactly one token per step;
//   - prompts are evaluated in arrival order, at most `prefillChunk` prompt tokens per step
//     in all (per prompt waiting, see below; the oldest prompt first; a prompt longer than
//     the chunk takes several steps),
//     and never more than batchSize - (generating sequences) tokens;
//   - while sequences generate, a step's prompt tokens are also bounded by time (adaptive
//     prefill budget): the loop keeps an EMA of llama_decode's time for decode-only steps
//     (per count of generating tokens) and of the extra time per prompt token in steps that
//     hold both, and takes at most (kMixedStepCost - 1) x decode-only time / (time per prompt
//     token) prompt tokens, so that such a step costs about kMixedStepCost (2) decode-only
//     steps. The budget never goes below kPrefillFloor (16) tokens (a prompt always
//     progresses), grows at most 2x from one mixed step to the next (an estimate made on a
//     small chunk does not jump straight to a large one), and starts at the floor until both
//     times are measured. A prompt of at most one chunk is taken whole while the chunk has
//     room (a burst of short requests starts at once). With nothing generating, nobody
//     waits on the step: a long prompt takes the full `prefillChunk`, and short ones (at most
//     a chunk each) fill the whole batch, so that requests arriving together start together
//     (the JS queue keeps the loop paused while their submissions are in line);
//   - each prompt waiting past the first widens these bounds: with W prompts not yet fully
//     evaluated, a step takes up to W chunks of prompt tokens, and while sequences generate
//     it may cost kMixedStepCost + W - 1 decode-only steps. Running streams slow down in
//     proportion to the users still waiting for a first token, and a burst of long prompts is
//     not evaluated 16 tokens a step for the sake of the one stream that started first (8
//     prompts of 500 tokens arriving together on the 1B model, 2 threads: 30.8 -> 27.2 s to
//     the last of their 32 tokens, medians of 3 alternating runs);
//   so a long prompt arriving mid-stream delays the running streams by a bounded share of a
//   step (about 2x their inter-token time at most, or the floor's cost on a model where even
//   16 prompt tokens cost more), not by its length. The price: on a large model a long prompt
//   joining busy streams is evaluated in many small steps (a slower time to first token).
//
// A beam search (submitBeams) is one more participant: its prompt is prefilled like any
// other, then every step holds each live beam's last token (all of them or none: a group is
// not split), and after the step the beams are ranked and expanded here (native/beams.h),
// sequence copies included, with no JavaScript in between.
//
// Other calls on the context (forward, sample, KV operations, state) run between steps: the
// JS queue pauses the loop (pause() resolves once the step in flight is done), runs its
// call, and resumes it. dispose stops the loop within one step (llama_decode is aborted
// through the context's abort callback) and rejects every generation with ERR_DISPOSED.
//
// Shared control words (Int32Array on a SharedArrayBuffer, one per generation):
//   ctrl[0] abort     JS sets it: end now, keep the tokens the consumer took (reason "aborted")
//   ctrl[1] leave     JS sets it: the consumer left (break): same, reason "stop"
//   ctrl[2] consumed  tokens the consumer has taken (JS stores it as it yields)
//   ctrl[3] paused    set here while the buffer is full (JS calls wake() after it reads)
#pragma once

#include "common.h"
#include "context.h"
#include "sampling.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace llamafuse {

struct SchedSlot;

class NativeScheduler : public Napi::ObjectWrap<NativeScheduler> {
public:
    static Napi::Function define(Napi::Env env);
    // new NativeScheduler(context, { batchSize, prefillChunk })
    NativeScheduler(const Napi::CallbackInfo & info);
    ~NativeScheduler() override;
    // Ends every generation and joins the thread (close(), the destructor, env teardown).
    void stop_thread();

private:
    Napi::Value Submit(const Napi::CallbackInfo & info);
    Napi::Value SubmitBeams(const Napi::CallbackInfo & info);
    Napi::Value Pause(const Napi::CallbackInfo & info);
    Napi::Value Resume(const Napi::CallbackInfo & info);
    Napi::Value Wake(const Napi::CallbackInfo & info);
    Napi::Value Close(const Napi::CallbackInfo & info);
    Napi::Value Stats(const Napi::CallbackInfo & info);

    void loop();
    bool has_work(); // under mu_
    void run_step();
    void start_slot(SchedSlot & s);
    void cancel_slot(SchedSlot & s, const char * reason);
    void fail_slot(SchedSlot & s, const std::string & code, const std::string & message);
    void finish_slot(SchedSlot & s, const char * reason, bool flush_held);
    void release_sequences(SchedSlot & s);
    void clear_beam_sequences(SchedSlot & s);
    void finish_beams(SchedSlot & s, const char * reason);
    void expand_beams(SchedSlot & s, const std::vector<const float *> & rows);
    void sample_next(SchedSlot & s, const float * row);
    void take_token(SchedSlot & s, llama_token t);
    void flush_outboxes(bool force);

    friend class SchedPauseWorker;
    friend class SchedCloseWorker;

    napi_env env_ = nullptr;
    Napi::ObjectReference context_ref_;
    NativeContext * c_ = nullptr;
    int32_t batch_size_ = 512;
    int32_t prefill_chunk_ = 256;

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::unique_ptr<SchedSlot>> incoming_; // submitted, not yet seen by the loop (mu_)
    std::vector<bool> seq_active_;                     // a generation holds this sequence (mu_)
    int pause_requests_ = 0;                           // (mu_)
    bool in_step_ = false;                             // the loop is using the context (mu_)
    bool closing_ = false;                             // (mu_)
    int32_t abort_decode_ = 0;                         // polled inside llama_decode (atomic access)
    std::thread thread_;
    std::mutex join_mu_; // close() and the destructor may both join

    // Loop thread only.
    std::vector<std::unique_ptr<SchedSlot>> slots_; // in arrival order
    std::vector<float> out_;                        // this step's logits rows

    // Adaptive prefill budget (loop thread only; see the step policy above).
    // waiting: prompts not fully evaluated, at least 1 (the step policy's W)
    int32_t prefill_budget(int32_t n_generating, int32_t waiting) const;
    void observe_step(int32_t n_generating, int32_t n_prompt, uint64_t decode_ns);
    std::vector<double> decode_only_ns_; // EMA of a decode-only step's llama_decode time, by generating tokens
    double prompt_token_ns_ = 0;         // EMA of the extra time per prompt token in a mixed step
    int32_t last_mixed_prompt_ = 0;      // prompt tokens of the last mixed step

    // Counters (loop thread writes, Stats reads: relaxed atomics).
    std::atomic<uint64_t> steps_{0}, decoded_tokens_{0}, decode_ns_{0}, sample_ns_{0}, step_ns_{0};
    std::atomic<uint64_t> acquire_ns_{0}, text_ns_{0}; // busy flag; token text, stops and delivery
    // Steps that held prompt tokens beside generating ones, their prompt tokens in all, the
    // most in one of them, and the last budget given to one.
    std::atomic<uint64_t> mixed_steps_{0}, mixed_prompt_tokens_{0};
    std::atomic<int32_t> mixed_prompt_max_{0}, prefill_budget_last_{0};
    // Generations' last tokens decoded without their logits row (NativeContext::owe_logits).
    std::atomic<uint64_t> rows_skipped_{0};
};

} // namespace llamafuse
