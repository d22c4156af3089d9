// createEmbeddingContext() options: checked and resolved here, before anything reaches
// llama.cpp (which asserts, and kills the process, on shapes it cannot run).
import { binding } from "../binding.js";
import { defaultThreads, type AttentionMode } from "../context.js";
import type { ModelInfo } from "../model.js";
import { checkKnownKeys, optEnum, optInt, optionsObject } from "../validate.js";
import { POOLING_IDS, type NativeEmbeddingCreateOptions, type PoolingType } from "./native.js";

export type NormalizeMode = "l2" | "none";

export interface EmbeddingContextOptions {
    /**
     * Most tokens in one text (a longer one is rejected, or cut with `truncate`). Models with
     * learned absolute positions (bert) cannot exceed their training context.
     * @default min(trainContextSize, 512)
     */
    contextSize?: number;
    /**
     * Most tokens per llama_decode: texts are packed into batches up to this size; at least
     * contextSize. Attention sees the whole batch with other texts masked out; both CPU
     * kernels skip the key blocks a tile of queries cannot see, so what grows with the square
     * of this is only the mask scan (about 5% of a BERT-base forward is attention at 512).
     * @default max(contextSize, 512)
     */
    batchSize?: number;
    /** Most texts per batch (one sequence each; llama.cpp allows 256). @default 64 */
    sequences?: number;
    /** Compute threads. @default defaultThreads() */
    threads?: number;
    /**
     * How token vectors become one vector per text; "none" gives every token's vector, "rank"
     * runs a reranker's classification head (see rank()).
     * @default the model's own {arch}.pooling_type; without one, "last" for causal models and "mean" otherwise
     */
    pooling?: PoolingType;
    /** "l2" scales each vector to unit length (cosine similarity is then a dot product). @default "l2" */
    normalize?: NormalizeMode;
    /** @default "fused" when built in, else "ggml" */
    attention?: AttentionMode;
    /** Idle worker thread spinning, 0-100. @default 50 */
    threadPolling?: number;
}

export interface ResolvedEmbeddingOptions {
    native: NativeEmbeddingCreateOptions;
    pooling: PoolingType;
    normalize: NormalizeMode;
    /** Most tokens per text. */
    maxTokens: number;
}

const KEYS = ["contextSize", "batchSize", "sequences", "threads", "pooling", "normalize", "attention", "threadPolling"] as const;
const POOLINGS = Object.keys(POOLING_IDS) as PoolingType[];
/** Architectures whose attention is bidirectional unless the GGUF says otherwise. */
const ENCODER_ARCHS = new Set(["bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert", "neo-bert", "eurobert"]);
/** Architectures with learned absolute position embeddings: a text cannot outgrow the table. */
const ABSOLUTE_POSITION_ARCHS = new Set(["bert"]);

export function isCausal(info: ModelInfo): boolean {
    const v = info.metadata[`${info.architecture}.attention.causal`];
    return typeof v === "boolean" ? v : !ENCODER_ARCHS.has(info.architecture);
}

export function modelPooling(info: ModelInfo): PoolingType | undefined {
    const v = info.metadata[`${info.architecture}.pooling_type`];
    return POOLINGS.find((p) => POOLING_IDS[p] === v);
}

export function resolveEmbeddingOptions(info: ModelInfo, path: string, options: unknown): ResolvedEmbeddingOptions {
    const o = optionsObject("options", options);
    checkKnownKeys("createEmbeddingContext", o, KEYS);
    const train = info.trainContextSize > 0 ? info.trainContextSize : 2048;
    const absolute = ABSOLUTE_POSITION_ARCHS.has(info.architecture);
    const maxTokens = optInt(o, "contextSize", Math.min(train, 512), 1, absolute ? train : 1 << 20);
    const batchSize = optInt(o, "batchSize", Math.max(maxTokens, 512), maxTokens, 1 << 20);
    const sequences = optInt(o, "sequences", 64, 1, 256);
    const threads = optInt(o, "threads", defaultThreads(), 1, 512);
    const pooling = optEnum<PoolingType>(o, "pooling", modelPooling(info) ?? (isCausal(info) ? "last" : "mean"), POOLINGS);
    const normalize = optEnum<NormalizeMode>(o, "normalize", "l2", ["l2", "none"]);
    const attention = optEnum<AttentionMode>(o, "attention", binding().hasFusedAttention ? "fused" : "ggml", ["fused", "ggml"]);
    const poll = optInt(o, "threadPolling", 50, 0, 100);
    return {
        // The memory (decoders) holds one batch at a time: it is cleared after every decode.
        native: { contextSize: batchSize, batchSize, sequences, threads, pooling: POOLING_IDS[pooling], poll, attention, modelPath: path },
        pooling,
        normalize,
        maxTokens,
    };
}
