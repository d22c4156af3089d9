// ctx.generate(): the native loop decodes and samples; this side turns token batches into
// text steps (UTF-8 safe, stop strings held back and cut), steers the loop through a shared
// Int32Array, and leaves the KV cache holding exactly the tokens that were kept.
import { binding, type NativeContext, type NativeGenerateReason } from "./binding.js";
import type { Context } from "./context.js";
import { LlamaError, abortedError, disposedError, fromNative } from "./errors.js";
import { SAMPLING_KEYS, contextSampler, resolveSampling, type ResolvedSamplingConfig, type SamplingOptions } from "./sampling.js";
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
}

export interface GenerateStep {
    token: number;
    /** Text this step releases: "" while a character is incomplete or a stop string may be starting. */
    text: string;
}

/** What the iterator returns when it ends normally (for await ignores it). */
export interface GenerateSummary {
    reason: Exclude<NativeGenerateReason, "aborted" | "contextFull">;
    /** Tokens generated and kept in the KV cache. */
    tokens: number;
    /** Tokens in the prompt. */
    promptTokens: number;
    /** Prompt tokens found already in the sequence's cache and not evaluated again. */
    reusedTokens: number;
    /** Prompt tokens evaluated (promptTokens - reusedTokens). */
    evaluatedTokens: number;
}

const GENERATE_KEYS = ["maxTokens", "stop", "stopOnEog", "signal", "sequence", "continue"] as const;
const CTRL_ABORT = 0, CTRL_STOP = 1;

interface Plan {
    seq: number;
    maxTokens: number;
    stops: string[];
    stopOnEog: boolean;
    signal: AbortSignal | undefined;
    continue: boolean;
    sampling: ResolvedSamplingConfig;
}

function plan(ctx: Context, options: unknown): Plan {
    const o = optionsObject("options", options);
    const sampling = resolveSampling(o, ctx.model.info.vocabSize, ctx.contextSize, GENERATE_KEYS, "generate");
    if (sampling.options.logProbs !== -1) throw new LlamaError("ERR_INVALID_OPTION", "logProbs is not available in generate (use ctx.sample)");
    const seq = ctx.checkSequence("sequence", o.sequence ?? 0);
    const maxTokens = optInt(o, "maxTokens", 256, 0, 2 ** 31 - 1);
    const stopOnEog = optBool(o, "stopOnEog", true);
    const signal = optSignal(o);
    const cont = optBool(o, "continue", false);
    const stopRaw = o.stop ?? [];
    const stops = is.string(stopRaw) ? [stopRaw] : stopRaw;
    if (!Array.isArray(stops) || !stops.every((s) => is.string(s) && s.length > 0)) {
        throw invalidOption("stop", "a non-empty string or an array of them", o.stop);
    }
    return { seq, maxTokens, stops: stops as string[], stopOnEog, signal, continue: cont, sampling };
}

/** Text of pending tokens, released only when no stop string can start inside it. */
class StopMatcher {
    readonly #stops: string[];
    #pending: GenerateStep[] = [];
    #held = "";
    constructor(stops: string[]) {
        this.#stops = stops;
    }

    /** Adds a token's text; returns steps now safe to emit and whether a stop string matched. */
    push(step: GenerateStep): { out: GenerateStep[]; matched: boolean } {
        this.#pending.push(step);
        this.#held += step.text;
        let at = -1;
        for (const s of this.#stops) {
            const i = this.#held.indexOf(s);
            if (i >= 0 && (at < 0 || i < at)) at = i;
        }
        if (at >= 0) return { out: this.#release(at, true), matched: true };
        let boundary = this.#held.length;
        for (const s of this.#stops) {
            for (let n = Math.min(s.length - 1, this.#held.length); n > 0; n--) {
                if (this.#held.endsWith(s.slice(0, n))) {
                    boundary = Math.min(boundary, this.#held.length - n);
                    break;
                }
            }
        }
        return { out: this.#release(boundary, false), matched: false };
    }

    /** Everything still pending (generation ended with no match). */
    flush(extra: string): GenerateStep[] {
        if (this.#pending.length > 0) this.#pending[this.#pending.length - 1]!.text += extra;
        return this.#release(Infinity, false);
    }

    // Releases the tokens whose text ends at or before `upTo`; with `cut`, the token that
    // straddles it is released too, its text cut at `upTo`, and the rest is dropped.
    #release(upTo: number, cut: boolean): GenerateStep[] {
        const out: GenerateStep[] = [];
        let end = 0;
        let k = 0;
        for (; k < this.#pending.length; k++) {
            const t = this.#pending[k]!;
            if (end + t.text.length <= upTo) {
                out.push(t);
                end += t.text.length;
                continue;
            }
            if (cut && end < upTo) out.push({ token: t.token, text: t.text.slice(0, upTo - end) });
            break;
        }
        if (cut) {
            this.#pending = [];
            this.#held = "";
        } else {
            this.#pending = this.#pending.slice(k);
            this.#held = this.#held.slice(end);
        }
        return out;
    }
}

/**
 * Generates from `promptOrTokens` (a string is tokenized with the model's special tokens,
 * e.g. BOS; tokens are used as given; [] continues from the sequence's last logits).
 * Options are checked here, synchronously; errors from the run come from the iterator.
 */
export function generate(ctx: Context, promptOrTokens: string | ArrayLike<number>, options?: GenerateOptions): AsyncGenerator<GenerateStep, GenerateSummary> {
    if (ctx.disposed) throw disposedError("context");
    const p = plan(ctx, options);
    const tokens = is.string(promptOrTokens) ? null : toTokenArray("tokens", promptOrTokens, ctx.model.info.vocabSize);
    if (p.signal?.aborted) throw abortedError("generate", p.signal.reason);
    return run(ctx, is.string(promptOrTokens) ? promptOrTokens : null, tokens, p);
}

async function* run(ctx: Context, text: string | null, given: Int32Array | null, p: Plan): AsyncGenerator<GenerateStep, GenerateSummary> {
    const prompt = given ?? (await ctx.model.tokenize(text!, { addSpecial: true }));
    // The model's native handle, taken now: its memory lives as long as this context does,
    // even once model.dispose() has begun (which waits for the context).
    const nativeModel = ctx.model.native;
    const piecesOf = (batch: Int32Array): Uint8Array[] => {
        const { bytes, offsets } = nativeModel.tokenPieces(batch, false);
        return Array.from(batch, (_, i) => bytes.subarray(offsets[i]!, offsets[i + 1]!));
    };
    const ctrl = new Int32Array(new SharedArrayBuffer(2 * 4));
    const queue: GenerateStep[] = [];
    let wake: (() => void) | null = null;
    const notify = () => {
        wake?.();
        wake = null;
    };
    const onAbort = () => {
        Atomics.store(ctrl, CTRL_ABORT, 1);
        notify();
    };
    p.signal?.addEventListener("abort", onAbort, { once: true });

    const generated: number[] = [];
    const decoder = new TextDecoder("utf-8");
    const matcher = new StopMatcher(p.stops);
    let keep: number | null = null; // tokens to keep once decided (a stop matched, or the consumer left)
    let jobDone = false;
    let nativeDone = false;
    let failure: unknown = null;
    let reason = "maxTokens" as NativeGenerateReason;
    let consumed = 0;
    let base = 0;
    let reused = 0;

    // Runs inside the native loop's delivery callback: it must not throw (an exception there
    // would be uncaught), so a failure is recorded and stops the loop instead.
    const take = (batch: Int32Array) => {
        try {
            const pieces = keep === null ? piecesOf(batch) : [];
            for (let i = 0; i < batch.length; i++) {
                generated.push(batch[i]!); // every decoded token, so a trim knows what the cache holds
                if (keep !== null) continue; // past a stop: trimmed away later
                const r = matcher.push({ token: batch[i]!, text: decoder.decode(pieces[i], { stream: true }) });
                queue.push(...r.out);
                if (r.matched) {
                    keep = generated.length;
                    Atomics.store(ctrl, CTRL_STOP, 1);
                }
            }
        } catch (err) {
            failure ??= err;
            Atomics.store(ctrl, CTRL_STOP, 1);
        }
        notify();
    };

    const job = ctx.enqueue(async (native) => {
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
        base = native.kvPositions(p.seq).max + 1 + evaluate.length;
        const sampler = await contextSampler(ctx, p.seq, p.sampling);
        let r: Awaited<ReturnType<ReturnType<typeof binding>["generate"]>>;
        try {
            r = await binding().generate(native, sampler, evaluate, p.seq, {
                maxTokens: p.maxTokens, stopOnEog: p.stopOnEog, resetSampler: true, acceptPrompt: true,
            }, ctrl, take);
        } catch (err) {
            cache.invalidate(p.seq); // how much of the prompt stayed decoded is not known here
            throw err;
        }
        take(r.tail);
        cache.append(p.seq, evaluate);
        cache.append(p.seq, generated);
        nativeDone = true; // from here on, a consumer that leaves must trim by itself
        reason = keep !== null && r.reason === "stop" ? "stop" : r.reason;
        if (keep === null && reason !== "aborted") queue.push(...matcher.flush(decoder.decode()));
        if (keep !== null) await trim(native, keep);
    });
    job.then(
        () => {
            jobDone = true;
            notify();
        },
        (err) => {
            jobDone = true;
            failure = err;
            notify();
        },
    );

    // Drops generated tokens [k, ...) from the KV cache and restores the logits after token
    // k-1 by decoding it again (its logits were overwritten by the tokens after it).
    async function trim(native: NativeContext, k: number): Promise<void> {
        if (k >= generated.length) return;
        const redo = k > 0 ? generated[k - 1]! : prompt.length > 0 ? prompt[prompt.length - 1]! : -1;
        const from = redo >= 0 ? base + k - 1 : base;
        native.kvRemove(p.seq, from, -1);
        ctx.sequenceTokens.removed(p.seq, from, -1);
        if (redo >= 0) {
            await native.forward(Int32Array.of(redo), Int32Array.of(p.seq), Uint8Array.of(1), new Int32Array(new SharedArrayBuffer(4)));
            ctx.sequenceTokens.append(p.seq, [redo]);
        }
        generated.length = k;
    }

    try {
        for (;;) {
            if (p.signal?.aborted) throw abortedError("generate", p.signal.reason);
            if (queue.length > 0) {
                const step = queue.shift()!;
                consumed++;
                yield step;
                continue;
            }
            if (jobDone) break;
            await new Promise<void>((r) => (wake = r));
        }
        if (failure) throw fromNative(failure);
        if (reason === "aborted") throw abortedError("generate", p.signal?.reason);
        if (reason === "contextFull") {
            throw new LlamaError("ERR_CONTEXT_FULL", `the context filled up after ${generated.length} generated tokens (they were kept)`);
        }
        return { reason, tokens: generated.length, promptTokens: prompt.length, reusedTokens: reused, evaluatedTokens: prompt.length - reused };
    } finally {
        p.signal?.removeEventListener("abort", onAbort);
        if (keep === null) {
            // The consumer left early (break, throw, abort): keep what it took.
            keep = consumed;
            Atomics.store(ctrl, CTRL_STOP, 1);
            if (nativeDone && !failure && keep < generated.length) {
                const k = keep;
                await ctx.enqueue((native) => trim(native, k)).catch(() => {});
            }
        }
    }
}
