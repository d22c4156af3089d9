// EmbeddingContext: sentence vectors (embed) and reranker scores (rank) for one model. Texts
// are tokenized here, checked, and handed to native code in one call that packs them into as
// few llama_decode batches as fit (native/embedding.cpp). One call at a time per context.
import { binding } from "../binding.js";
import { LlamaError, abortedError, callNative, disposedError, fromNative } from "../errors.js";
import type { Model } from "../model.js";
import { SerialQueue, abortFlag } from "../queue.js";
import { toTokenArray } from "../tokens.js";
import { checkKnownKeys, invalidOption, is, optBool, optSignal, optionsObject } from "../validate.js";
import type { NativeEmbeddingContext, NativeEmbeddingCreated, PoolingType } from "./native.js";
import { resolveEmbeddingOptions, type NormalizeMode } from "./options.js";
import { rankTokens } from "./rank-format.js";

export interface EmbedOptions {
    /** Cut texts longer than contextSize (keeping a final SEP/EOS the model adds) instead of rejecting them. @default false */
    truncate?: boolean;
    signal?: AbortSignal;
}

export type EmbedInput = string | ArrayLike<number>;

/** Architectures whose rank head already ends in a softmax (llama.cpp's build_pooling). */
const NORMALIZED_RANK_ARCHS = new Set(["qwen3", "qwen3vl"]);

export class EmbeddingContext {
    readonly model: Model;
    /** Most tokens per text. */
    readonly contextSize: number;
    readonly batchSize: number;
    /** Most texts per llama_decode. */
    readonly sequences: number;
    readonly threads: number;
    readonly pooling: PoolingType;
    readonly normalize: NormalizeMode;
    /** Floats per vector (for pooling "rank": the classification head's outputs). */
    readonly dimensions: number;
    /** Whether the model has a classification head (rank() needs one, and pooling "rank"). */
    readonly hasRankHead: boolean;
    #native: NativeEmbeddingContext | null;
    #created: NativeEmbeddingCreated;
    #queue = new SerialQueue();
    #disposing: Promise<void> | null = null;

    /** @internal use model.createEmbeddingContext() */
    constructor(model: Model, native: NativeEmbeddingContext, created: NativeEmbeddingCreated, resolved: { pooling: PoolingType; normalize: NormalizeMode; maxTokens: number; threads: number }) {
        this.model = model;
        this.#native = native;
        this.#created = created;
        this.contextSize = resolved.maxTokens;
        this.batchSize = created.batchSize;
        this.sequences = created.sequences;
        this.threads = resolved.threads;
        this.pooling = resolved.pooling;
        this.normalize = resolved.normalize;
        this.dimensions = created.dimensions;
        this.hasRankHead = created.hasRankHead;
    }

    get disposed(): boolean {
        return this.#native === null || this.#disposing !== null;
    }

    /**
     * One vector per text (Float32Array of `dimensions`), in order. With pooling "none", each
     * text's entry holds all its token vectors, row after row (tokens × dimensions).
     * Strings are tokenized with the model's special tokens; token arrays are used as given.
     */
    async embed(texts: readonly EmbedInput[], options?: EmbedOptions): Promise<Float32Array[]> {
        if (this.disposed) throw disposedError("embedding context");
        if (this.pooling === "rank") throw new LlamaError("ERR_UNSUPPORTED", "this context ranks (pooling \"rank\"): use rank(), or create one with another pooling for vectors");
        const { truncate, signal } = this.#callOptions("embed", options);
        const tokens = await this.#tokenizeAll(texts, truncate, signal);
        const out = await this.#run(tokens, signal);
        const perText = this.pooling === "none";
        let row = 0;
        return tokens.map((t) => {
            const n = perText ? t.length : 1;
            const v = out.slice(row * this.dimensions, (row + n) * this.dimensions);
            row += n;
            if (this.normalize === "l2") for (let r = 0; r < n; r++) l2Normalize(v.subarray(r * this.dimensions, (r + 1) * this.dimensions));
            return v;
        });
    }

    /**
     * Relevance of each document to the query, in order: the reranker's score as a probability
     * (a sigmoid of its logit, as node-llama-cpp reports it; models whose head ends in a
     * softmax, such as Qwen3 rerankers, as they give it). Needs a model with a classification
     * head and a context with pooling "rank" (the default for such GGUFs).
     */
    async rank(query: string, documents: readonly string[], options?: EmbedOptions): Promise<number[]> {
        if (this.disposed) throw disposedError("embedding context");
        if (!is.string(query)) throw invalidOption("query", "a string", query);
        if (!Array.isArray(documents) || documents.some((d) => !is.string(d))) throw invalidOption("documents", "an array of strings", documents);
        if (!this.hasRankHead) throw new LlamaError("ERR_UNSUPPORTED", `${this.model.info.architecture} model ${this.model.path} has no classification head (cls.weight / cls.output.weight): it cannot rank`);
        if (this.pooling !== "rank") throw new LlamaError("ERR_UNSUPPORTED", `this context pools with "${this.pooling}": create one with pooling: "rank" to rank`);
        const { truncate, signal } = this.#callOptions("rank", options);
        if (query === "") throw new LlamaError("ERR_INVALID_OPTION", "query is empty");
        const empty = documents.findIndex((d) => d === "");
        if (empty >= 0) throw new LlamaError("ERR_INVALID_OPTION", `documents[${empty}] is empty`);
        if (documents.length === 0) return [];
        const pairs = await Promise.all(documents.map((d) => rankTokens(this.model, this.#created, query, d)));
        const tokens = pairs.map((t, i) => this.#fit(`documents[${i}] with the query`, t, truncate, true));
        const out = await this.#run(tokens, signal);
        const normalized = NORMALIZED_RANK_ARCHS.has(this.model.info.architecture);
        return tokens.map((_, i) => {
            const logit = out[i * this.dimensions]!;
            return normalized ? logit : 1 / (1 + Math.exp(-logit));
        });
    }

    /** Frees the context. Waits for the call in progress; idempotent. */
    dispose(): Promise<void> {
        this.#disposing ??= (async () => {
            await this.#queue.drain();
            this.#native?.dispose();
            this.#native = null;
            this.model.contextClosed(this);
        })();
        return this.#disposing;
    }

    [Symbol.asyncDispose](): Promise<void> {
        return this.dispose();
    }

    #callOptions(where: string, options: unknown): { truncate: boolean; signal: AbortSignal | undefined } {
        const o = optionsObject("options", options);
        checkKnownKeys(where, o, ["truncate", "signal"]);
        const truncate = optBool(o, "truncate", false);
        const signal = optSignal(o);
        if (signal?.aborted) throw abortedError(where, signal.reason);
        return { truncate, signal };
    }

    async #tokenizeAll(texts: readonly EmbedInput[], truncate: boolean, signal: AbortSignal | undefined): Promise<Int32Array[]> {
        if (!Array.isArray(texts)) throw invalidOption("texts", "an array of strings or token arrays", texts);
        const vocab = this.model.info.vocabSize;
        const out = await Promise.all(
            texts.map(async (t, i) => {
                const name = `texts[${i}]`;
                if (is.string(t)) {
                    if (t === "") throw new LlamaError("ERR_INVALID_OPTION", `${name} is empty`);
                    return this.#fit(name, await this.model.tokenize(t), truncate, true);
                }
                if (t === null || typeof t !== "object") throw invalidOption(name, "a string or an array of token ids", t);
                const ids = toTokenArray(name, t, vocab);
                if (ids.length === 0) throw new LlamaError("ERR_INVALID_OPTION", `${name} has no tokens`);
                return this.#fit(name, ids, truncate, false);
            }),
        );
        if (signal?.aborted) throw abortedError("embed", signal.reason);
        return out;
    }

    /** A text's tokens, within contextSize: rejected when longer, or cut with `truncate`. */
    #fit(name: string, tokens: Int32Array, truncate: boolean, keepEndSpecial: boolean): Int32Array {
        const max = this.contextSize;
        if (tokens.length <= max) return tokens;
        if (!truncate) {
            throw new LlamaError("ERR_CONTEXT_FULL", `${name} has ${tokens.length} tokens; this embedding context takes at most ${max} per text (pass truncate: true to cut it, or a larger contextSize)`);
        }
        const c = this.#created;
        const last = tokens[tokens.length - 1]!;
        const endSpecial = keepEndSpecial && ((c.addSep && last === c.sep) || (c.addEos && last === c.eos));
        if (!endSpecial || max < 2) return tokens.slice(0, max);
        const cut = tokens.slice(0, max);
        cut[max - 1] = last;
        return cut;
    }

    #run(tokens: Int32Array[], signal: AbortSignal | undefined): Promise<Float32Array> {
        if (tokens.length === 0) return Promise.resolve(new Float32Array(0));
        let total = 0;
        for (const t of tokens) total += t.length;
        const flat = new Int32Array(total);
        const offsets = new Uint32Array(tokens.length + 1);
        tokens.forEach((t, i) => {
            flat.set(t, offsets[i]!);
            offsets[i + 1] = offsets[i]! + t.length;
        });
        const stack = new Error();
        return this.#queue.run(async () => {
            const native = this.#native;
            if (!native) throw disposedError("embedding context");
            const abort = abortFlag(signal);
            try {
                return await native.embed(flat, offsets, abort.flag);
            } catch (err) {
                throw fromNative(err, stack);
            } finally {
                abort.release();
            }
        });
    }
}

function l2Normalize(v: Float32Array): void {
    let ss = 0;
    for (let i = 0; i < v.length; i++) ss += v[i]! * v[i]!;
    if (ss === 0) return;
    const k = 1 / Math.sqrt(ss);
    for (let i = 0; i < v.length; i++) v[i]! *= k;
}

/** model.createEmbeddingContext(): see EmbeddingContextOptions. */
export async function createEmbeddingContext(model: Model, options: unknown): Promise<EmbeddingContext> {
    if (model.vocabOnly) throw new LlamaError("ERR_UNSUPPORTED", "a model loaded with vocabOnly has no weights: it cannot create contexts");
    const resolved = resolveEmbeddingOptions(model.info, model.path, options);
    if (model.info.architecture === "t5") throw new LlamaError("ERR_UNSUPPORTED", "embeddings are not supported for encoder-decoder models (t5)");
    const nativeModel = model.native;
    const native = new (binding().NativeEmbeddingContext)();
    const created = await model.track(callNative(() => native.init(nativeModel, resolved.native)));
    const ectx = new EmbeddingContext(model, native, created, { ...resolved, threads: resolved.native.threads });
    if (resolved.pooling === "rank" && !created.hasRankHead) {
        await ectx.dispose();
        throw new LlamaError("ERR_UNSUPPORTED", `pooling "rank" needs a classification head (cls.weight / cls.output.weight), and ${model.path} has none`);
    }
    return ectx;
}
