// Beam search inside the context's scheduler (native/scheduler.cpp, native/beams.h): each
// live beam is a sequence of the context; beams share the prompt's cells through sequence
// copies; every scheduler step holds one token per live beam, in the same llama_decode as
// every other generation on the context, and after the step the beams are ranked and
// expanded natively (no JavaScript per step). The slots of beams that die or finish are
// reused by the children of the ones that live on.
//
// The search holds its sequences for its whole run, as a generation holds its own: a
// generate, forward or kv call on one of them gets ERR_BUSY, and the search gets ERR_BUSY
// when one of them is generating. Sequences not given to it stay free for other work.
import type { Context } from "./context.js";
import { LlamaError, abortedError, fromNative } from "./errors.js";
import type { NativeBeamsResult } from "./scheduler-native.js";
import { toTokenArray } from "./tokens.js";
import { checkKnownKeys, invalidOption, is, optBool, optInt, optNumber, optSignal, optionsObject } from "./validate.js";

export interface BeamSearchOptions {
    /** Beam width; the context needs at least this many sequences. @default 4 (or sequences.length) */
    beams?: number;
    /**
     * The sequences the beams live on, held (and emptied) for the search's run; others stay
     * free for concurrent generations. @default [0, 1, ..., beams - 1]
     */
    sequences?: number[];
    /** Most tokens per hypothesis. @default 32 */
    maxTokens?: number;
    /** score = logProb / length^lengthPenalty (0: plain log-probability). @default 1 */
    lengthPenalty?: number;
    /** Strings that finish a hypothesis (its text is cut before the match). */
    stop?: string | string[];
    /** An end-of-generation token finishes a hypothesis (counted in its logProb, not in its tokens). @default true */
    stopOnEog?: boolean;
    signal?: AbortSignal;
}

export interface BeamHypothesis {
    tokens: number[];
    text: string;
    /** Sum of the model's log-probabilities of the chosen tokens (natural log). */
    logProb: number;
    score: number;
    /** Why it ended: an end-of-generation token, a stop string, maxTokens, or a full context. */
    stopReason: "eog" | "stop" | "maxTokens" | "contextFull";
}

/**
 * Beam search from `tokens` (the prompt, as given). Uses sequences 0..beams-1 of the context
 * (or options.sequences), clearing them first and last. Returns up to `beams` hypotheses,
 * best score first.
 */
export async function beamSearch(ctx: Context, tokens: ArrayLike<number>, options?: BeamSearchOptions): Promise<BeamHypothesis[]> {
    const o = optionsObject("options", options);
    checkKnownKeys("beamSearch", o, ["beams", "maxTokens", "lengthPenalty", "stop", "stopOnEog", "signal", "sequences"]);
    const given = o.sequences;
    if (given !== undefined && (!Array.isArray(given) || given.length === 0)) throw invalidOption("sequences", "a non-empty array of sequence ids", given);
    const width = optInt(o, "beams", given ? (given as unknown[]).length : 4, 1, 256);
    const maxTokens = optInt(o, "maxTokens", 32, 1, 2 ** 31 - 1);
    const lengthPenalty = optNumber(o, "lengthPenalty", 1, -10, 10);
    const stopOnEog = optBool(o, "stopOnEog", true);
    const signal = optSignal(o);
    const stopRaw = o.stop ?? [];
    const stops = is.string(stopRaw) ? [stopRaw] : stopRaw;
    if (!Array.isArray(stops) || !stops.every((s) => is.string(s) && s.length > 0)) throw invalidOption("stop", "a non-empty string or an array of them", o.stop);
    const prompt = toTokenArray("tokens", tokens, ctx.model.info.vocabSize, false);
    if (ctx.sequences < width) {
        throw new LlamaError("ERR_INVALID_OPTION", `beamSearch with ${width} beams needs a context with at least ${width} sequences (this one has ${ctx.sequences}: create it with { sequences: ${width} })`);
    }
    if (width > ctx.batchSize) throw invalidOption("beams", `at most the context's batchSize (${ctx.batchSize}): every live beam is in each step`, width);
    const slots = given ? (given as unknown[]).map((v, i) => ctx.checkSequence(`sequences[${i}]`, v)) : Array.from({ length: width }, (_, i) => i);
    if (slots.length !== width) throw invalidOption("sequences", `${width} sequence ids (one per beam)`, given);
    if (new Set(slots).size !== slots.length) throw invalidOption("sequences", "distinct sequence ids", given);
    if (signal?.aborted) throw abortedError("beamSearch", signal.reason);

    for (const s of slots) {
        if (ctx.sequenceBusy(s)) throw new LlamaError("ERR_BUSY", `beamSearch: sequence ${s} is generating (give the search other sequences with options.sequences, or wait for that generation to end)`);
    }
    for (const s of slots) ctx.claimSequence(s);
    const ctrl = new Int32Array(new SharedArrayBuffer(4 * 4));
    let wake: (() => void) | null = null;
    const onAbort = () => {
        Atomics.store(ctrl, 0, 1); // CTRL_ABORT (see native/scheduler.h)
        wake?.();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    let r: NativeBeamsResult;
    try {
        const started = await ctx.enqueue((native) => {
            const scheduler = ctx.scheduler(native);
            wake = () => scheduler.wake();
            const submitted = scheduler.submitBeams(Int32Array.from(slots), prompt, { maxTokens, lengthPenalty, stopOnEog }, (stops as string[]).map((s) => Buffer.from(s, "utf8")), ctrl, () => {});
            ctx.trackGeneration(submitted);
            // The queue only starts the search; other calls run between its steps.
            return { completion: submitted };
        });
        try {
            r = await started.completion;
        } catch (err) {
            throw fromNative(err);
        } finally {
            // The search empties its sequences, whatever the outcome.
            for (const s of slots) ctx.sequenceTokens.set(s, []);
        }
    } finally {
        signal?.removeEventListener("abort", onAbort);
        for (const s of slots) ctx.releaseSequence(s);
    }
    if (r.reason === "aborted") throw abortedError("beamSearch", signal?.reason);
    const decoder = new TextDecoder();
    return r.hypotheses.map((h) => ({ tokens: Array.from(h.tokens), text: decoder.decode(h.bytes), logProb: h.logProb, score: h.score, stopReason: h.stopReason as BeamHypothesis["stopReason"] }));
}
