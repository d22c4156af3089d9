// The native generation loop: decode and sample in one worker, with no thread-pool hop per
// token. Tokens stream back through a thread-safe function that coalesces: while one delivery
// is pending on the event loop, new tokens join it, so a slow consumer gets batches and a
// fast one gets each token as it comes. JS steers the loop through a shared Int32Array:
//   ctrl[0] abort   (polled between tokens and inside llama_decode)
//   ctrl[1] stop    (a stop string matched, or the consumer left: finish after this token)
// It never waits for the consumer (who may await other calls on the same context, queued
// behind this one); a consumer that leaves early costs at most the tokens decoded meanwhile,
// which src/generate.ts then trims from the KV cache.
// The loop applies no policy: which sampler, when to stop on EOG, whether to reset the
// sampler and feed it the prompt all come resolved from src/generate.ts.
#pragma once

#include <napi.h>

namespace llamafuse {

// generate(context, sampler, prompt: Int32Array, seq, opts, ctrl: Int32Array, onTokens)
//   opts: { maxTokens, stopOnEog, resetSampler, acceptPrompt }
//   → Promise<{ reason, tail: Int32Array, generated }>
Napi::Value generate_start(const Napi::CallbackInfo & info);

} // namespace llamafuse
