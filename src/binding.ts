// The one place the native addon's shape is written down, and where it is loaded.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LlamaError } from "./errors.js";
import type { NativeAttentionBinding } from "./attention.js";

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
    tokenPieces(tokens: Int32Array, special: boolean): { bytes: Buffer; offsets: Uint32Array };
    applyChatTemplate(messages: { role: string; content: string }[], addAssistant: boolean, template?: string): string;
    dispose(): void;
}

export interface NativeModelLoadOptions {
    gpuLayers: number;
    useMmap: boolean;
    useMlock: boolean;
    vocabOnly: boolean;
    abortFlag: Int32Array;
    onProgress?: (fraction: number) => void;
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

export interface NativeBinding extends NativeAttentionBinding {
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
    systemInfo(): string;
    supportsMmap: boolean;
    supportsGpuOffload: boolean;
    hasFusedAttention: boolean;
}

/** The package root (where package.json and build/ live), from src/ or dist/. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function loadBinding(): NativeBinding {
    const candidates = [
        process.env.LLAMAFUSE_ADDON,
        path.join(packageRoot, "build", "Release", "llamafuse.node"),
    ].filter((p): p is string => !!p);
    const file = candidates.find((p) => existsSync(p));
    const require = createRequire(import.meta.url);
    try {
        if (!file) throw new Error("llamafuse.node was not found in " + candidates.join(", "));
        return require(file) as NativeBinding;
    } catch (err) {
        throw new LlamaError(
            "ERR_ADDON_LOAD",
            [
                `Could not load the native addon: ${(err as Error).message}`,
                "Possible solutions:",
                "- Build it: npm run build (needs cmake and a C++17 compiler; llama.cpp's source comes from node-llama-cpp's bundle)",
                "- Reinstall: npm ci",
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
