// synthModel(): writes a llama-family (llama, qwen2) or BERT-family (bert, nomic-bert, jina-bert-v2) GGUF
// with random weights in an exact shape, so any benchmark shape runs with no download. The
// vocabulary is copied whole from one of llama.cpp's vocab files, so tokenization is real.
// The weights are deterministic in the
// seed: each chunk of each tensor draws from its own stream, keyed by the tensor's name
// and the chunk's index, so one seed gives the same underlying floats whatever the type.
// Tensors are generated and written one chunk at a time: memory stays at a few MB for
// any model size.

import { existsSync, readFileSync } from "node:fs";
import { endianness } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { LlamaError } from "../errors.js";
import {
    quantizeQ4_0, quantizeQ4_K, quantizeQ5_K, quantizeQ6_K, quantizeQ8_0, f32ToF16Bits,
    Q4_0_BLOCK_BYTES, Q4_K_BLOCK_BYTES, Q5_K_BLOCK_BYTES, Q6_K_BLOCK_BYTES, Q8_0_BLOCK_BYTES,
} from "./gguf/quant.js";
import { Xoshiro128, hashString, normalTable } from "./gguf/random.js";
import { readGguf } from "./gguf/reader.js";
import { GgmlType, type GgufMetadata, type GgufValue } from "./gguf/types.js";
import { encodeGgufHeader, writeGguf, type GgufTensorSource } from "./gguf/writer.js";
import { checkKnownKeys, invalidOption, is, optBool, optEnum, optFunction, optInt, optNumber, optSignal, optionsObject } from "../validate.js";

/**
 * Type of the weight matrices. "q4_k_m" and "q5_k_m" follow llama-quantize's Q4_K_M and
 * Q5_K_M mixes: Q4_K (Q5_K), with Q6_K for the output matrix (token_embd when tied) and for
 * attn_v and ffn_down in the layers llama-quantize gives more bits (the first and last
 * eighth, and every third between).
 */
export type SynthType = "f32" | "f16" | "q8_0" | "q4_0" | "q4_k_m" | "q5_k_m";
export type SynthArchitecture = "llama" | "qwen2" | "bert" | "nomic-bert" | "jina-bert-v2";
export type SynthPreset = "tiny" | "llama-3.2-1b" | "llama-3.1-8b" | "qwen2.5-0.5b" | "bert-tiny" | "bert-base" | "embed-0.6b";
/** llama_pooling_type names: what {arch}.pooling_type says an embedding context should do. */
export type SynthPooling = "none" | "mean" | "cls" | "last" | "rank";
const POOLING_TYPE_IDS: Record<SynthPooling, number> = { none: 0, mean: 1, cls: 2, last: 3, rank: 4 };

export interface SynthShape {
    architecture: SynthArchitecture;
    layers: number;
    embedding: number;
    heads: number;
    headsKv: number;
    /** feed_forward_length */
    ff: number;
    /** Per-head size; embedding / heads unless given. */
    headDim?: number;
    /** A vocab name ("llama-bpe" → deps/llama.cpp/models/ggml-vocab-llama-bpe.gguf) or a path to any GGUF with tokenizer.* keys. */
    vocab: string;
    contextLength: number;
    ropeTheta: number;
    rmsEps: number;
    /** No output.weight: llama.cpp reuses token_embd for the output projection. */
    tieEmbeddings: boolean;
    /** attn_q/k/v.bias tensors (Qwen2; BERT always has them). */
    qkvBias: boolean;
    /** {arch}.pooling_type, for embedding models; null writes none. @default null; "cls" for bert ("rank" with rankHead) */
    pooling?: SynthPooling | null;
    /** bert only: a reranker's classification head (cls.weight/bias, cls.output.weight/bias with one output). @default false */
    rankHead?: boolean;
}

/** Shapes of the published models (from their config.json), with random weights. */
export const synthPresets: Readonly<Record<SynthPreset, Readonly<SynthShape>>> = {
    // Small enough for unit tests, yet with GQA and a 64-wide head like real models.
    tiny: {
        architecture: "llama", layers: 2, embedding: 128, heads: 2, headsKv: 1, ff: 384, vocab: "llama-spm",
        contextLength: 2048, ropeTheta: 10000, rmsEps: 1e-5, tieEmbeddings: false, qkvBias: false,
    },
    "llama-3.2-1b": {
        architecture: "llama", layers: 16, embedding: 2048, heads: 32, headsKv: 8, ff: 8192, vocab: "llama-bpe",
        contextLength: 131072, ropeTheta: 500000, rmsEps: 1e-5, tieEmbeddings: true, qkvBias: false,
    },
    "llama-3.1-8b": {
        architecture: "llama", layers: 32, embedding: 4096, heads: 32, headsKv: 8, ff: 14336, vocab: "llama-bpe",
        contextLength: 131072, ropeTheta: 500000, rmsEps: 1e-5, tieEmbeddings: false, qkvBias: false,
    },
    "qwen2.5-0.5b": {
        architecture: "qwen2", layers: 24, embedding: 896, heads: 14, headsKv: 2, ff: 4864, vocab: "qwen2",
        contextLength: 32768, ropeTheta: 1000000, rmsEps: 1e-6, tieEmbeddings: true, qkvBias: true,
    },
    // BERT for tests: the bge tokenizer (WordPiece, 30522 tokens) and a tiny encoder.
    "bert-tiny": {
        architecture: "bert", layers: 2, embedding: 128, heads: 2, headsKv: 2, ff: 512, vocab: "bert-bge",
        contextLength: 512, ropeTheta: 10000, rmsEps: 1e-12, tieEmbeddings: false, qkvBias: true, pooling: "cls",
    },
    // bert-base-uncased / bge-base-en-v1.5.
    "bert-base": {
        architecture: "bert", layers: 12, embedding: 768, heads: 12, headsKv: 12, ff: 3072, vocab: "bert-bge",
        contextLength: 512, ropeTheta: 10000, rmsEps: 1e-12, tieEmbeddings: false, qkvBias: true, pooling: "cls",
    },
    // Qwen3-Embedding-0.6B's shape as a llama (no q/k norms), last-token pooling.
    "embed-0.6b": {
        architecture: "llama", layers: 28, embedding: 1024, heads: 16, headsKv: 8, ff: 3072, headDim: 128, vocab: "qwen2",
        contextLength: 32768, ropeTheta: 1000000, rmsEps: 1e-6, tieEmbeddings: true, qkvBias: false, pooling: "last",
    },
};

export interface SynthOptions extends Partial<SynthShape> {
    /** Where to write the .gguf (written beside it, then renamed, so it appears only when complete). */
    output: string;
    /** Base shape; any shape field given alongside it overrides the preset's. */
    preset?: SynthPreset;
    /** Only picks a default vocab file of that size: the vocab file's own token count always wins. */
    vocabSize?: number;
    /** Type of the 2-D weight matrices (norms and biases are always F32). @default "f16" */
    type?: SynthType;
    /** @default 0 */
    seed?: number;
    /**
     * Standard deviation of the logits: token_embd and output.weight are drawn with std
     * embeddingScale/sqrt(embedding), and the final hidden state is RMS-normalised, so
     * logits ≈ N(0, embeddingScale²). Random models have flat logits; a larger scale gives
     * a clear argmax, which makes greedy comparisons between runtimes meaningful. @default 4
     */
    embeddingScale?: number;
    /** Other matrices are drawn with std initScale/sqrt(fan_in), keeping activations O(1) at any width. @default 1 */
    initScale?: number;
    /** general.name. @default "llamafuse synthetic <preset|custom> (random weights)" */
    name?: string;
    /**
     * tokenizer.chat_template.rerank: a reranker's prompt with {query} and {document} in it, as
     * rerankers that need one ship it (llama.cpp's server and llamafuse's rank() fill it in and
     * tokenize it with special tokens parsed). Needs rankHead. @default none
     */
    rerankTemplate?: string;
    /** Fraction of the file written, 0 to 1. */
    onProgress?: (fraction: number) => void;
    signal?: AbortSignal;
}

export interface ResolvedSynthOptions {
    output: string;
    preset: SynthPreset | undefined;
    shape: Required<SynthShape>;
    vocabPath: string;
    type: SynthType;
    seed: number;
    embeddingScale: number;
    initScale: number;
    name: string;
    rerankTemplate: string | null;
    warnings: string[];
}

export interface SynthResult {
    path: string;
    bytes: number;
    parameters: number;
    tensorCount: number;
    vocabSize: number;
    vocabPath: string;
    shape: Required<SynthShape>;
    type: SynthType;
    /** Tensors written as F16 because a quantized type needs rows in multiples of 32. */
    f16Fallback: string[];
    warnings: string[];
    /** Wall time, including reading the vocabulary. */
    seconds: number;
    /** File bytes per second, in MB (1e6). */
    mbPerSecond: number;
}

const knownVocabSizes: Record<number, string> = { 32000: "llama-spm", 128256: "llama-bpe", 151936: "qwen2", 30522: "bert-bge" };
const defaultVocab: Record<SynthArchitecture, string> = { llama: "llama-spm", qwen2: "qwen2", bert: "bert-bge", "nomic-bert": "bert-bge", "jina-bert-v2": "bert-bge" };
const presetNames = Object.keys(synthPresets) as SynthPreset[];
const optionNames = [
    "output", "preset", "architecture", "layers", "embedding", "heads", "headsKv", "ff", "headDim", "vocab", "vocabSize",
    "contextLength", "ropeTheta", "rmsEps", "tieEmbeddings", "qkvBias", "pooling", "rankHead", "type", "seed", "embeddingScale",
    "initScale", "name", "rerankTemplate", "onProgress", "signal",
] as const;
const MAX_DIM = 1 << 20;

/** The package root: the nearest folder above this file with llamafuse's package.json (works from src/ and dist/). */
function packageRoot(): string {
    let dir = dirname(fileURLToPath(import.meta.url));
    for (;;) {
        const pkg = join(dir, "package.json");
        if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "llamafuse") return dir;
        const up = dirname(dir);
        if (up === dir) return resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
        dir = up;
    }
}

/**
 * Where vocab names resolve: $LLAMAFUSE_VOCAB_DIR, else deps/llama.cpp/models under the package
 * root (a checkout), else vendor/llama.cpp/models (a published package carries the small
 * llama-spm and bert-bge vocabularies there, for the tiny presets and the demo).
 */
export function defaultVocabDir(): string {
    if (process.env.LLAMAFUSE_VOCAB_DIR) return process.env.LLAMAFUSE_VOCAB_DIR;
    const checkout = join(packageRoot(), "deps", "llama.cpp", "models");
    const vendored = join(packageRoot(), "vendor", "llama.cpp", "models");
    return !existsSync(checkout) && existsSync(vendored) ? vendored : checkout;
}

function resolveVocabPath(vocab: string): string {
    const isPath = vocab.includes("/") || vocab.includes("\\") || vocab.endsWith(".gguf");
    const path = isPath ? resolve(vocab) : join(defaultVocabDir(), `ggml-vocab-${vocab}.gguf`);
    if (!existsSync(path)) {
        const hint = isPath
            ? "pass a path to an existing GGUF file with tokenizer.* metadata"
            : `the vocab files come with llama.cpp's source, which the native build prepares in deps/llama.cpp; set LLAMAFUSE_VOCAB_DIR or pass vocab as a path`;
        throw new LlamaError("ERR_FILE_NOT_FOUND", `Vocabulary file ${path} not found: ${hint}`);
    }
    return path;
}

/** Applies the preset and defaults, and checks every option; throws LlamaError ERR_INVALID_OPTION. */
export function resolveSynthOptions(options: SynthOptions): ResolvedSynthOptions {
    const o = optionsObject("synthModel options", options);
    checkKnownKeys("synthModel", o, optionNames);
    if (!is.string(o.output) || o.output === "") throw invalidOption("output", "a file path", o.output);
    const preset = o.preset === undefined ? undefined : optEnum(o, "preset", presetNames[0]!, presetNames);
    if (!preset) {
        for (const key of ["layers", "embedding", "heads", "ff"]) {
            if (o[key] === undefined) throw invalidOption(key, "a positive integer (required without a preset)", undefined);
        }
    }
    // Fields given alongside a preset override it; the preset fills the rest.
    const m: Record<string, unknown> = { ...(preset ? synthPresets[preset] : {}) };
    for (const [k, v] of Object.entries(o)) if (v !== undefined) m[k] = v;

    const architecture = optEnum<SynthArchitecture>(m, "architecture", "llama", ["llama", "qwen2", "bert", "nomic-bert", "jina-bert-v2"]);
    const bert = architecture === "bert" || architecture === "nomic-bert" || architecture === "jina-bert-v2";
    const layers = optInt(m, "layers", 0, 1, 4096);
    const embedding = optInt(m, "embedding", 0, 1, MAX_DIM);
    const heads = optInt(m, "heads", 0, 1, embedding);
    const headsKv = optInt(m, "headsKv", heads, 1, heads);
    // llama.cpp's BERT graph has no GQA and no head size of its own.
    if (bert && headsKv !== heads) throw invalidOption("headsKv", `heads (${heads}) for ${architecture}`, headsKv);
    if (bert && m.headDim !== undefined && m.headDim !== embedding / heads) throw invalidOption("headDim", `embedding / heads for ${architecture}`, m.headDim);
    if (heads % headsKv !== 0) throw invalidOption("headsKv", `a divisor of heads (${heads})`, headsKv);
    const ff = optInt(m, "ff", 0, 1, MAX_DIM);
    if (m.headDim === undefined && embedding % heads !== 0) {
        throw invalidOption("headDim", `a value (embedding ${embedding} is not a multiple of heads ${heads})`, undefined);
    }
    const headDim = optInt(m, "headDim", embedding / heads, 2, 4096);
    if (headDim % 2 !== 0) throw invalidOption("headDim", "an even integer (RoPE rotates pairs)", headDim);
    // The Qwen2 loader creates attn_q as {n_embd, n_embd}: the heads must tile the embedding exactly.
    if (architecture === "qwen2" && heads * headDim !== embedding) {
        throw invalidOption("headDim", `embedding / heads (${embedding / heads}) for qwen2`, headDim);
    }
    const contextLength = optInt(m, "contextLength", 4096, 1, 2 ** 31 - 1);
    const ropeTheta = optNumber(m, "ropeTheta", 10000, 1, 1e12);
    const rmsEps = optNumber(m, "rmsEps", bert ? 1e-12 : 1e-5, 1e-12, 1);
    const tieEmbeddings = optBool(m, "tieEmbeddings", false);
    // BERT and jina-bert-v2 have biases everywhere; nomic-bert (nomic-embed-text) has none outside its norms.
    const qkvBias = architecture === "bert" || architecture === "jina-bert-v2" || (architecture !== "nomic-bert" && optBool(m, "qkvBias", architecture === "qwen2"));
    const rankHead = optBool(m, "rankHead", false);
    if (rankHead && architecture !== "bert") throw invalidOption("rankHead", "false (a classification head is written for bert only)", rankHead);
    const poolings: SynthPooling[] = ["none", "mean", "cls", "last", "rank"];
    // A head asked for without a pooling of the caller's own makes a reranker (a preset's "cls" yields).
    if (rankHead && o.pooling === undefined) m.pooling = "rank";
    const pooling = m.pooling === null ? null : optEnum<SynthPooling | "">(m, "pooling", bert ? (rankHead ? "rank" : architecture === "bert" ? "cls" : "mean") : "", poolings) || null;
    if (pooling === "rank" && !rankHead) throw invalidOption("pooling", `not "rank" without rankHead (llama.cpp would pool with no head)`, pooling);

    const vocabSize = m.vocabSize === undefined ? undefined : optInt(m, "vocabSize", 0, 1, 2 ** 31 - 1);
    // Without a preset, a vocabSize that matches a known vocab file picks that file.
    const vocab = m.vocab ?? (!preset && vocabSize !== undefined ? knownVocabSizes[vocabSize] : undefined) ?? defaultVocab[architecture];
    if (!is.string(vocab) || vocab === "") throw invalidOption("vocab", "a vocab name or a path to a GGUF file", vocab);
    const vocabPath = resolveVocabPath(vocab);

    const type = optEnum<SynthType>(m, "type", "f16", SYNTH_TYPES);
    const seed = optInt(m, "seed", 0, 0, Number.MAX_SAFE_INTEGER);
    const embeddingScale = optNumber(m, "embeddingScale", 4, 1e-6, 1e6);
    const initScale = optNumber(m, "initScale", 1, 0, 1e6);
    const name = m.name ?? `llamafuse synthetic ${preset ?? "custom"} (random weights)`;
    if (!is.string(name)) throw invalidOption("name", "a string", name);
    const rerankTemplate = m.rerankTemplate ?? null;
    if (rerankTemplate !== null) {
        if (!is.string(rerankTemplate) || !rerankTemplate.includes("{query}") || !rerankTemplate.includes("{document}")) {
            throw invalidOption("rerankTemplate", "a string with {query} and {document} in it", rerankTemplate);
        }
        if (!rankHead) throw invalidOption("rerankTemplate", "absent without rankHead (only a reranker uses it)", rerankTemplate);
    }
    optFunction(m, "onProgress");
    optSignal(m, "signal");

    return {
        output: resolve(o.output),
        preset,
        shape: {
            architecture, layers, embedding, heads, headsKv, ff, headDim, vocab, contextLength, ropeTheta, rmsEps,
            tieEmbeddings, qkvBias, pooling, rankHead,
        },
        vocabPath, type, seed, embeddingScale, initScale, name, rerankTemplate, warnings: [],
    };
}

// --- tensors -------------------------------------------------------------------------

/** One tensor to write: 1-D ones/normal in F32, or a matrix drawn N(0, std²) in the model's type. */
export interface SynthTensor {
    name: string;
    dims: number[];
    type: number;
    fill: "ones" | "normal";
    std: number;
}

const CHUNK = 1 << 20; // elements per generated chunk: a multiple of every block size (32, 256) and even

export const SYNTH_TYPES: readonly SynthType[] = ["f32", "f16", "q8_0", "q4_0", "q4_k_m", "q5_k_m"];
const ggmlTypeOf: Record<SynthType, number> = {
    f32: GgmlType.F32, f16: GgmlType.F16, q8_0: GgmlType.Q8_0, q4_0: GgmlType.Q4_0, q4_k_m: GgmlType.Q4_K, q5_k_m: GgmlType.Q5_K,
};
/** llama_ftype: LLAMA_FTYPE_ALL_F32 = 0, _MOSTLY_F16 = 1, _Q4_0 = 2, _Q8_0 = 7, _Q4_K_M = 15, _Q5_K_M = 17 (llama.h). */
const fileTypeOf: Record<SynthType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, q4_k_m: 15, q5_k_m: 17 };
/** Each quantized type's block quantizer: values and bytes per block. */
const QUANTIZERS: Partial<Record<number, { values: number; bytes: number; quantize: (src: Float32Array, dst: Uint8Array) => void }>> = {
    [GgmlType.Q8_0]: { values: 32, bytes: Q8_0_BLOCK_BYTES, quantize: quantizeQ8_0 },
    [GgmlType.Q4_0]: { values: 32, bytes: Q4_0_BLOCK_BYTES, quantize: quantizeQ4_0 },
    [GgmlType.Q4_K]: { values: 256, bytes: Q4_K_BLOCK_BYTES, quantize: quantizeQ4_K },
    [GgmlType.Q5_K]: { values: 256, bytes: Q5_K_BLOCK_BYTES, quantize: quantizeQ5_K },
    [GgmlType.Q6_K]: { values: 256, bytes: Q6_K_BLOCK_BYTES, quantize: quantizeQ6_K },
};

/** llama-quantize's use_more_bits: the layers its Q4_K_M and Q5_K_M give Q6_K attn_v and ffn_down. */
function moreBits(layer: number, layers: number): boolean {
    const eighth = Math.floor(layers / 8);
    return layer < eighth || layer >= Math.floor((7 * layers) / 8) || (layer - eighth) % 3 === 2;
}

const BIAS_STD = 0.02;
/** tokenizer.ggml.token_type_count of the BERT vocab files (sentence A and B). */
const BERT_TOKEN_TYPES = 2;

function planTensors(r: ResolvedSynthOptions, vocabSize: number): { plans: SynthTensor[]; f16Fallback: string[] } {
    const s = r.shape;
    const plans: SynthTensor[] = [];
    const f16Fallback: string[] = [];
    const matrix = (name: string, ne0: number, ne1: number, std: number, f32 = false): void => {
        if (f32) {
            plans.push({ name, dims: [ne0, ne1], type: GgmlType.F32, fill: "normal", std });
            return;
        }
        let type = ggmlTypeOf[r.type];
        if (r.type === "q4_k_m" || r.type === "q5_k_m") {
            const layer = /^blk\.(\d+)\.(attn_v|ffn_down)\.weight$/.exec(name);
            const output = name === "output.weight" || (name === "token_embd.weight" && s.tieEmbeddings);
            if (output || (layer && moreBits(Number(layer[1]), s.layers))) type = GgmlType.Q6_K;
        }
        // Quantized rows are whole blocks (32 values, 256 for K-quants); llama-quantize also falls back for such tensors.
        const block = QUANTIZERS[type]?.values;
        if (block !== undefined && ne0 % block !== 0) {
            type = GgmlType.F16;
            f16Fallback.push(name);
        }
        plans.push({ name, dims: [ne0, ne1], type, fill: "normal", std });
    };
    const vector = (name: string, n: number, fill: "ones" | "normal"): void => {
        plans.push({ name, dims: [n], type: GgmlType.F32, fill, std: fill === "ones" ? 0 : BIAS_STD });
    };
    const qDim = s.heads * s.headDim;
    const kvDim = s.headsKv * s.headDim;
    const embStd = r.embeddingScale / Math.sqrt(s.embedding);
    const std = (fanIn: number): number => r.initScale / Math.sqrt(fanIn);

    matrix("token_embd.weight", s.embedding, vocabSize, embStd);
    if (s.architecture === "bert" || s.architecture === "nomic-bert" || s.architecture === "jina-bert-v2") {
        planBertTensors(r, matrix, vector);
        return { plans, f16Fallback };
    }
    for (let i = 0; i < s.layers; i++) {
        const b = `blk.${i}`;
        vector(`${b}.attn_norm.weight`, s.embedding, "ones");
        matrix(`${b}.attn_q.weight`, s.embedding, qDim, std(s.embedding));
        matrix(`${b}.attn_k.weight`, s.embedding, kvDim, std(s.embedding));
        matrix(`${b}.attn_v.weight`, s.embedding, kvDim, std(s.embedding));
        if (s.qkvBias) {
            vector(`${b}.attn_q.bias`, qDim, "normal");
            vector(`${b}.attn_k.bias`, kvDim, "normal");
            vector(`${b}.attn_v.bias`, kvDim, "normal");
        }
        matrix(`${b}.attn_output.weight`, qDim, s.embedding, std(qDim));
        vector(`${b}.ffn_norm.weight`, s.embedding, "ones");
        matrix(`${b}.ffn_gate.weight`, s.embedding, s.ff, std(s.embedding));
        matrix(`${b}.ffn_down.weight`, s.ff, s.embedding, std(s.ff));
        matrix(`${b}.ffn_up.weight`, s.embedding, s.ff, std(s.embedding));
    }
    vector("output_norm.weight", s.embedding, "ones");
    if (!s.tieEmbeddings) matrix("output.weight", s.embedding, vocabSize, embStd);
    return { plans, f16Fallback };
}

/**
 * BERT after token_embd (llama.cpp's llama_model_bert): token-type and learned position
 * embeddings, an embedding LayerNorm, then post-norm layers (attention + bias → residual →
 * LayerNorm → GELU FFN + bias → residual → LayerNorm); optionally a reranker's head.
 * nomic-bert: no position table (RoPE), no biases, a SwiGLU FFN (ffn_gate).
 * jina-bert-v2: no position table (ALiBi in the attention mask), biases, a GELU-gated FFN.
 */
function planBertTensors(
    r: ResolvedSynthOptions,
    matrix: (name: string, ne0: number, ne1: number, std: number, f32?: boolean) => void,
    vector: (name: string, n: number, fill: "ones" | "normal") => void,
): void {
    const s = r.shape;
    const e = s.embedding;
    const embStd = r.embeddingScale / Math.sqrt(e);
    const std = (fanIn: number): number => r.initScale / Math.sqrt(fanIn);
    // Added to every token as a row view (no get_rows): ggml's CPU add needs it in F32.
    matrix("token_types.weight", e, BERT_TOKEN_TYPES, embStd, true);
    const nomic = s.architecture === "nomic-bert";
    const jina = s.architecture === "jina-bert-v2";
    if (!nomic && !jina) matrix("position_embd.weight", e, s.contextLength, embStd);
    vector("token_embd_norm.weight", e, "ones");
    vector("token_embd_norm.bias", e, "normal");
    for (let i = 0; i < s.layers; i++) {
        const b = `blk.${i}`;
        for (const x of ["q", "k", "v"]) {
            matrix(`${b}.attn_${x}.weight`, e, e, std(e));
            if (!nomic) vector(`${b}.attn_${x}.bias`, e, "normal");
        }
        matrix(`${b}.attn_output.weight`, e, e, std(e));
        if (!nomic) vector(`${b}.attn_output.bias`, e, "normal");
        vector(`${b}.attn_output_norm.weight`, e, "ones");
        vector(`${b}.attn_output_norm.bias`, e, "normal");
        matrix(`${b}.ffn_up.weight`, e, s.ff, std(e));
        if (nomic || jina) matrix(`${b}.ffn_gate.weight`, e, s.ff, std(e));
        if (!nomic) vector(`${b}.ffn_up.bias`, s.ff, "normal");
        matrix(`${b}.ffn_down.weight`, s.ff, e, std(s.ff));
        if (!nomic) vector(`${b}.ffn_down.bias`, e, "normal");
        vector(`${b}.layer_output_norm.weight`, e, "ones");
        vector(`${b}.layer_output_norm.bias`, e, "normal");
    }
    if (s.rankHead) {
        matrix("cls.weight", e, e, std(e));
        vector("cls.bias", e, "normal");
        // One row: llama.cpp's loader (and llamafuse's model check) want such a tensor in F32.
        matrix("cls.output.weight", e, 1, std(e), true);
        vector("cls.output.bias", 1, "normal");
    }
}

/** Streams a tensor's bytes, one chunk of CHUNK elements at a time, reusing its buffers. */
function* generateTensor(plan: SynthTensor, seed: number): Generator<Uint8Array> {
    const n = plan.dims.reduce((a, b) => a * b, 1);
    if (plan.fill === "ones") {
        yield new Uint8Array(new Float32Array(n).fill(1).buffer);
        return;
    }
    // One stream per chunk, keyed by tensor name and chunk index: any chunk can be made on
    // its own (in any order, or in parallel) and the floats never depend on the output type.
    const stream = hashString(plan.name);
    const rngFor = (done: number): Xoshiro128 => new Xoshiro128(seed, (stream + Math.imul(done / CHUNK, 0x9e3779b1)) >>> 0);
    const table = normalTable(plan.std);
    const size = Math.min(n, CHUNK);
    if (plan.type === GgmlType.F16) {
        // Every value is one of 65536 table entries, so convert the table once instead of each value.
        const table16 = new Uint16Array(table.length);
        for (let i = 0; i < table.length; i++) table16[i] = f32ToF16Bits(table[i]!);
        const chunk = new Uint16Array(size);
        for (let done = 0; done < n; done += size) {
            const part = chunk.subarray(0, Math.min(size, n - done));
            rngFor(done).fillFromTable(part, table16);
            yield new Uint8Array(part.buffer, 0, part.byteLength);
        }
        return;
    }
    const floats = new Float32Array(size);
    const quantizer = QUANTIZERS[plan.type];
    const out = new Uint8Array(quantizer ? (size / quantizer.values) * quantizer.bytes : 0);
    for (let done = 0; done < n; done += size) {
        const part = floats.subarray(0, Math.min(size, n - done));
        rngFor(done).fillFromTable(part, table);
        if (!quantizer) {
            yield new Uint8Array(part.buffer, 0, part.byteLength);
        } else {
            quantizer.quantize(part, out);
            yield out.subarray(0, (part.length / quantizer.values) * quantizer.bytes);
        }
    }
}

// --- metadata ------------------------------------------------------------------------

function buildMetadata(r: ResolvedSynthOptions, vocab: GgufMetadata, vocabSize: number): GgufMetadata {
    const s = r.shape;
    const a = s.architecture;
    const u32 = (value: number): GgufValue => ({ type: "uint32", value });
    const f32 = (value: number): GgufValue => ({ type: "float32", value });
    const m: GgufMetadata = new Map<string, GgufValue>([
        ["general.architecture", { type: "string", value: a }],
        ["general.name", { type: "string", value: r.name }],
        ["general.file_type", u32(fileTypeOf[r.type])],
        ["general.quantization_version", u32(2)],
        ["general.alignment", u32(32)],
        [`${a}.vocab_size`, u32(vocabSize)],
        [`${a}.context_length`, u32(s.contextLength)],
        [`${a}.embedding_length`, u32(s.embedding)],
        [`${a}.block_count`, u32(s.layers)],
        [`${a}.feed_forward_length`, u32(s.ff)],
        [`${a}.attention.head_count`, u32(s.heads)],
        [`${a}.attention.head_count_kv`, u32(s.headsKv)],
    ]);
    if (a === "bert" || a === "nomic-bert" || a === "jina-bert-v2") {
        // LayerNorm, bidirectional attention; bert: learned positions, nomic-bert: RoPE, jina-bert-v2: ALiBi.
        m.set(`${a}.attention.layer_norm_epsilon`, f32(s.rmsEps));
        m.set(`${a}.attention.causal`, { type: "bool", value: false });
        if (a === "nomic-bert") m.set(`${a}.rope.freq_base`, f32(s.ropeTheta));
    } else {
        m.set(`${a}.attention.layer_norm_rms_epsilon`, f32(s.rmsEps));
        m.set(`${a}.rope.freq_base`, f32(s.ropeTheta));
        m.set(`${a}.rope.dimension_count`, u32(s.headDim));
    }
    if (s.pooling !== null) m.set(`${a}.pooling_type`, u32(POOLING_TYPE_IDS[s.pooling]));
    if (s.headDim * s.heads !== s.embedding) {
        // llama.cpp defaults the head size to n_embd / n_head; an override must be spelled out.
        m.set(`${a}.attention.key_length`, u32(s.headDim));
        m.set(`${a}.attention.value_length`, u32(s.headDim));
    }
    // Provenance, so tools and the REPL can say these are random weights.
    m.set("llamafuse.synthetic", { type: "bool", value: true });
    m.set("llamafuse.synth.seed", { type: "uint64", value: BigInt(r.seed) });
    m.set("llamafuse.synth.embedding_scale", f32(r.embeddingScale));
    m.set("llamafuse.synth.init_scale", f32(r.initScale));
    for (const [key, value] of vocab) if (key.startsWith("tokenizer.")) m.set(key, value);
    if (r.rerankTemplate !== null) m.set("tokenizer.chat_template.rerank", { type: "string", value: r.rerankTemplate });
    return m;
}

export interface SynthPlan {
    options: ResolvedSynthOptions;
    metadata: GgufMetadata;
    tensors: SynthTensor[];
    parameters: number;
    vocabSize: number;
    /** Tensors written as F16 because a quantized type needs rows in multiples of 32. */
    f16Fallback: string[];
    /** Exact size of the file that synthModel would write. */
    bytes: number;
}

/** Resolves options and lays out the file without writing anything (for --dry-run and size checks). */
export async function planSynthModel(options: SynthOptions): Promise<SynthPlan> {
    const r = resolveSynthOptions(options);
    const vocabFile = await readGguf(r.vocabPath);
    const tokens = vocabFile.metadata.get("tokenizer.ggml.tokens");
    if (tokens?.type !== "array" || tokens.itemType !== "string") {
        throw new LlamaError("ERR_INVALID_MODEL", `${r.vocabPath} has no tokenizer.ggml.tokens string array`);
    }
    const vocabSize = tokens.value.length;
    const requested = (options as { vocabSize?: unknown }).vocabSize;
    if (requested !== undefined && requested !== vocabSize) {
        r.warnings.push(`vocabSize ${String(requested)} was not used: ${r.vocabPath} has ${vocabSize} tokens`);
    }
    const { plans, f16Fallback } = planTensors(r, vocabSize);
    const metadata = buildMetadata(r, vocabFile.metadata, vocabSize);
    const { header, dataSize } = encodeGgufHeader(metadata, plans);
    return {
        options: r,
        metadata,
        tensors: plans,
        parameters: plans.reduce((sum, p) => sum + p.dims.reduce((a, b) => a * b, 1), 0),
        vocabSize,
        f16Fallback,
        bytes: header.byteLength + dataSize,
    };
}

/** Writes a synthetic model; see SynthOptions. */
export async function synthModel(options: SynthOptions): Promise<SynthResult> {
    if (endianness() !== "LE") throw new LlamaError("ERR_UNSUPPORTED", "synthModel writes typed arrays as GGUF data and needs a little-endian machine");
    const started = performance.now();
    const plan = await planSynthModel(options);
    const r = plan.options;
    const plans = plan.tensors;
    const sources: GgufTensorSource[] = plans.map((p) => ({
        name: p.name,
        dims: p.dims,
        type: p.type,
        data: () => generateTensor(p, r.seed),
    }));
    const onProgress = options.onProgress;
    const { bytes } = await writeGguf(r.output, plan.metadata, sources, {
        signal: options.signal,
        onProgress: onProgress && ((written, total) => onProgress(written / total)),
    });
    const seconds = (performance.now() - started) / 1000;
    return {
        path: r.output,
        bytes,
        parameters: plan.parameters,
        tensorCount: plans.length,
        vocabSize: plan.vocabSize,
        vocabPath: r.vocabPath,
        shape: r.shape,
        type: r.type,
        f16Fallback: plan.f16Fallback,
        warnings: r.warnings,
        seconds,
        mbPerSecond: bytes / 1e6 / seconds,
    };
}
