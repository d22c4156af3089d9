// The shape of native/scheduler.cpp as src/ sees it (merged into NativeBinding in binding.ts).
import type { NativeContext, NativeSampler } from "./binding.js";

export type NativeSchedulerReason = "maxTokens" | "eog" | "stop" | "aborted" | "contextFull" | "done";

export interface NativeSubmitOptions {
    maxTokens: number;
    stopOnEog: boolean;
    resetSampler: boolean;
    /** Tokens delivered and not yet consumed before the sequence waits for its consumer. */
    buffer: number;
    /** The sequence's last token before this call, or -1 (used to restore logits after a cancel). */
    lastToken: number;
    /**
     * -1: none. n >= 0: each token's log-probability under the model's logits (float64
     * log-softmax, before the sampler chain) and the n most likely tokens of that row.
     */
    logProbs: number;
}

/**
 * Delivered tokens: token i's text is bytes[ends[i-1] .. ends[i]). With options.logProbs = n
 * >= 0 also logProbs[i] and, for token i, topIds/topLogProbs[i*n .. (i+1)*n), best first.
 */
export type NativeTokensCallback = (ids: Int32Array, bytes: Buffer, ends: Uint32Array, logProbs?: Float64Array, topIds?: Int32Array, topLogProbs?: Float64Array) => void;

export interface NativeSubmitResult {
    reason: NativeSchedulerReason;
    /** Generated tokens the cache keeps (every decoded one, or those the consumer took when it left). */
    kept: Int32Array;
    /** false: the prompt was not (fully) evaluated and nothing of it stayed in the cache. */
    promptKept: boolean;
    /** false: the cache holds something the token list cannot describe (invalidate it). */
    exact: boolean;
}

export interface NativeBeamHypothesis {
    tokens: Int32Array;
    /** The hypothesis's text as bytes (cut before a stop string). */
    bytes: Buffer;
    logProb: number;
    score: number;
    stopReason: "eog" | "stop" | "maxTokens" | "contextFull" | "aborted";
}

export interface NativeBeamsResult extends NativeSubmitResult {
    /** Best score first, at most one per sequence. */
    hypotheses: NativeBeamHypothesis[];
}

export interface NativeSchedulerStats {
    steps: number;
    decodedTokens: number;
    stepNs: number;
    decodeNs: number;
    sampleNs: number;
    /** Waiting for the context's busy flag. */
    acquireNs: number;
    /** Token text, stop strings and handing tokens to JS. */
    textNs: number;
    /** Steps that held prompt tokens beside generating ones (their prompt tokens in all, the most in one). */
    mixedSteps: number;
    mixedPromptTokens: number;
    mixedPromptTokensMax: number;
    /** The last time-bounded prompt budget of such a step (scheduler.h: adaptive prefill budget). */
    prefillBudget: number;
    /**
     * Generations whose last token went into the cache without its logits row (the output
     * head's cost); the logits are computed when something continues from it.
     */
    lastRowsSkipped: number;
}

export interface NativeScheduler {
    /** ctrl: Int32Array over a SharedArrayBuffer: [abort, leave, consumed, paused]. */
    submit(
        seq: number,
        sampler: NativeSampler,
        prompt: Int32Array,
        history: Int32Array,
        options: NativeSubmitOptions,
        stops: Buffer[],
        ctrl: Int32Array,
        onTokens: NativeTokensCallback,
    ): Promise<NativeSubmitResult>;
    /**
     * A beam search in the shared steps: one beam per sequence (seqs[0] takes the prompt),
     * all emptied first and last. Resolves with reason "done", or "aborted" when ctrl's abort
     * or leave was set.
     */
    submitBeams(
        seqs: Int32Array,
        prompt: Int32Array,
        options: { maxTokens: number; lengthPenalty: number; stopOnEog: boolean },
        stops: Buffer[],
        ctrl: Int32Array,
        onTokens: () => void,
    ): Promise<NativeBeamsResult>;
    /** No new step until resume(); resolves when the step in flight is done. */
    pause(): Promise<void>;
    resume(): void;
    /** A consumer read from a full buffer, or set abort/leave. */
    wake(): void;
    /** Ends every generation (ERR_DISPOSED) within one step and joins the loop thread. */
    close(): Promise<void>;
    stats(): NativeSchedulerStats;
}

export interface NativeSchedulerBinding {
    NativeScheduler: new (context: NativeContext, options: { batchSize: number; prefillChunk: number }) => NativeScheduler;
}
