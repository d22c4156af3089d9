// model.createPool(): many requests on one model. A pool is one context whose sequences are
// "slots"; each request gets a slot for its whole generation. A new prompt goes to the idle
// slot whose cached tokens share the longest prefix with it (llama-server's slot
// similarity), so a conversation that comes back, or prompts with a common system text,
// evaluate only what is new. Past the slot count, requests wait in a bounded FIFO queue;
// past that bound they fail at once with ERR_BUSY (a server answers 429).
//
// Concurrency comes from the context: generations on different sequences of one context
// share its decode steps (the scheduler), so a pool adds no threads of its own.
import { writeFile } from "node:fs/promises";
import type { Context, ContextOptions } from "./context.js";
import { LlamaError, abortedError, disposedError } from "./errors.js";
import type { GenerateOptions, GenerateStep, GenerateSummary } from "./generate.js";
import type { Model } from "./model.js";
import { readStateSource } from "./state.js";
import { toTokenArray } from "./tokens.js";
import { invalidOption, is, optInt, optNumber, optSignal, optionsObject } from "./validate.js";

export interface PoolOptions extends Omit<ContextOptions, "sequences" | "contextSize"> {
    /** Tokens each slot holds (prompt and generated text together). @default min(trainContextSize, 4096) */
    contextSize?: number;
    /** Requests served at once (sequences of the pool's context). @default 4 */
    slots?: number;
    /** Requests that may wait for a slot; one more fails with ERR_BUSY. @default 64 */
    queueLimit?: number;
    /**
     * Prompt tokens a new request adds per decode step while other slots generate (each
     * request still waiting for its first token adds its own chunk). Smaller
     * than a plain context's default (256): a server's streams must keep flowing while a long
     * prompt arrives. Measured on stories260K, 1 thread, a 2048-token prompt joining 4 streams:
     * their inter-token p99 rose 9x with 256-token chunks, 2.1x with 64 and 1.3x with 16, for
     * a prefill 7% (64) and 32% (16) slower than with 256. @default 64 (at most batchSize)
     */
    prefillChunk?: number;
    /**
     * Share of a prompt that a slot's cached prefix must cover for that slot to be chosen
     * over the least recently used one (llama-server's slot_prompt_similarity). @default 0.1
     */
    similarity?: number;
}

export interface PoolGenerateOptions extends Omit<GenerateOptions, "sequence"> {
    /** Tokenize a string prompt with special-token text parsed (chat templates). @default false */
    parseSpecial?: boolean;
}

/** What a pool generation returns when it ends normally. */
export interface PoolSummary extends GenerateSummary {
    /** The slot (sequence) it ran on. */
    slot: number;
    /** Prompt tokens found in the slot's cache and not evaluated again (= reusedTokens). */
    cachedTokens: number;
}

export interface PoolStats {
    slots: { index: number; busy: boolean; cachedTokens: number }[];
    queued: number;
    requests: number;
    rejected: number;
    promptTokens: number;
    cachedTokens: number;
    generatedTokens: number;
}

interface Slot {
    index: number;
    busy: boolean;
    /** Set while a finished generation's last cache edits complete (the slot is still busy). */
    settling: Promise<void> | null;
    lastUsed: number;
}

interface Waiter {
    prompt: Int32Array;
    resolve: (slot: Slot) => void;
    reject: (err: unknown) => void;
}

const POOL_KEYS = ["contextSize", "slots", "queueLimit", "similarity"] as const;
const SLOT_MAGIC = "LLAMAFUSE-SLOT\n";

export async function createPool(model: Model, options?: PoolOptions): Promise<Pool> {
    const o = optionsObject("options", options);
    const slots = optInt(o, "slots", 4, 1, 256);
    const perSlot = optInt(o, "contextSize", Math.min(model.info.trainContextSize > 0 ? model.info.trainContextSize : 4096, 4096), 16, 1 << 20);
    const queueLimit = optInt(o, "queueLimit", 64, 0, 1 << 20);
    const similarity = optNumber(o, "similarity", 0.1, 0, 1);
    if (perSlot * slots > 1 << 24) throw invalidOption("contextSize", `at most ${Math.floor((1 << 24) / slots)} tokens per slot with ${slots} slots`, perSlot);
    if ("sequences" in o) throw invalidOption('"sequences"', "no value (a pool sets it from slots)", o.sequences);
    const contextOptions: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(o)) if (!(POOL_KEYS as readonly string[]).includes(k)) contextOptions[k] = v;
    if (o.prefillChunk === undefined) contextOptions.prefillChunk = is.integer(o.batchSize) && (o.batchSize as number) > 0 ? Math.min(64, o.batchSize as number) : 64;
    // The sequences share one unified cache of slots x contextSize cells; each generation is
    // capped so that its slot never holds more than contextSize, so the cache cannot fill.
    const context = await model.createContext({ ...contextOptions, contextSize: perSlot * slots, sequences: slots } as ContextOptions);
    return new Pool(context, { slots, perSlot, queueLimit, similarity });
}

export class Pool {
    readonly context: Context;
    /** Tokens one slot holds. */
    readonly contextSize: number;
    readonly queueLimit: number;
    readonly similarity: number;
    #slots: Slot[];
    #waiters: Waiter[] = [];
    #clock = 0;
    #disposing: Promise<void> | null = null;
    #active = new Set<Promise<unknown>>();
    #counters = { requests: 0, rejected: 0, promptTokens: 0, cachedTokens: 0, generatedTokens: 0 };

    /** @internal use model.createPool() */
    constructor(context: Context, o: { slots: number; perSlot: number; queueLimit: number; similarity: number }) {
        this.context = context;
        this.contextSize = o.perSlot;
        this.queueLimit = o.queueLimit;
        this.similarity = o.similarity;
        this.#slots = Array.from({ length: o.slots }, (_, index) => ({ index, busy: false, settling: null, lastUsed: 0 }));
    }

    get model(): Model {
        return this.context.model;
    }

    get slots(): number {
        return this.#slots.length;
    }

    get disposed(): boolean {
        return this.#disposing !== null;
    }

    /** Whether a slot is generating (stats() without copying every slot's cached tokens). */
    get busy(): boolean {
        return this.#slots.some((s) => s.busy);
    }

    stats(): PoolStats {
        return {
            slots: this.#slots.map((s) => ({ index: s.index, busy: s.busy, cachedTokens: this.context.disposed ? 0 : (this.context.kv.tokens(s.index)?.length ?? 0) })),
            queued: this.#waiters.length,
            ...this.#counters,
        };
    }

    /**
     * Generates on the best free slot (waiting in the queue for one if need be). A string is
     * tokenized with the model's special tokens (BOS); token arrays are used as given. The
     * iterator's steps and errors are ctx.generate()'s; the summary adds the slot and how
     * much of the prompt came from the cache. `maxTokens` is capped to what fits the slot.
     */
    generate(promptOrTokens: string | ArrayLike<number>, options?: PoolGenerateOptions): AsyncGenerator<GenerateStep, PoolSummary> {
        if (this.disposed) throw disposedError("pool");
        const o = optionsObject("options", options);
        if ("sequence" in o) throw invalidOption('"sequence"', "no value (the pool picks the slot)", o.sequence);
        const signal = optSignal(o);
        const parseSpecial = o.parseSpecial;
        if (parseSpecial !== undefined && !is.bool(parseSpecial)) throw invalidOption("parseSpecial", "a boolean", parseSpecial);
        const given = is.string(promptOrTokens) ? null : toTokenArray("tokens", promptOrTokens, this.model.info.vocabSize);
        if (given && given.length === 0) throw invalidOption("tokens", "at least one token", promptOrTokens);
        const rest: Record<string, unknown> = { ...o };
        delete rest.parseSpecial;
        return this.#run(given ?? (promptOrTokens as string), rest as GenerateOptions, signal, parseSpecial === true);
    }

    async *#run(input: Int32Array | string, options: GenerateOptions, signal: AbortSignal | undefined, parseSpecial: boolean): AsyncGenerator<GenerateStep, PoolSummary> {
        const prompt = is.string(input) ? await this.model.tokenize(input, { addSpecial: true, parseSpecial }) : input;
        if (prompt.length === 0) throw invalidOption("prompt", "text that gives at least one token", input);
        if (prompt.length >= this.contextSize) {
            throw new LlamaError("ERR_CONTEXT_FULL", `the prompt has ${prompt.length} tokens; a slot holds ${this.contextSize} (prompt and output together)`);
        }
        const slot = await this.#acquire(prompt, signal);
        this.#counters.requests++;
        let finished = false;
        try {
            const maxTokens = Math.min(options.maxTokens ?? 256, this.contextSize - prompt.length);
            // generate() keeps the longest prefix the slot's sequence shares with the prompt
            // and evaluates only the rest (the prompt cache).
            const it = this.context.generate(prompt, { ...options, maxTokens, sequence: slot.index });
            let done = false;
            try {
                for (;;) {
                    const r = await it.next();
                    if (r.done) {
                        done = true;
                        finished = true;
                        this.#counters.promptTokens += r.value.promptTokens;
                        this.#counters.cachedTokens += r.value.reusedTokens;
                        return { ...r.value, slot: slot.index, cachedTokens: r.value.reusedTokens };
                    }
                    this.#counters.generatedTokens++;
                    yield r.value;
                }
            } finally {
                // The consumer left early: generate() keeps the tokens it took in the cache.
                if (!done) await it.return(undefined as never).catch(() => {});
            }
        } finally {
            if (finished) {
                // Ran to its end: the sequence is quiet, and the slot is free at once (a
                // conversation's next turn, sent right away, finds its cache here).
                this.#release(slot);
            } else {
                const settled = this.#settle(slot);
                slot.settling = settled;
                this.#active.add(settled);
                void settled.finally(() => this.#active.delete(settled));
            }
        }
    }

    /**
     * Frees the slot once its sequence is quiet: a generation whose consumer left may still
     * be finishing its last step and trimming the cache, and positions() is served after it.
     */
    async #settle(slot: Slot): Promise<void> {
        try {
            if (!this.context.disposed) await this.context.kv.positions(slot.index);
        } catch {
            // disposed meanwhile: nothing to wait for
        } finally {
            slot.settling = null;
            this.#release(slot);
        }
    }

    #pick(prompt: Int32Array): Slot | null {
        let best: Slot | null = null;
        let bestShared = 0;
        let oldest: Slot | null = null;
        for (const s of this.#slots) {
            if (s.busy) continue;
            const shared = this.context.sequenceTokens.commonPrefix(s.index, prompt);
            if (shared > bestShared) [best, bestShared] = [s, shared];
            if (!oldest || s.lastUsed < oldest.lastUsed) oldest = s;
        }
        if (best && bestShared >= this.similarity * prompt.length) return best;
        return oldest;
    }

    #acquire(prompt: Int32Array, signal: AbortSignal | undefined): Promise<Slot> {
        if (this.disposed) return Promise.reject(disposedError("pool"));
        if (signal?.aborted) return Promise.reject(abortedError("generate", signal.reason));
        const free = this.#waiters.length === 0 ? this.#pick(prompt) : null;
        if (free) {
            free.busy = true;
            return Promise.resolve(free);
        }
        if (this.#waiters.length >= this.queueLimit) {
            this.#counters.rejected++;
            return Promise.reject(new LlamaError("ERR_BUSY", `all ${this.slots} slots are busy and ${this.#waiters.length} requests are waiting (queueLimit ${this.queueLimit})`));
        }
        return new Promise<Slot>((resolve, reject) => {
            const onAbort = () => {
                const i = this.#waiters.indexOf(waiter);
                if (i >= 0) this.#waiters.splice(i, 1);
                reject(abortedError("generate", signal?.reason));
            };
            const waiter: Waiter = {
                prompt,
                resolve: (s) => {
                    signal?.removeEventListener("abort", onAbort);
                    resolve(s);
                },
                reject: (e) => {
                    signal?.removeEventListener("abort", onAbort);
                    reject(e);
                },
            };
            signal?.addEventListener("abort", onAbort, { once: true });
            this.#waiters.push(waiter);
        });
    }

    #release(slot: Slot): void {
        slot.busy = false;
        slot.lastUsed = ++this.#clock;
        while (this.#waiters.length > 0) {
            const s = this.#pick(this.#waiters[0]!.prompt);
            if (!s) break;
            s.busy = true;
            this.#waiters.shift()!.resolve(s);
        }
    }

    // ---- slot state --------------------------------------------------------------------------

    async #withIdleSlot<T>(index: unknown, job: (slot: Slot) => Promise<T>): Promise<T> {
        if (this.disposed) throw disposedError("pool");
        if (!is.integer(index) || (index as number) < 0 || (index as number) >= this.slots) throw invalidOption("slot", `an integer between 0 and ${this.slots - 1}`, index);
        const slot = this.#slots[index as number]!;
        // A generation that has just returned is still settling its cache: wait for it.
        if (slot.settling) await slot.settling;
        if (slot.busy) throw new LlamaError("ERR_BUSY", `slot ${slot.index} is generating`);
        slot.busy = true;
        try {
            return await job(slot);
        } finally {
            this.#release(slot);
        }
    }

    /** Saves an idle slot's cache (and its token record) to a file, or returns it as a Buffer. */
    saveSlot(index: number, target?: string): Promise<Buffer | undefined> {
        return this.#withIdleSlot(index, async (slot) => {
            if (target !== undefined && !(is.string(target) && target.length > 0)) throw invalidOption("target", "a file path or undefined", target);
            // The token list rides along so that a restored slot serves as a prompt cache; an
            // unknown list is saved empty (the restored slot then reuses nothing).
            const held = this.context.kv.tokens(slot.index) ?? new Int32Array(0);
            const state = (await this.context.saveState(undefined, { sequence: slot.index }))!;
            const head = Buffer.alloc(SLOT_MAGIC.length + 4);
            head.write(SLOT_MAGIC, "latin1");
            head.writeUInt32LE(held.length, SLOT_MAGIC.length);
            const tokens = Buffer.from(held.buffer, held.byteOffset, held.byteLength);
            const out = Buffer.concat([head, tokens, state]);
            if (target === undefined) return out;
            await writeFile(target, out);
            return undefined;
        });
    }

    /** Restores a slot saved by saveSlot() (from any slot of a pool on the same model) into an idle slot. */
    restoreSlot(index: number, source: string | Uint8Array): Promise<void> {
        return this.#withIdleSlot(index, async (slot) => {
            const data = await readStateSource(source, "slot");
            const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
            const at = SLOT_MAGIC.length + 4;
            if (buf.length < at || buf.toString("latin1", 0, SLOT_MAGIC.length) !== SLOT_MAGIC) throw new LlamaError("ERR_STATE_MISMATCH", "not a llamafuse slot state (bad header)");
            const count = buf.readUInt32LE(SLOT_MAGIC.length);
            if (count > this.contextSize || buf.length < at + count * 4) throw new LlamaError("ERR_STATE_MISMATCH", `this slot state holds ${count} tokens; a slot here holds ${this.contextSize}`);
            const tokens = new Int32Array(count);
            for (let i = 0; i < count; i++) tokens[i] = buf.readInt32LE(at + i * 4);
            await this.context.kv.remove(slot.index, -1, -1);
            // The context's own state header checks the model and the cache type.
            await this.context.loadState(buf.subarray(at + count * 4), { sequence: slot.index });
            // A loaded state leaves the sequence's token list unknown; the saved list names it
            // again when the cache holds exactly that many positions from 0.
            const { min, max } = await this.context.kv.positions(slot.index);
            if (count > 0 && min === 0 && max + 1 === count) this.context.sequenceTokens.set(slot.index, tokens);
        });
    }

    /** Empties an idle slot's cache. */
    eraseSlot(index: number): Promise<void> {
        return this.#withIdleSlot(index, async (slot) => {
            await this.context.kv.remove(slot.index, -1, -1);
        });
    }

    /** Rejects waiting requests with ERR_DISPOSED, waits for running ones, frees the context. Idempotent. */
    dispose(): Promise<void> {
        this.#disposing ??= (async () => {
            for (const w of this.#waiters.splice(0)) w.reject(disposedError("pool"));
            await this.context.dispose();
            await Promise.allSettled([...this.#active]);
        })();
        return this.#disposing;
    }

    [Symbol.asyncDispose](): Promise<void> {
        return this.dispose();
    }
}

