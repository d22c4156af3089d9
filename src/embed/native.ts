// The shape of native/embedding.cpp as src/ sees it (merged into NativeBinding in binding.ts).
import type { NativeModel } from "../binding.js";

/** llama_pooling_type values (llama.h). */
export const POOLING_IDS = { none: 0, mean: 1, cls: 2, last: 3, rank: 4 } as const;
export type PoolingType = keyof typeof POOLING_IDS;

export interface NativeEmbeddingCreateOptions {
    /** llama.cpp's n_ctx: the memory a decoder needs for one batch. */
    contextSize: number;
    /** n_batch = n_ubatch: most tokens per llama_decode. */
    batchSize: number;
    sequences: number;
    threads: number;
    pooling: number;
    poll: number;
    attention: "fused" | "ggml";
    /** Read (header only) to find a classification head: llama.cpp has no API for tensors. */
    modelPath: string;
}

export interface NativeEmbeddingCreated {
    contextSize: number;
    batchSize: number;
    sequences: number;
    /** The pooling llama.cpp applies (POOLING_IDS). */
    pooling: number;
    /** Floats per output row: n_embd_out, or n_cls_out for rank pooling. */
    dimensions: number;
    hasRankHead: boolean;
    /** tokenizer.chat_template.rerank, with {query} and {document} placeholders. */
    rerankTemplate: string | null;
    bos: number;
    eos: number;
    sep: number;
    addBos: boolean;
    addEos: boolean;
    addSep: boolean;
}

export interface NativeEmbeddingContext {
    /** Creates the llama_context of this new, empty instance (once). */
    init(model: NativeModel, o: NativeEmbeddingCreateOptions): Promise<NativeEmbeddingCreated>;
    /** All texts back to back; offsets has n+1 entries. Resolves with n × dim floats (pooling none: tokens × dim). */
    embed(tokens: Int32Array, offsets: Uint32Array, abortFlag: Int32Array): Promise<Float32Array>;
    dispose(): void;
}

export interface NativeEmbeddingBinding {
    NativeEmbeddingContext: new () => NativeEmbeddingContext;
}
