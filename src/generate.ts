// ctx.generate(): a generation on one sequence of a context, run by the context's native
// scheduler (native/scheduler.cpp) together with every other generation on it. This side
// resolves options, applies the prompt cache (keeps the longest cached prefix, evaluates the
// rest), turns delivered (token, bytes) batches into text steps (UTF-8 safe), tells the loop
// how far the consumer has read (backpressure) and whether it left, and keeps the context's
// token list exact.
import type { NativeContext } from "./binding.js";
import type { Context } from "./context.js";
import { LlamaError, abortedError, disposedError, fromNative } from "./errors.js";
import { resolveSampling, type ResolvedSamplingConfig, type SamplingOptions } from "./sampling.js";
import type { NativeScheduler, NativeSchedulerReason, NativeSubmitResult, NativeTokensCallback } from "./scheduler-native.js";
import { toTokenArray } from "./tokens.js";
import { invalidOption, is, optBool, optInt, optSignal, optionsObject } from "./validate.js";

export interface GenerateOptions extends SamplingOptions {
    /** Most tokens to generate. @default 256 */
    maxTokens?: number;
    /**
     * Strings that end generation. They are matched across token boundaries and never
     * emitted; text that could be the start of one is held back until it cannot. The tokens
     * up to the one that completed the match stay in the KV cache.
     */
    stop?: string | string[];
    /** End at an end-of-generation token (which is neither emitted nor decoded). @default true */
    stopOnEog?: boolean;
    /** Stops generation at once; the iterator throws ERR_ABORTED. */
    signal?: AbortSignal;
    /**
     * Tokens the scheduler may run ahead of the consumer. When that many are waiting unread,
     * this sequence pauses (the others go on) until the consumer reads. @default 64
     */
    bufferTokens?: number;
    /** The sequence to generate on. @default 0 */
    sequence?: number;
    /**
     * false: the prompt is the sequence's whole content. The longest prefix it shares with
     * what the sequence already holds is kept (prompt cache), the rest of the sequence is
     * removed, and only the remainder of the prompt is evaluated (at least its last token,
     * for fresh logits). true: the prompt is appended to what the sequence holds. An empty
     * prompt always continues from the sequence's last logits. @default false
     */
    continue?: boolean;
    /**
     * Log-probabilities with each step: N >= 0 gives step.logProb and step.top (the N most
     * likely tokens, best first). Unlike ctx.sample's logProbs (the distribution the sampler
     * chain left), these are the model's own: the float64 log-softmax of the logits for that
     * position, before bias, penalties, grammar, temperature or truncation, as the OpenAI
     * API's logprobs and llama-server's n_probs report them. Computed in the native loop, only
     * when asked. @default none
     */
    logProbs?: number;
}

export interface GenerateStep {
    token: number;
    /** Text this step releases: "" while a character is incomplete or a stop string may be starting. */
    text: string;
    /** With options.logProbs: the model's log-probability of this token. */
    logProb?: number;
    /** With options.logProbs = N > 0: the N most likely tokens at this position, best first (ties: lower id). */
    top?: { token: number; logProb: number }[];
}

/** What the iterator returns when it ends normally (for await ignores it). */
export interface GenerateSummary {
    reason: Exclude<NativeSchedulerReason, "aborted" | "contextFull" | "done">;
    /** Tokens generated and kept in the KV cache. */
    tokens: number;
    /** Tokens in the prompt. */
    promptTokens: number;
    /** Prompt tokens found already in the sequence's cache and not evaluated again. */
    reusedTokens: number;
    /** Prompt tokens evaluated (promptTokens - reusedTokens). */
    evaluatedTokens: number;
}

const GENERATE_KEYS = ["maxTokens", "stop", "stopOnEog", "signal", "sequence", "continue", "bufferTokens"] as const;
// The control words shared with the native loop (see native/scheduler.h).
const CTRL_ABORT = 0, CTRL_LEAVE = 1, CTRL_CONSUMED = 2, CTRL_PAUSED = 3;

interface Plan {
    seq: number;
    maxTokens: number;
    stops: string[];
    stopOnEog: boolean;
    signal: AbortSignal | undefined;
    continue: boolean;
    bufferTokens: number;
    sampling: ResolvedSamplingConfig;
    /** -1: none. */
    logProbs: number;
}

function plan(ctx: Context, options: unknown): Plan {
    const o = optionsObject("options", options);
    const sampling = resolveSampling(o, ctx.model.info.vocabSize, ctx.contextSize, GENERATE_KEYS, "generate");
    const seq = ctx.checkSequence("sequence", o.sequence ?? 0);
    const maxTokens = optInt(o, "maxTokens", 256, 0, 2 ** 31 - 1);
    const stopOnEog = optBool(o, "stopOnEog", true);
    const signal = optSignal(o);
    const cont = optBool(o, "continue", false);
    const bufferTokens = optInt(o, "bufferTokens", 64, 1, 1 << 20);
    const stopRaw = o.stop ?? [];
    const stops = is.string(stopRaw) ? [stopRaw] : stopRaw;
    if (!Array.isArray(stops) || !stops.every((s) => is.string(s) && s.length > 0)) {
        throw invalidOption("stop", "a non-empty string or an array of them", o.stop);
    }
    return { seq, maxTokens, stops: stops as string[], stopOnEog, signal, continue: cont, bufferTokens, sampling, logProbs: sampling.options.logProbs };
}

/**
 * Generates from `promptOrTokens` (a string is tokenized with the model's special tokens,
 * e.g. BOS; tokens are used as given; [] continues from the sequence's last logits).
 * Options are checked here, synchronously; errors from the run come from the iterator.
 * The generation starts at the iterator's first next(); a second generation on a sequence
 * that is still generating gets ERR_BUSY there.
 */
export function generate(ctx: Context, promptOrTokens: string | ArrayLike<number>, options?: GenerateOptions): AsyncGenerator<GenerateStep, GenerateSummary> {
    if (ctx.disposed) throw disposedError("context");
    // Steps carry their text, and llama.cpp has none to give without a tokenizer (it asserts).
    if (ctx.model.info.vocabType === "none") throw new LlamaError("ERR_UNSUPPORTED", "this model has no tokenizer (tokenizer.ggml.model is \"none\"): generate needs token text; use forward() with token ids");
    const p = plan(ctx, options);
    const tokens = is.string(promptOrTokens) ? null : toTokenArray("tokens", promptOrTokens, ctx.model.info.vocabSize);
    if (p.signal?.aborted) throw abortedError("generate", p.signal.reason);
    return run(ctx, is.string(promptOrTokens) ? promptOrTokens : null, tokens, p);
}

async function* run(ctx: Context, text: string | null, given: Int32Array | null, p: Plan): AsyncGenerator<GenerateStep, GenerateSummary> {
    ctx.claimSequence(p.seq);
    const ctrl = new Int32Array(new SharedArrayBuffer(4 * 4));
    const queue: GenerateStep[] = [];
    let wake: (() => void) | null = null;
    const notify = () => {
        wake?.();
        wake = null;
    };
    let scheduler: NativeScheduler | null = null;
    const poke = () => scheduler?.wake(); // the loop may be waiting for this sequence's consumer
    const onAbort = () => {
        Atomics.store(ctrl, CTRL_ABORT, 1);
        poke();
        notify();
    };
    p.signal?.addEventListener("abort", onAbort, { once: true });

    const decoder = new TextDecoder("utf-8");
    let prompt: Int32Array = new Int32Array(0);
    let reused = 0;
    let lastToken = -1;
    let consumed = 0;
    let done: Promise<NativeSubmitResult> | null = null;
    let result = null as NativeSubmitResult | null;
    let failure = null as unknown;
    let left = true; // the consumer stopped before the end (break, throw, abort)

    // Runs in the native loop's delivery callback: it must not throw (there is nobody to
    // catch it), so a failure is recorded and ends the generation instead.
    const onTokens: NativeTokensCallback = (ids, bytes, ends, logProbs, topIds, topLogProbs) => {
        try {
            let start = 0;
            const n = p.logProbs;
            for (let i = 0; i < ids.length; i++) {
                const step: GenerateStep = { token: ids[i]!, text: decoder.decode(bytes.subarray(start, ends[i]!), { stream: true }) };
                if (n >= 0) {
                    step.logProb = logProbs![i]!;
                    if (n > 0) step.top = Array.from(topIds!.subarray(i * n, (i + 1) * n), (token, k) => ({ token, logProb: topLogProbs![i * n + k]! }));
                }
                queue.push(step);
                start = ends[i]!;
            }
        } catch (err) {
            failure ??= err;
            Atomics.store(ctrl, CTRL_LEAVE, 1);
            poke();
        }
        notify();
    };

    try {
        prompt = given ?? (await ctx.model.tokenize(text!, { addSpecial: true }));
        // The job only starts the generation (and returns its completion, wrapped so that the
        // queue does not wait for it): other calls on the context run between its steps.
        const started = await ctx.enqueue(async (native) => {
            if (Atomics.load(ctrl, CTRL_ABORT)) throw abortedError("generate", p.signal?.reason);
            const cache = ctx.sequenceTokens;
            let evaluate = prompt;
            if (!p.continue && prompt.length > 0) {
                // Prompt cache: keep the common prefix, drop the rest, evaluate the remainder (at
                // least the last token: its logits are not kept once later tokens were decoded).
                reused = Math.min(cache.commonPrefix(p.seq, prompt), prompt.length - 1);
                if (!native.kvRemove(p.seq, reused, -1)) {
                    native.kvRemove(p.seq, 0, -1); // memory that cannot cut a tail (recurrent): start over
                    reused = 0;
                }
                cache.set(p.seq, prompt.subarray(0, reused));
                evaluate = prompt.subarray(reused);
            }
            const held = cache.get(p.seq);
            lastToken = held && held.length > 0 ? held[held.length - 1]! : -1;
            const sampler = await ctx.samplerFor(p.seq, p.sampling, p.signal);
            scheduler = ctx.scheduler(native);
            const submitted = scheduler.submit(p.seq, sampler, evaluate, prompt, {
                maxTokens: p.maxTokens, stopOnEog: p.stopOnEog, resetSampler: true, buffer: p.bufferTokens, lastToken, logProbs: p.logProbs,
            }, p.stops.map((s) => Buffer.from(s, "utf8")), ctrl, onTokens);
            ctx.trackGeneration(submitted);
            return { completion: submitted.then(
                (r) => {
                    // The sequence now holds the prompt (unless it was cancelled before it was
                    // evaluated) and the kept tokens.
                    if (!r.exact) cache.invalidate(p.seq);
                    else {
                        if (r.promptKept) cache.append(p.seq, evaluate);
                        cache.append(p.seq, r.kept);
                    }
                    // A character left incomplete at the very end goes out as U+FFFD, with
                    // the last step if the consumer has not taken it yet.
                    const tail = decoder.decode();
                    if (tail && queue.length > 0) queue[queue.length - 1]!.text += tail;
                    result = r;
                    notify();
                    return r;
                },
                (err: unknown) => {
                    cache.invalidate(p.seq);
                    failure ??= err;
                    notify();
                    throw err;
                },
            ) };
        });
        done = started.completion;
        done.catch(() => {});

        for (;;) {
            if (p.signal?.aborted) throw abortedError("generate", p.signal.reason);
            if (failure) throw fromNative(failure);
            if (queue.length > 0) {
                const step = queue.shift()!;
                Atomics.store(ctrl, CTRL_CONSUMED, ++consumed);
                if (Atomics.load(ctrl, CTRL_PAUSED)) poke();
                yield step;
                continue;
            }
            if (result) break;
            await new Promise<void>((r) => (wake = r));
        }
        const r = result as NativeSubmitResult;
        left = false;
        if (r.reason === "aborted") throw abortedError("generate", p.signal?.reason);
        if (r.reason === "contextFull") {
            // A token's text goes out when it is sampled, before it is decoded: the one that no
            // longer fitted may have been read already.
            const unkept = consumed > r.kept.length ? "; the last token read did not fit and is not in the cache" : "";
            throw new LlamaError("ERR_CONTEXT_FULL", `the context filled up after ${r.kept.length} generated tokens (they were kept${unkept})`);
        }
        return { reason: r.reason as GenerateSummary["reason"], tokens: r.kept.length, promptTokens: prompt.length, reusedTokens: reused, evaluatedTokens: prompt.length - reused };
    } finally {
        p.signal?.removeEventListener("abort", onAbort);
        if (done && !result) {
            // The consumer left while the loop runs: it ends within a step, keeping the tokens
            // that were taken (and their logits).
            Atomics.store(ctrl, CTRL_LEAVE, 1);
            poke();
            await done.catch(() => {});
        } else if (left && result && consumed < result.kept.length && !ctx.disposed) {
            // The loop had finished ahead of a consumer that left: trim to what it took.
            const r = result;
            await ctx.enqueue((native) => trim(native, r.kept, consumed)).catch(() => {});
        }
        ctx.releaseSequence(p.seq);
    }

    // Drops generated tokens [k, ...) from the cache and restores the logits after token k-1
    // by decoding it again (later tokens overwrote them).
    async function trim(native: NativeContext, kept: Int32Array, k: number): Promise<void> {
        const gen0 = native.kvPositions(p.seq).max + 1 - kept.length;
        const redo = k > 0 ? kept[k - 1]! : prompt.length > 0 ? prompt[prompt.length - 1]! : lastToken;
        const from = redo >= 0 ? gen0 + k - 1 : gen0;
        native.kvRemove(p.seq, from, -1);
        ctx.sequenceTokens.removed(p.seq, from, -1);
        if (redo >= 0) {
            await native.forward(Int32Array.of(redo), Int32Array.of(p.seq), Uint8Array.of(1), new Int32Array(new SharedArrayBuffer(4)));
            ctx.sequenceTokens.append(p.seq, [redo]);
        }
    }
}
