// loadModel() and Model: load a GGUF off the main thread, read what it is, tokenize and
// detokenize, open contexts, and free it all on dispose.
import { open, stat } from "node:fs/promises";
import { binding, type NativeModel, type NativeModelInfo } from "./binding.js";
import { Context, defaultThreads, KV_TYPES, resolveContextOptions, type ContextOptions } from "./context.js";
import { DEFAULT_FIT_MARGIN_BYTES, estimateMemory, fitGpuLayers, parseGpuLayers, type MemoryEstimate } from "./fit.js";
import { createEmbeddingContext, type EmbeddingContext, type EmbeddingContextOptions } from "./embed/index.js";
import { LlamaError, abortedError, callNative, disposedError, fromNative } from "./errors.js";
import { applyChatTemplate, createChatSession, tokenizeChat, type ApplyChatTemplateOptions } from "./chat/index.js";
import type { ChatMessage } from "./chat/messages.js";
import type { ChatSession, ChatSessionOptions } from "./chat/session.js";
import { ChatTemplates, type TemplateSpec } from "./chat/templates.js";
import { abortFlag } from "./queue.js";
import { createPool, type Pool, type PoolOptions } from "./pool.js";
import { checkRpcServers, parseEndpoint } from "./rpc.js";
import { SYNC_DETOKENIZE_MAX_TOKENS, SYNC_TOKENIZE_MAX_BYTES, toTokenArray, type TokenInput } from "./tokens.js";
import { checkKnownKeys, invalidOption, is, optBool, optFunction, optInt, optSignal, optionsObject } from "./validate.js";

export interface LoadModelOptions {
    /**
     * Layers to offload to the GPU (-1: all). Ignored by a CPU-only build. "auto": as many as
     * fit free device memory with `fitMarginBytes` left and room for a context of
     * `fitContextSize` (llama.cpp's common/fit); 0 with no GPU; ERR_OUT_OF_MEMORY when nothing fits.
     * The layers chosen are model.gpuLayers. @default 0
     */
    gpuLayers?: number | "auto";
    /** gpuLayers "auto": the context size to leave room for. @default 4096 */
    fitContextSize?: number;
    /** gpuLayers "auto": bytes to leave free on each device (llama.cpp's --fit-target). @default 1 GiB */
    fitMarginBytes?: number;
    /** Map the file instead of reading it. @default true */
    useMmap?: boolean;
    /** Lock the weights in RAM. @default false */
    useMlock?: boolean;
    /** Load only the vocabulary (tokenize/detokenize work; no contexts). @default false */
    vocabOnly?: boolean;
    /**
     * llama.cpp RPC servers ("host:port", started with `llamafuse rpc-server`): the offloaded
     * layers (gpuLayers) go to their devices, in order, then to this machine's GPUs.
     */
    rpcServers?: string[];
    /** Called with increasing fractions, ending at 1. */
    onProgress?: (fraction: number) => void;
    signal?: AbortSignal;
}

export type ModelInfo = Omit<NativeModelInfo, "metadata"> & {
    /** Every GGUF key/value: numeric arrays as typed arrays, string arrays as string[]. */
    metadata: Record<string, unknown>;
    /** Key (K) head size, which quantized KV caches need to be a multiple of 32. */
    headDim: number;
};

export interface TokenizeOptions {
    /** Add the model's special tokens (BOS/EOS) as it asks for. @default true */
    addSpecial?: boolean;
    /** Parse special-token text such as "<|eot_id|>" into special tokens. @default false */
    parseSpecial?: boolean;
}

export interface DetokenizeOptions {
    /** Drop the leading BOS / trailing EOS the model adds. @default false */
    removeSpecial?: boolean;
    /** Render special tokens as their text. @default false */
    unparseSpecial?: boolean;
}

const LOAD_KEYS = ["gpuLayers", "fitContextSize", "fitMarginBytes", "useMmap", "useMlock", "vocabOnly", "rpcServers", "onProgress", "signal"] as const;

async function checkModelFile(path: string): Promise<void> {
    let st;
    try {
        st = await stat(path);
    } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ENOTDIR") throw new LlamaError("ERR_FILE_NOT_FOUND", `model file not found: ${path}`);
        throw new LlamaError("ERR_INVALID_MODEL", `cannot read model file ${path}: ${(err as Error).message}`);
    }
    if (st.isDirectory()) throw new LlamaError("ERR_INVALID_MODEL", `${path} is a directory, not a GGUF file`);
    if (!st.isFile()) throw new LlamaError("ERR_INVALID_MODEL", `${path} is not a regular file`);
    const head = Buffer.alloc(8);
    const fh = await open(path, "r");
    try {
        await fh.read(head, 0, 8, 0);
    } finally {
        await fh.close();
    }
    if (st.size < 24 || head.toString("latin1", 0, 4) !== "GGUF") {
        throw new LlamaError("ERR_INVALID_MODEL", `${path} is not a GGUF file (${st.size < 24 ? "too short" : "bad magic"})`);
    }
}

/** Loads a GGUF model. Never blocks the event loop; abort with `signal`. */
export async function loadModel(path: string, options?: LoadModelOptions): Promise<Model> {
    if (!is.string(path) || path.length === 0) throw invalidOption("path", "a non-empty string", path);
    const o = optionsObject("options", options);
    checkKnownKeys("loadModel", o, LOAD_KEYS);
    const gpuLayersOption = parseGpuLayers(o.gpuLayers);
    const fitContextSize = optInt(o, "fitContextSize", 4096, 1, 1 << 24);
    const fitMarginBytes = optInt(o, "fitMarginBytes", DEFAULT_FIT_MARGIN_BYTES, 0, Number.MAX_SAFE_INTEGER);
    const useMmap = optBool(o, "useMmap", true);
    const useMlock = optBool(o, "useMlock", false);
    const vocabOnly = optBool(o, "vocabOnly", false);
    const onProgress = optFunction<(f: number) => void>(o, "onProgress");
    const signal = optSignal(o);
    const rpcServers = o.rpcServers ?? [];
    if (!Array.isArray(rpcServers) || rpcServers.length > 16) throw invalidOption("rpcServers", "an array of at most 16 \"host:port\" strings", o.rpcServers);
    rpcServers.forEach((e, i) => parseEndpoint(`rpcServers[${i}]`, e));
    if (signal?.aborted) throw abortedError("model loading", signal.reason);

    await checkModelFile(path);
    if (rpcServers.length > 0) await checkRpcServers(rpcServers as string[]);
    if (signal?.aborted) throw abortedError("model loading", signal.reason);
    if (gpuLayersOption === "auto" && (vocabOnly || rpcServers.length > 0)) {
        throw new LlamaError("ERR_UNSUPPORTED", 'gpuLayers "auto" fits this machine\'s devices for a full model: not with vocabOnly or rpcServers (give a layer count)');
    }
    const gpuLayers = gpuLayersOption === "auto" ? await fitGpuLayers(path, fitContextOptions(fitContextSize), fitMarginBytes) : gpuLayersOption;
    if (signal?.aborted) throw abortedError("model loading", signal.reason);

    // Progress arrives from a loader thread; pass on only increasing values and end at 1. A
    // callback that throws stops the load, and its error becomes the rejection's cause (thrown
    // into the native callback, it was only a DEP0168 warning per call, and the load went on).
    let last = -1;
    let progressError: { error: unknown } | undefined;
    const abort = abortFlag(signal);
    const progress = onProgress
        ? (p: number) => {
              if (p <= last || progressError) return;
              last = p;
              try {
                  onProgress(p);
              } catch (error) {
                  progressError = { error };
                  Atomics.store(abort.flag, 0, 1);
              }
          }
        : undefined;
    const progressFailed = () =>
        new LlamaError("ERR_ABORTED", `model loading stopped: onProgress threw: ${String((progressError!.error as Error)?.message ?? progressError!.error)}`, { cause: progressError!.error });
    try {
        const { model, info } = await callNative(() =>
            binding().NativeModel.load(path, { gpuLayers, useMmap, useMlock, vocabOnly, abortFlag: abort.flag, onProgress: progress, ...(rpcServers.length > 0 ? { rpcServers: rpcServers as string[] } : {}) }),
        ).catch((err: unknown) => {
            throw progressError ? progressFailed() : err;
        });
        // The native progress callbacks are queued on the event loop; let them run first.
        await new Promise((r) => setImmediate(r));
        if (progress && last < 1) progress(1);
        if (progressError) {
            model.dispose();
            throw progressFailed();
        }
        return new Model(model, info, path, vocabOnly, gpuLayers);
    } finally {
        abort.release();
    }
}

// The context common/fit reserves room for under gpuLayers "auto": createContext's defaults
// at that size (the model is not loaded yet, so nothing model-specific).
function fitContextOptions(contextSize: number) {
    return { contextSize, batchSize: 512, ubatchSize: 512, sequences: 1, threads: defaultThreads(), kvType: KV_TYPES.f16, poll: 50, attention: binding().hasFusedAttention ? ("fused" as const) : ("ggml" as const) };
}

export class Model {
    readonly info: Readonly<ModelInfo>;
    /** Layers offloaded to the GPU as loaded (what gpuLayers "auto" chose; -1: all). */
    readonly gpuLayers: number;
    readonly path: string;
    readonly vocabOnly: boolean;
    #native: NativeModel | null;
    // Contexts are held weakly: one dropped without dispose() becomes unreachable, and the GC
    // frees its llama.cpp context through the native object's finalizer (500 dropped contexts
    // used to stay alive with the model: 50 MB -> 812 MB). The registry, a safety net behind
    // dispose(), forgets the collected ones.
    #contexts = new Set<WeakRef<{ dispose(): Promise<void> }>>();
    #contextRefs = new WeakMap<object, WeakRef<{ dispose(): Promise<void> }>>();
    #contextRegistry = new FinalizationRegistry<WeakRef<{ dispose(): Promise<void> }>>((ref) => this.#contexts.delete(ref));
    #pending = new Set<Promise<unknown>>();
    #chatTemplates = new Map<string, Promise<ChatTemplates>>();
    #disposing: Promise<void> | null = null;

    /** @internal use loadModel() */
    constructor(native: NativeModel, info: NativeModelInfo, path: string, vocabOnly: boolean, gpuLayers = 0) {
        this.#native = native;
        this.gpuLayers = gpuLayers;
        const arch = info.architecture;
        const keyLength = info.metadata[`${arch}.attention.key_length`];
        const headDim = typeof keyLength === "number" ? keyLength : info.heads > 0 ? Math.floor(info.embeddingSize / info.heads) : 0;
        this.info = Object.freeze({ ...info, headDim });
        this.path = path;
        this.vocabOnly = vocabOnly;
    }

    get disposed(): boolean {
        return this.#native === null;
    }

    /** @internal */
    get native(): NativeModel {
        if (!this.#native || this.#disposing) throw disposedError("model");
        return this.#native;
    }

    /** @internal keeps dispose() waiting for calls in flight */
    track<T>(p: Promise<T>): Promise<T> {
        this.#pending.add(p);
        const done = () => this.#pending.delete(p);
        p.then(done, done);
        return p;
    }

    async tokenize(text: string, options?: TokenizeOptions): Promise<Int32Array> {
        if (!is.string(text)) throw invalidOption("text", "a string", text);
        const o = optionsObject("options", options);
        checkKnownKeys("tokenize", o, ["addSpecial", "parseSpecial"]);
        const addSpecial = optBool(o, "addSpecial", true);
        const parseSpecial = optBool(o, "parseSpecial", false);
        const native = this.native;
        return this.track(callNative(() => native.tokenize(text, { addSpecial, parseSpecial })));
    }

    /**
     * tokenize() on the calling thread, for short texts (at most 4096 UTF-8 bytes): a sentence
     * takes microseconds, less than the worker-thread hop the async call pays. Longer texts throw
     * ERR_INVALID_OPTION (use tokenize(), which never blocks the event loop).
     */
    tokenizeSync(text: string, options?: TokenizeOptions): Int32Array {
        if (!is.string(text)) throw invalidOption("text", "a string", text);
        const o = optionsObject("options", options);
        checkKnownKeys("tokenizeSync", o, ["addSpecial", "parseSpecial"]);
        const addSpecial = optBool(o, "addSpecial", true);
        const parseSpecial = optBool(o, "parseSpecial", false);
        // UTF-8 is at most 3 bytes per UTF-16 unit: only long strings need counting
        const bytes = text.length * 3 <= SYNC_TOKENIZE_MAX_BYTES ? 0 : Buffer.byteLength(text, "utf8");
        if (bytes > SYNC_TOKENIZE_MAX_BYTES) {
            throw invalidOption("text", `at most ${SYNC_TOKENIZE_MAX_BYTES} UTF-8 bytes for tokenizeSync (use tokenize())`, `${bytes} bytes`);
        }
        const native = this.native;
        try {
            return native.tokenizeSync(text, { addSpecial, parseSpecial });
        } catch (err) {
            throw fromNative(err);
        }
    }

    /** detokenize() on the calling thread, for at most 1024 tokens (else ERR_INVALID_OPTION). */
    detokenizeSync(tokens: TokenInput, options?: DetokenizeOptions): string {
        const ids = toTokenArray("tokens", tokens, this.info.vocabSize);
        if (ids.length > SYNC_DETOKENIZE_MAX_TOKENS) {
            throw invalidOption("tokens", `at most ${SYNC_DETOKENIZE_MAX_TOKENS} tokens for detokenizeSync (use detokenize())`, `${ids.length} tokens`);
        }
        const o = optionsObject("options", options);
        checkKnownKeys("detokenizeSync", o, ["removeSpecial", "unparseSpecial"]);
        const removeSpecial = optBool(o, "removeSpecial", false);
        const unparseSpecial = optBool(o, "unparseSpecial", false);
        const native = this.native;
        try {
            return native.detokenizeSync(ids, { removeSpecial, unparseSpecial });
        } catch (err) {
            throw fromNative(err);
        }
    }

    async detokenize(tokens: TokenInput, options?: DetokenizeOptions): Promise<string> {
        return new TextDecoder().decode(await this.detokenizeBytes(tokens, options));
    }

    /** The UTF-8 bytes of detokenized text (a token run may end inside a character). */
    async detokenizeBytes(tokens: TokenInput, options?: DetokenizeOptions): Promise<Uint8Array> {
        const ids = toTokenArray("tokens", tokens, this.info.vocabSize);
        const o = optionsObject("options", options);
        checkKnownKeys("detokenize", o, ["removeSpecial", "unparseSpecial"]);
        const removeSpecial = optBool(o, "removeSpecial", false);
        const unparseSpecial = optBool(o, "unparseSpecial", false);
        const native = this.native;
        return this.track(callNative(() => native.detokenize(ids, { removeSpecial, unparseSpecial })));
    }

    /** Each token's text piece as bytes (synchronous: a table lookup per token). */
    tokenPieces(tokens: TokenInput, options: { special?: boolean } = {}): Uint8Array[] {
        const ids = toTokenArray("tokens", tokens, this.info.vocabSize);
        const native = this.native;
        let pieces;
        try {
            pieces = native.tokenPieces(ids, options.special ?? true);
        } catch (err) {
            throw fromNative(err); // a synchronous native error (no tokenizer) as a LlamaError
        }
        const { bytes, offsets } = pieces;
        return Array.from(ids, (_, i) => bytes.subarray(offsets[i]!, offsets[i + 1]!));
    }

    /** True for end-of-generation tokens (EOS, EOT and the like). */
    isEndOfGeneration(token: number): boolean {
        // A model without an EOT has eot = -1: -1 must not pass as one of its tokens.
        if (!is.integer(token) || token < 0 || token >= this.info.vocabSize) {
            throw new LlamaError("ERR_INVALID_TOKEN", `Expected a token id between 0 and ${this.info.vocabSize - 1} for token but received ${String(token)}`);
        }
        return token === this.info.eos || token === this.info.eot;
    }

    /** Renders OpenAI-shaped messages with the model's chat template (llama.cpp's Jinja engine). */
    applyChatTemplate(messages: ChatMessage[], options?: ApplyChatTemplateOptions): Promise<string> {
        return applyChatTemplate(this, messages, options);
    }

    /** The tokens a chat session evaluates for `messages`: message text never becomes control tokens. */
    tokenizeChat(messages: ChatMessage[], options?: ApplyChatTemplateOptions): Promise<Int32Array> {
        return tokenizeChat(this, messages, options);
    }

    /** A conversation with history, prompt-cache reuse, context shift and tool calls. */
    createChatSession(options?: ChatSessionOptions): Promise<ChatSession> {
        return createChatSession(this, options);
    }

    /** @internal the compiled chat template for a spec, compiled once per model */
    chatTemplates(spec: TemplateSpec): Promise<ChatTemplates> {
        if (this.#disposing) return Promise.reject(disposedError("model"));
        const key = JSON.stringify(spec);
        let t = this.#chatTemplates.get(key);
        if (!t) {
            t = ChatTemplates.create(this, spec);
            this.#chatTemplates.set(key, t);
            t.catch(() => this.#chatTemplates.delete(key));
        }
        return t;
    }

    /**
     * The memory this model and a context with `options` take on each device (host included),
     * from llama.cpp's no_alloc load (common/fit): weights, KV cache and compute buffers, in bytes.
     */
    async estimateMemory(options?: ContextOptions): Promise<MemoryEstimate> {
        if (this.vocabOnly) throw new LlamaError("ERR_UNSUPPORTED", "a model loaded with vocabOnly has no weights: it has no memory estimate");
        const resolved = resolveContextOptions(this.info, options);
        void this.native; // throws when disposed
        return this.track(estimateMemory(this.path, this.gpuLayers, resolved.native));
    }

    async createContext(options?: ContextOptions): Promise<Context> {
        if (this.vocabOnly) throw new LlamaError("ERR_UNSUPPORTED", "a model loaded with vocabOnly has no weights: it cannot create contexts");
        const resolved = resolveContextOptions(this.info, options);
        const native = this.native;
        const created = await this.track(callNative(() => binding().NativeContext.create(native as never, resolved.native)));
        const ctx = new Context(this, created, resolved);
        this.#holdWeakly(ctx);
        return ctx;
    }

    /** A slot pool: one context whose sequences serve concurrent requests, each on the slot with the longest cached prefix. */
    createPool(options?: PoolOptions): Promise<Pool> {
        return createPool(this, options);
    }

    /** A context for sentence vectors and reranking (see EmbeddingContextOptions). */
    async createEmbeddingContext(options?: EmbeddingContextOptions): Promise<EmbeddingContext> {
        const ectx = await createEmbeddingContext(this, options);
        if (!ectx.disposed) this.#holdWeakly(ectx);
        return ectx;
    }

    #holdWeakly(ctx: { dispose(): Promise<void> }): void {
        const ref = new WeakRef(ctx);
        this.#contexts.add(ref);
        this.#contextRefs.set(ctx, ref);
        this.#contextRegistry.register(ctx, ref, ref);
    }

    /** @internal */
    contextClosed(ctx: { dispose(): Promise<void> }): void {
        const ref = this.#contextRefs.get(ctx);
        if (!ref) return;
        this.#contexts.delete(ref);
        this.#contextRefs.delete(ctx);
        this.#contextRegistry.unregister(ref);
    }

    /** Frees the model and every context it opened. Idempotent. */
    dispose(): Promise<void> {
        this.#disposing ??= (async () => {
            await Promise.allSettled([...this.#pending]);
            await Promise.allSettled([...this.#contexts].map((r) => r.deref()?.dispose()));
            for (const t of await Promise.allSettled([...this.#chatTemplates.values()])) if (t.status === "fulfilled") t.value.dispose();
            this.#chatTemplates.clear();
            this.#native?.dispose();
            this.#native = null;
        })();
        return this.#disposing;
    }

    [Symbol.asyncDispose](): Promise<void> {
        return this.dispose();
    }
}
