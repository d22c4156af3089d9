// Context: a llama_context for one model. forward() turns tokens into next-token logits,
// for any mix of sequences in one call; kv edits the cache; state saves and restores it.
// Every call goes through one queue per context, so llama.cpp never runs two at once.
import { availableParallelism } from "node:os";
import { binding, type NativeContext, type NativeContextCreateOptions } from "./binding.js";
import { LlamaError, abortedError, disposedError, fromNative } from "./errors.js";
import type { Model, ModelInfo } from "./model.js";
import { SerialQueue, abortFlag } from "./queue.js";
import type { NativeSampler } from "./binding.js";
import { beamSearch, type BeamHypothesis, type BeamSearchOptions } from "./beam-search.js";
import { generate, type GenerateOptions, type GenerateStep, type GenerateSummary } from "./generate.js";
import { SamplerChains, sampleContext, type ResolvedSamplingConfig, type SampleResult, type SamplingOptions } from "./sampling.js";
import type { NativeScheduler, NativeSchedulerStats } from "./scheduler-native.js";
import { loadStateBlob, saveStateBlob, type StateOptions } from "./state.js";
import { SequenceTokens } from "./sequence-tokens.js";
import { toTokenArray } from "./tokens.js";
import { checkKnownKeys, invalidOption, is, optEnum, optInt, optSignal, optionsObject } from "./validate.js";

export const KV_TYPES = { f32: 0, f16: 1, q4_0: 2, q4_1: 3, q5_0: 6, q5_1: 7, q8_0: 8, iq4_nl: 20, bf16: 30 } as const;
export type KvType = keyof typeof KV_TYPES;
export type AttentionMode = "fused" | "ggml";

export interface ContextOptions {
    /** Context size in tokens (llama.cpp rounds it up to a multiple of 256). @default min(trainContextSize, 4096) */
    contextSize?: number;
    /** Most tokens per llama_decode; longer forwards are split. @default 512 */
    batchSize?: number;
    /** Physical micro-batch size. @default min(batchSize, 512) */
    ubatchSize?: number;
    /** Number of sequences (independent streams sharing the cache). @default 1 */
    sequences?: number;
    /** Compute threads. @default defaultThreads() */
    threads?: number;
    /** KV cache type. @default "f16" */
    kvType?: KvType;
    /** Attention kernels: llamafuse's fused kernels (where they accept a shape) or ggml's. @default "fused" when built in, else "ggml" */
    attention?: AttentionMode;
    /**
     * How hard idle worker threads spin before sleeping, 0-100 (ggml's poll level). Spinning
     * keeps the per-op barriers cheap when there are cores to spare; 0 sleeps at once.
     * @default 50
     */
    threadPolling?: number;
    /**
     * Most prompt tokens evaluated per scheduler step while other sequences generate
     * (chunked prefill), per prompt still waiting: a long prompt arriving mid-stream delays
     * each running stream by one chunk per step. Larger: faster prompts; smaller: steadier
     * streams.
     * @default min(batchSize, 256)
     */
    prefillChunk?: number;
}

export interface ResolvedContextOptions {
    /** Exactly what the addon reads (every field resolved). */
    native: NativeContextCreateOptions;
    kvType: KvType;
    prefillChunk: number;
}

const CONTEXT_KEYS = ["contextSize", "batchSize", "ubatchSize", "sequences", "threads", "kvType", "attention", "threadPolling", "prefillChunk"] as const;

/**
 * Compute threads that do not oversubscribe the machine: one core is left for Node's own
 * thread and libuv, and at most 8 (decode is memory-bound; more threads only spin).
 */
export function defaultThreads(): number {
    const cores = availableParallelism();
    return Math.max(1, Math.min(8, cores - 1));
}

export function resolveContextOptions(info: ModelInfo, options: unknown): ResolvedContextOptions {
    const o = optionsObject("options", options);
    checkKnownKeys("createContext", o, CONTEXT_KEYS);
    const contextSize = optInt(o, "contextSize", Math.min(info.trainContextSize > 0 ? info.trainContextSize : 4096, 4096), 1, 1 << 24);
    const batchSize = optInt(o, "batchSize", 512, 1, 1 << 20);
    const ubatchSize = optInt(o, "ubatchSize", Math.min(batchSize, 512), 1, batchSize);
    const sequences = optInt(o, "sequences", 1, 1, 256);
    const threads = optInt(o, "threads", defaultThreads(), 1, 512);
    const kvType = optEnum(o, "kvType", "f16", Object.keys(KV_TYPES) as KvType[]);
    const attention = optEnum<AttentionMode>(o, "attention", binding().hasFusedAttention ? "fused" : "ggml", ["fused", "ggml"]);
    const poll = optInt(o, "threadPolling", 50, 0, 100);
    const prefillChunk = optInt(o, "prefillChunk", Math.min(batchSize, 256), 1, batchSize);
    // Block-quantized caches store K/V rows in blocks of 32: llama.cpp asserts otherwise.
    if (!["f32", "f16", "bf16"].includes(kvType) && info.headDim % 32 !== 0) {
        throw invalidOption("kvType", `"f16", "bf16" or "f32" for this model (head size ${info.headDim} is not a multiple of 32)`, kvType);
    }
    return { native: { contextSize, batchSize, ubatchSize, sequences, threads, kvType: KV_TYPES[kvType], poll, attention }, kvType, prefillChunk };
}

export type LogitsMode = "last" | "all" | "none";

export interface ForwardItem {
    sequence: number;
    tokens: ArrayLike<number>;
    /** Which positions return logits. @default "last" */
    logits?: LogitsMode;
}

export interface ForwardOptions {
    signal?: AbortSignal;
}

/** Logits of one forward call. They are a copy owned by this object: later calls never change them. */
export class ForwardResult {
    readonly #data: Float32Array;
    readonly #rows: Map<number, { first: number; count: number; tokens: number; mode: LogitsMode }>;
    readonly vocabSize: number;

    /** @internal */
    constructor(data: Float32Array, rows: Map<number, { first: number; count: number; tokens: number; mode: LogitsMode }>, vocabSize: number) {
        this.#data = data;
        this.#rows = rows;
        this.vocabSize = vocabSize;
    }

    /** Sequences this forward touched. */
    get sequences(): number[] {
        return [...this.#rows.keys()];
    }

    /**
     * Logits (n_vocab floats) of `sequence` after token `index` of what it was given in this
     * call (default: its last token; negative counts from the end). With logits: "last" only
     * the last token has them.
     */
    logits(sequence: number, index?: number): Float32Array {
        const r = this.#rows.get(sequence);
        if (!r) throw new LlamaError("ERR_INVALID_SEQUENCE", `sequence ${sequence} was not part of this forward`);
        const i = index === undefined ? r.tokens - 1 : index < 0 ? r.tokens + index : index;
        if (!Number.isInteger(i) || i < 0 || i >= r.tokens) throw invalidOption("index", `an integer between ${-r.tokens} and ${r.tokens - 1}`, index);
        let row: number;
        if (r.mode === "all") row = r.first + i;
        else if (r.mode === "last" && i === r.tokens - 1) row = r.first;
        else throw new LlamaError("ERR_NO_LOGITS", `no logits for sequence ${sequence} at index ${i} (this forward asked for logits: "${r.mode}")`);
        return this.#data.subarray(row * this.vocabSize, (row + 1) * this.vocabSize);
    }
}

/** How long queued calls may keep the scheduler paused in a row (see Context.#held). */
const HOLD_MAX_CALLS = 32;
const HOLD_MAX_MS = 50;

/** The scheduler paused across queued calls: since when, and for how many calls. */
interface SchedulerHold {
    paused: Promise<void>;
    calls: number;
    since: number;
}

export class Context {
    readonly model: Model;
    readonly contextSize: number;
    readonly batchSize: number;
    readonly ubatchSize: number;
    readonly sequences: number;
    readonly threads: number;
    readonly kvType: KvType;
    readonly canShift: boolean;
    readonly prefillChunk: number;
    readonly kv: KvCache;
    /** What each sequence holds, token by token (the prompt cache's index). @internal */
    readonly sequenceTokens: SequenceTokens;
    #attention: AttentionMode;
    #native: NativeContext | null;
    #queue = new SerialQueue();
    #disposing: Promise<void> | null = null;
    // The generation scheduler (created with the first generation), the sequences that are
    // generating, the generations' completions (dispose waits for them), and sampler chains.
    #scheduler: NativeScheduler | null = null;
    readonly #generating = new Set<number>();
    readonly #running = new Set<Promise<unknown>>();
    readonly #samplers: SamplerChains;

    /** @internal use model.createContext() */
    constructor(
        model: Model,
        created: { context: NativeContext; contextSize: number; batchSize: number; ubatchSize: number; sequences: number; canShift: boolean },
        resolved: ResolvedContextOptions,
    ) {
        this.model = model;
        this.#native = created.context;
        this.contextSize = created.contextSize;
        this.batchSize = created.batchSize;
        this.ubatchSize = created.ubatchSize;
        this.sequences = created.sequences;
        this.canShift = created.canShift;
        this.threads = resolved.native.threads;
        this.kvType = resolved.kvType;
        this.prefillChunk = resolved.prefillChunk;
        this.#samplers = new SamplerChains(this);
        this.#attention = resolved.native.attention;
        this.kv = new KvCache(this);
        this.sequenceTokens = new SequenceTokens(this.sequences);
    }

    get disposed(): boolean {
        return this.#native === null || this.#disposing !== null;
    }

    get attention(): AttentionMode {
        return this.#attention;
    }

    /**
     * Runs `job` with the native context when all earlier calls have finished, between two
     * steps of the running generations (the scheduler is paused while it runs). Rejects with
     * ERR_DISPOSED once dispose() has begun.
     * @internal
     */
    enqueue<T>(job: (native: NativeContext) => Promise<T> | T): Promise<T> {
        if (this.disposed) return Promise.reject(disposedError("context"));
        const stack = new Error();
        return this.#queue.run(async () => {
            const native = this.#native;
            if (!native) throw disposedError("context");
            try {
                await this.#holdScheduler();
                try {
                    return await job(native);
                } finally {
                    this.#releaseScheduler();
                }
            } catch (err) {
                throw fromNative(err, stack);
            }
        });
    }

    // The scheduler is paused while a call runs. While more calls wait in line, it stays
    // paused from one call to the next (up to HOLD_MAX_CALLS calls or HOLD_MAX_MS): resuming
    // it in between would let a step start with only what the calls so far submitted. So
    // generations started together (a pool's slots filling at once) are all in the loop's
    // next step, where short prompts fill the batch together (native/scheduler.h).
    #held: SchedulerHold | null = null;

    #holdScheduler(): Promise<void> | undefined {
        if (!this.#scheduler) return undefined;
        const held = this.#held ?? this.#startHold(this.#scheduler);
        held.calls++;
        return held.paused;
    }

    #startHold(scheduler: NativeScheduler): SchedulerHold {
        const held = { paused: scheduler.pause(), calls: 0, since: performance.now() };
        this.#held = held;
        // A pause that fails fails its call; the next call pauses afresh rather than awaiting
        // the same failure.
        held.paused.catch(() => {
            if (this.#held !== held) return;
            this.#held = null;
            scheduler.resume();
        });
        return held;
    }

    #releaseScheduler(): void {
        const held = this.#held;
        if (!held) return;
        const waiting = this.#queue.size > 1; // this call still counts until it settles
        if (waiting && held.calls < HOLD_MAX_CALLS && performance.now() - held.since < HOLD_MAX_MS) return;
        this.#held = null;
        this.#scheduler?.resume();
    }

    /** The context's scheduler, created on first use. Call from inside a job. @internal */
    scheduler(native: NativeContext): NativeScheduler {
        if (!this.#scheduler) {
            this.#scheduler = new (binding().NativeScheduler)(native, { batchSize: this.batchSize, prefillChunk: this.prefillChunk });
            // Created by a call with others in line: held from the start (nothing runs yet, so
            // the pause is immediate), so that its first step also holds what they submit.
            if (this.#queue.size > 1) this.#startHold(this.#scheduler).calls++;
        }
        return this.#scheduler;
    }

    /** The sampler chain for (sequence, options), kept across calls. Call from inside a job. @internal */
    samplerFor(sequence: number, config: ResolvedSamplingConfig, signal?: AbortSignal): Promise<NativeSampler> {
        return this.#samplers.get(sequence, config, signal);
    }

    /**
     * Counters of the generation scheduler (null before the first generation): steps run,
     * tokens decoded in them, and nanoseconds spent in steps, in llama_decode and in sampling.
     */
    schedulerStats(): NativeSchedulerStats | null {
        return this.#scheduler?.stats() ?? null;
    }

    /** A generation keeps the context's dispose() waiting until it has settled. @internal */
    trackGeneration(p: Promise<unknown>): void {
        const settled = p.then(() => {}, () => {});
        this.#running.add(settled);
        void settled.then(() => this.#running.delete(settled));
    }

    /** Whether a generation holds `sequence` (-1: any sequence). @internal */
    sequenceBusy(sequence: number): boolean {
        return sequence < 0 ? this.#generating.size > 0 : this.#generating.has(sequence);
    }

    /** Throws ERR_BUSY when a generation holds `sequence` (-1: any). @internal */
    checkSequenceIdle(sequence: number, what: string): void {
        if (!this.sequenceBusy(sequence)) return;
        const which = sequence < 0 ? `sequence ${[...this.#generating][0]}` : `sequence ${sequence}`;
        throw new LlamaError("ERR_BUSY", `${what}: ${which} is generating (wait for its generation to end, or stop it, before changing it)`);
    }

    /** A generation takes `sequence` until it ends; a second one gets ERR_BUSY. @internal */
    claimSequence(sequence: number): void {
        if (this.#generating.has(sequence)) {
            throw new LlamaError("ERR_BUSY", `sequence ${sequence} is already generating: a second generate() on it would interleave with the first (wait for it to end, break out of it, or use another sequence)`);
        }
        this.#generating.add(sequence);
    }

    /** @internal */
    releaseSequence(sequence: number): void {
        this.#generating.delete(sequence);
    }

    /**
     * Forgets the sampling state (penalty history, grammar position, RNG draws) of this
     * context's sampler chains, for one sequence or all.
     */
    resetSampling(sequence?: number): Promise<void> {
        try {
            const s = sequence === undefined ? undefined : this.checkSequence("sequence", sequence);
            if (s !== undefined) this.checkSequenceIdle(s, "resetSampling");
            return this.enqueue(() => this.#samplers.reset(s));
        } catch (err) {
            return Promise.reject(err);
        }
    }

    /** @internal */
    checkSequence(name: string, seq: unknown): number {
        if (!is.integer(seq) || (seq as number) < 0 || (seq as number) >= this.sequences) {
            throw new LlamaError("ERR_INVALID_SEQUENCE", `Expected an integer between 0 and ${this.sequences - 1} for ${name} but received ${String(seq)} (this context has ${this.sequences} sequence${this.sequences > 1 ? "s" : ""})`);
        }
        return seq as number;
    }

    /** Switches between llamafuse's fused attention and ggml's for later calls. */
    async setAttention(mode: AttentionMode): Promise<void> {
        if (mode !== "fused" && mode !== "ggml") throw invalidOption("mode", '"fused" or "ggml"', mode);
        if (mode === "fused" && !binding().hasFusedAttention) throw new LlamaError("ERR_UNSUPPORTED", "this build has no fused attention kernels");
        await this.enqueue((n) => n.setAttention(mode));
        this.#attention = mode;
    }

    /**
     * Decodes tokens for one or more sequences in one call, continuing each sequence's
     * positions. All or nothing: if it fails or is aborted, the cache is as it was.
     */
    forward(items: ForwardItem | ForwardItem[], options?: ForwardOptions): Promise<ForwardResult> {
        let plan: ReturnType<Context["planForward"]>;
        let signal: AbortSignal | undefined;
        try {
            const o = optionsObject("options", options);
            checkKnownKeys("forward", o, ["signal"]);
            signal = optSignal(o);
            plan = this.planForward(Array.isArray(items) ? items : [items]);
        } catch (err) {
            return Promise.reject(err);
        }
        if (signal?.aborted) return Promise.reject(abortedError("forward", signal.reason));
        return this.enqueue(async (native) => {
            if (signal?.aborted) throw abortedError("forward", signal.reason);
            const abort = abortFlag(signal);
            try {
                const data = await native.forward(plan.tokens, plan.seqs, plan.want, abort.flag);
                for (const p of plan.parts) this.sequenceTokens.append(p.seq, p.tokens);
                return new ForwardResult(data, plan.rows, this.model.info.vocabSize);
            } finally {
                abort.release();
            }
        });
    }

    private planForward(items: ForwardItem[]) {
        if (items.length === 0) throw new LlamaError("ERR_INVALID_BATCH", "forward needs at least one item");
        const vocab = this.model.info.vocabSize;
        const rows = new Map<number, { first: number; count: number; tokens: number; mode: LogitsMode }>();
        const parts: { seq: number; tokens: Int32Array; mode: LogitsMode }[] = [];
        let total = 0;
        items.forEach((item, k) => {
            if (!is.object(item)) throw invalidOption(`items[${k}]`, "an object { sequence, tokens, logits? }", item);
            checkKnownKeys(`forward items[${k}]`, item, ["sequence", "tokens", "logits"]);
            const seq = this.checkSequence(`items[${k}].sequence`, item.sequence);
            this.checkSequenceIdle(seq, "forward");
            if (rows.has(seq)) throw new LlamaError("ERR_INVALID_BATCH", `sequence ${seq} appears twice in one forward: give it one item with all its tokens`);
            const tokens = toTokenArray(`items[${k}].tokens`, item.tokens, vocab, false);
            const mode = optEnum<LogitsMode>(item, "logits", "last", ["last", "all", "none"]);
            parts.push({ seq, tokens, mode });
            rows.set(seq, { first: 0, count: 0, tokens: tokens.length, mode });
            total += tokens.length;
        });
        const tokens = new Int32Array(total);
        const seqs = new Int32Array(total);
        const want = new Uint8Array(total);
        let at = 0;
        let row = 0;
        for (const p of parts) {
            tokens.set(p.tokens, at);
            seqs.fill(p.seq, at, at + p.tokens.length);
            const r = rows.get(p.seq)!;
            r.first = row;
            if (p.mode === "all") want.fill(1, at, at + p.tokens.length);
            else if (p.mode === "last") want[at + p.tokens.length - 1] = 1;
            r.count = p.mode === "all" ? p.tokens.length : p.mode === "last" ? 1 : 0;
            row += r.count;
            at += p.tokens.length;
        }
        return { tokens, seqs, want, rows, parts };
    }

    /** Saves the whole context (or one sequence) to a file, or returns it as a Buffer. */
    saveState(target?: string, options?: StateOptions): Promise<Buffer | undefined> {
        return saveStateBlob(this, target, options);
    }

    /** Restores a state saved by saveState() from a file or a Buffer. */
    loadState(source: string | Uint8Array, options?: StateOptions): Promise<void> {
        // Whatever the outcome (a failed load clears the memory), the token lists are unknown.
        const seq = is.object(options) && options.sequence !== undefined ? (options.sequence as number) : -1;
        try {
            this.checkSequenceIdle(Number.isInteger(seq) && seq >= 0 && seq < this.sequences ? seq : -1, "loadState");
        } catch (err) {
            return Promise.reject(err);
        }
        return loadStateBlob(this, source, options).finally(() => this.sequenceTokens.invalidate(Number.isInteger(seq) && seq >= 0 && seq < this.sequences ? seq : -1));
    }

    /**
     * Frees the context. Running generations stop within one step (their iterators throw
     * ERR_DISPOSED); queued calls finish first. Idempotent.
     */
    dispose(): Promise<void> {
        this.#disposing ??= (async () => {
            this.#samplers.abortPending(); // a grammar llama.cpp is still building is not waited for
            await this.#scheduler?.close(); // what runs now stops within a step
            await this.#queue.drain(); // calls queued before dispose() finish
            // One of them may have created the scheduler or started a generation meanwhile.
            await this.#scheduler?.close();
            await Promise.all(this.#running);
            await this.#samplers.disposeAll();
            this.#native?.dispose();
            this.#native = null;
            this.model.contextClosed(this);
        })();
        return this.#disposing;
    }

    [Symbol.asyncDispose](): Promise<void> {
        return this.dispose();
    }

    /** Samples one token from a sequence's last logits (see SamplingOptions). */
    sample(sequence: number, options?: SamplingOptions): Promise<SampleResult> {
        return sampleContext(this, sequence, options);
    }

    /** Generates text: an async iterator of { token, text } steps (see GenerateOptions). */
    generate(promptOrTokens: string | ArrayLike<number>, options?: GenerateOptions): AsyncGenerator<GenerateStep, GenerateSummary> {
        return generate(this, promptOrTokens, options);
    }

    /** Beam search from a prompt's tokens: hypotheses best-first (see BeamSearchOptions). */
    beamSearch(tokens: ArrayLike<number>, options?: BeamSearchOptions): Promise<BeamHypothesis[]> {
        return beamSearch(this, tokens, options);
    }
}

/** The context's KV cache, by sequence and position, as llama.cpp's memory API defines it. */
export class KvCache {
    readonly #ctx: Context;
    constructor(ctx: Context) {
        this.#ctx = ctx;
    }

    #pos(name: string, v: unknown, def: number): number {
        if (v === undefined) return def;
        if (!is.integer(v) || (v as number) < -1 || (v as number) > 2 ** 31 - 1) throw invalidOption(name, "an integer >= -1 (-1: open end)", v);
        return v as number;
    }

    /** Removes positions [p0, p1) of a sequence (-1 for an open end; sequence -1: all). */
    remove(sequence: number, p0?: number, p1?: number): Promise<boolean> {
        try {
            const s = sequence === -1 ? -1 : this.#ctx.checkSequence("sequence", sequence);
            const a = this.#pos("p0", p0, -1), b = this.#pos("p1", p1, -1);
            this.#ctx.checkSequenceIdle(s, "kv.remove");
            return this.#ctx.enqueue((n) => {
                const ok = n.kvRemove(s, a, b);
                if (ok) this.#ctx.sequenceTokens.removed(s, a, b);
                else if (s >= 0) this.#ctx.sequenceTokens.invalidate(s);
                return ok;
            });
        } catch (err) {
            return Promise.reject(err);
        }
    }

    /** Makes positions [p0, p1) of `src` part of `dst` too (shared cells, no copy of data). */
    copy(src: number, dst: number, p0?: number, p1?: number): Promise<void> {
        try {
            const s = this.#ctx.checkSequence("src", src), d = this.#ctx.checkSequence("dst", dst);
            const a = this.#pos("p0", p0, -1), b = this.#pos("p1", p1, -1);
            this.#ctx.checkSequenceIdle(d, "kv.copy");
            this.#ctx.checkSequenceIdle(s, "kv.copy");
            return this.#ctx.enqueue((n) => {
                n.kvCopy(s, d, a, b);
                this.#ctx.sequenceTokens.copied(s, d, a, b);
            });
        } catch (err) {
            return Promise.reject(err);
        }
    }

    /** Removes every sequence but this one. */
    keepOnly(sequence: number): Promise<void> {
        try {
            const s = this.#ctx.checkSequence("sequence", sequence);
            for (let i = 0; i < this.#ctx.sequences; i++) if (i !== s) this.#ctx.checkSequenceIdle(i, "kv.keepOnly");
            return this.#ctx.enqueue((n) => {
                n.kvKeepOnly(s);
                this.#ctx.sequenceTokens.keptOnly(s);
            });
        } catch (err) {
            return Promise.reject(err);
        }
    }

    /** Adds `delta` to the positions in [p0, p1) of a sequence (RoPE is re-applied lazily). */
    shift(sequence: number, p0: number, p1: number, delta: number): Promise<void> {
        try {
            const s = this.#ctx.checkSequence("sequence", sequence);
            const a = this.#pos("p0", p0, -1), b = this.#pos("p1", p1, -1);
            if (!is.integer(delta)) throw invalidOption("delta", "an integer", delta);
            if (!this.#ctx.canShift) throw new LlamaError("ERR_UNSUPPORTED", "this model's memory does not support position shifts");
            this.#ctx.checkSequenceIdle(s, "kv.shift");
            return this.#ctx.enqueue((n) => {
                this.#ctx.sequenceTokens.invalidate(s);
                n.kvShift(s, a, b, delta);
            });
        } catch (err) {
            return Promise.reject(err);
        }
    }

    /** Empties the cache. */
    clear(): Promise<void> {
        try {
            this.#ctx.checkSequenceIdle(-1, "kv.clear");
        } catch (err) {
            return Promise.reject(err);
        }
        return this.#ctx.enqueue((n) => {
            n.kvClear();
            this.#ctx.sequenceTokens.clear();
        });
    }

    /**
     * The tokens a sequence holds, position by position, as forward, generate and the KV
     * operations left them; null once that is unknown (after a shift, a state load, or a
     * removal or copy that leaves holes). generate() reuses the longest common prefix of a
     * new prompt with this list.
     */
    tokens(sequence: number): Int32Array | null {
        return this.#ctx.sequenceTokens.get(this.#ctx.checkSequence("sequence", sequence));
    }

    /** Smallest and largest position held for a sequence (-1, -1 when empty). */
    positions(sequence: number): Promise<{ min: number; max: number }> {
        try {
            const s = this.#ctx.checkSequence("sequence", sequence);
            return this.#ctx.enqueue((n) => n.kvPositions(s));
        } catch (err) {
            return Promise.reject(err);
        }
    }
}
