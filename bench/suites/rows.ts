// What every suite shares: the suite names, the one row shape (what was measured, ours, the
// peer's, the ratio), the options a suite takes and the 1B-class model shape. A leaf module,
// so a suite can use them without importing suites.ts, which imports every suite.
import type { BenchGpuLayers } from "./gpu-layers.js";

export const SUITES = ["tokenize", "forward", "forward-1b", "sampling", "attention", "depth", "serve", "chat", "embed"] as const;
export type SuiteName = (typeof SUITES)[number];

export interface BenchRow {
    suite: SuiteName;
    test: string;
    /** Model or vocabulary file (basename), or the tensor shape for kernel rows. */
    model: string;
    threads: number;
    unit: string;
    llamafuse: number;
    /** The peer measured in the same run (for attention rows: ggml's kernel, the one node-llama-cpp runs). */
    nodeLlamaCpp: number | null;
    /** >1: llamafuse is better (faster rate or shorter time). */
    ratio: number | null;
    /** llama.cpp's own tool for the same work (llama-bench, or the suite's `llamaTool`), where it is built. */
    llamaBench: number | null;
}

export interface SuiteOptions {
    threads: number;
    quick: boolean;
    /** GGUF for the forward and depth suites (default: their own). */
    model?: string;
    noPeer?: boolean;
    cacheDir?: string;
    log: (line: string) => void;
    /** --gpu-layers: passed to every suite that loads a model (ours, node-llama-cpp's, llama.cpp's tools). */
    gpuLayers?: BenchGpuLayers;
}

export interface SuiteResult {
    suite: SuiteName;
    rows: BenchRow[];
    /** What the peer column means in this suite, and anything a reader must know. */
    notes: string[];
    seconds: number;
    /** The suite's own result, for the JSON (e.g. depth points for the chart). */
    detail: unknown;
    /** Why the node-llama-cpp column is empty, shown in its cells (e.g. no CUDA peer). */
    peerAbsent?: string;
    /** Which llama.cpp tool fills the llamaBench column. @default "llama-bench" */
    llamaTool?: string;
}

/** The 1B-class shape of the targets: Llama-3.2-1B's (16 layers, 2048 wide, 128K vocabulary), Q4_0, random weights. */
export const MODEL_1B = { preset: "llama-3.2-1b", type: "q4_0", seed: 1 } as const;
