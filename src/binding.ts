// The one place the native addon's shape is written down, and where it is loaded.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LlamaError } from "./errors.js";
import type { NativeAttentionBinding } from "./attention.js";
import { addonCandidates } from "./prebuilt.js";
import type { NativeEmbeddingBinding } from "./embed/native.js";
import type { NativeChatBinding } from "./chat/native.js";
import type { NativeSchedulerBinding } from "./scheduler-native.js";
import type { NativeRpcBinding } from "./rpc.js";
import type { NativeFitBinding } from "./fit.js";

export interface NativeModelInfo {
    architecture: string;
    name: string;
    description: string;
    parameters: number;
    sizeBytes: number;
    layers: number;
    embeddingSize: number;
    heads: number;
    headsKv: number;
    trainContextSize: number;
    vocabSize: number;
    vocabType: string;
    bos: number;
    eos: number;
    eot: number;
    nl: number;
    pad: number;
    addBos: boolean;
    addEos: boolean;
    hasEncoder: boolean;
    isRecurrent: boolean;
    chatTemplate: string | null;
    metadata: Record<string, unknown>;
}

export interface NativeModel {
    tokenize(text: string, o: { addSpecial: boolean; parseSpecial: boolean }): Promise<Int32Array>;
    detokenize(tokens: Int32Array, o: { removeSpecial: boolean; unparseSpecial: boolean }): Promise<Buffer>;
    /** On the calling thread; text of at most 4096 UTF-8 bytes. */
    tokenizeSync(text: string, o: { addSpecial: boolean; parseSpecial: boolean }): Int32Array;
    /** On the calling thread; at most 1024 tokens. */
    detokenizeSync(tokens: Int32Array, o: { removeSpecial: boolean; unparseSpecial: boolean }): string;
    tokenPieces(tokens: Int32Array, special: boolean): { bytes: Buffer; offsets: Uint32Array };
    dispose(): void;
}

export interface NativeModelLoadOptions {
    gpuLayers: number;
    useMmap: boolean;
    useMlock: boolean;
    vocabOnly: boolean;
    abortFlag: Int32Array;
    onProgress?: (fraction: number) => void;
    /** RPC servers whose devices take the offloaded layers (checked to answer). */
    rpcServers?: string[];
}

export interface NativeContextCreateOptions {
    contextSize: number;
    batchSize: number;
    ubatchSize: number;
    sequences: number;
    threads: number;
    kvType: number;
    poll: number;
    attention: "fused" | "ggml";
}

export interface NativeContext {
    /** tokens[i] goes to sequence seqs[i]; rows for want[i] != 0 come back in order. */
    forward(tokens: Int32Array, seqs: Int32Array, want: Uint8Array, abortFlag: Int32Array): Promise<Float32Array>;
    kvRemove(seq: number, p0: number, p1: number): boolean;
    kvCopy(src: number, dst: number, p0: number, p1: number): void;
    kvKeepOnly(seq: number): void;
    kvShift(seq: number, p0: number, p1: number, delta: number): void;
    kvClear(): void;
    kvPositions(seq: number): { min: number; max: number };
    getState(seq: number): Promise<Buffer>;
    setState(data: Uint8Array, seq: number): Promise<void>;
    setAttention(mode: "fused" | "ggml"): void;
    dispose(): void;
}

/** One stage of a sampler chain, as src/sampling.ts resolves it (native code builds it as given). */
export type NativeSamplerStage =
    | { kind: "logit_bias"; tokens: Int32Array; biases: Float32Array }
    | { kind: "penalties"; lastN: number; repeat: number; frequency: number; presence: number }
    | { kind: "dry"; multiplier: number; base: number; allowedLength: number; lastN: number; breakers: string[] }
    | { kind: "top_k"; k: number }
    | { kind: "top_p" | "min_p" | "typical"; p: number }
    | { kind: "top_n_sigma"; n: number }
    | { kind: "xtc"; probability: number; threshold: number; seed: number }
    | { kind: "temp"; t: number }
    | { kind: "temp_ext"; t: number; delta: number; exponent: number }
    | { kind: "mirostat"; tau: number; eta: number; m: number; seed: number }
    | { kind: "mirostat_v2"; tau: number; eta: number; seed: number }
    | { kind: "dist"; seed: number }
    | { kind: "greedy" };

export interface NativeSampleResult {
    token: number;
    /** Present when nTop >= 0. */
    logProb?: number;
    topTokens?: Int32Array;
    topLogProbs?: Float32Array;
}

export interface NativeSampler {
    /** Samples from the context's stored last logits of `seq`; nTop < 0: no log-probs. */
    sample(context: NativeContext, seq: number, nTop: number): Promise<NativeSampleResult>;
    /** The same chain over logits given directly (n_vocab floats, copied). */
    sampleLogits(logits: Float32Array, nTop: number): Promise<NativeSampleResult>;
    /** Resets penalty history, grammar and RNG (back to the seed). */
    reset(): void;
    dispose(): void;
}

export interface NativeBinding extends NativeAttentionBinding, NativeEmbeddingBinding, NativeChatBinding, NativeSchedulerBinding, NativeRpcBinding, NativeFitBinding {
    NativeModel: {
        load(path: string, o: NativeModelLoadOptions): Promise<{ model: NativeModel; info: NativeModelInfo }>;
    };
    NativeContext: {
        create(model: NativeModel, o: NativeContextCreateOptions): Promise<{
            context: NativeContext;
            contextSize: number;
            batchSize: number;
            ubatchSize: number;
            sequences: number;
            canShift: boolean;
        }>;
    };
    NativeSampler: {
        /** abortFlag: JS stores 1 at [0] to give up (ERR_ABORTED at once, even while llama.cpp still builds the grammar). */
        create(model: NativeModel, config: { stages: NativeSamplerStage[]; grammar: string | null }, abortFlag?: Int32Array): Promise<NativeSampler>;
    };
    systemInfo(): string;
    supportsMmap: boolean;
    supportsGpuOffload: boolean;
    hasFusedAttention: boolean;
}

/** The package root (where package.json and build/ live), from src/ or dist/. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The addon file loaded (after the first binding() call). */
export let loadedAddonPath: string | undefined;

function loadBinding(): NativeBinding {
    const require = createRequire(import.meta.url);
    try {
        const candidates = addonCandidates(packageRoot);
        const file = candidates.find((p) => existsSync(p));
        if (!file) throw new Error("llamafuse.node was not found in " + candidates.join(", "));
        const b = require(file) as NativeBinding;
        loadedAddonPath = file;
        return b;
    } catch (err) {
        throw new LlamaError(
            "ERR_ADDON_LOAD",
            [
                `Could not load the native addon: ${(err as Error).message}`,
                "Possible solutions:",
                "- Build it from source: LLAMAFUSE_BUILD_FROM_SOURCE=1 npm rebuild llamafuse (needs cmake and a C++17 compiler)",
                "- In a development checkout: npm run build (llama.cpp's source comes from node-llama-cpp's bundle)",
                "- For a CPU other than the build machine's, rebuild with LLAMAFUSE_PORTABLE=1 npm run build",
            ].join("\n"),
            { cause: err },
        );
    }
}

let cached: NativeBinding | undefined;
/** The addon, loaded on first use (so that importing llamafuse never throws). */
export function binding(): NativeBinding {
    return (cached ??= loadBinding());
}
