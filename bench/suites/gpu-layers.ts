// `--gpu-layers N|auto` for the bench suites: what llamafuse's loadModel, node-llama-cpp's
// loadModel and llama.cpp's tools (-ngl) each take for the same request, and what the tables
// say about the peer when our layers run on a GPU.
import { gpuDevices } from "../../src/fit.js";

/** Layers to offload: a count (-1: all) or "auto" (llama.cpp's common/fit). */
export type BenchGpuLayers = number | "auto";

/** The flag's value: an integer >= -1 or "auto"; null when it is neither. */
export function parseBenchGpuLayers(value: string): BenchGpuLayers | null {
    if (value === "auto") return "auto";
    if (!/^-?\d+$/.test(value)) return null;
    const n = Number(value);
    return n >= -1 && n <= 1_000_000 ? n : null;
}

/** llamafuse's loadModel options (nothing when the flag is absent: the API's default, 0). */
export function ourGpuLayers(g: BenchGpuLayers | undefined): { gpuLayers?: number | "auto" } {
    return g === undefined ? {} : { gpuLayers: g };
}

/** node-llama-cpp's loadModel options: its "max" is our -1 (a negative count means 0 there). */
export function peerGpuLayers(g: BenchGpuLayers | undefined): { gpuLayers?: number | "auto" | "max" } {
    return g === undefined ? {} : { gpuLayers: g === -1 ? "max" : g };
}

/** llama.cpp's -ngl: llama-server takes "auto" (its own common/fit); llama-bench takes counts only (all: 999). */
export function nglArgs(g: BenchGpuLayers | undefined, auto: "auto" | "999" = "999"): string[] {
    if (g === undefined) return [];
    return ["-ngl", g === "auto" ? auto : g === -1 ? "999" : String(g)];
}

/** True when this run puts layers on a GPU: a count other than 0 (or "auto") and a GPU in this build. */
export function offloadsToGpu(g: BenchGpuLayers | undefined): boolean {
    return g !== undefined && g !== 0 && gpuDevices().length > 0;
}

/** What the node-llama-cpp column holds when our layers are on a GPU. */
export const PEER_NO_CUDA_CELL = "n/a: no CUDA peer";
export const PEER_NO_CUDA_NOTE =
    "node-llama-cpp is not run with --gpu-layers on a GPU: its CUDA prebuilt (143 MB) does not fit in what a device run can carry (64 MiB), and its CPU prebuilt against our GPU layers would not be a comparison; llama-bench / llama-server built with CUDA from the pinned tree are the outside peer";
