// llama.cpp's own llama-embedding as the embed bench's second peer, where a build of it is
// found ($LLAMA_CPP_BIN_DIR, or beside llama-bench). It reads text, not token ids: it gets the
// texts whose tokens llamafuse and node-llama-cpp embed (same llama.cpp tokenizer, same
// commit), and its own count of evaluated tokens is checked against ours. Its time is the
// process's wall time: the "prompt eval time" it prints undercounts for a run of several
// decodes (3.5-4.6 s printed for a run whose GEMMs alone took ~12 s of CPU under perf), so the
// caller subtracts a run of one short text (loading, start-up) instead.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { nglArgs, type BenchGpuLayers } from "./gpu-layers.js";
import { findLlamaBench } from "./meta.js";

const run = promisify(execFile);

/** Between texts in the prompt file: a string random text does not contain (no newline: texts may have some). */
export const EMBD_SEPARATOR = "<|llamafuse-bench-sep|>";

/** The llama-embedding binary: in $LLAMA_CPP_BIN_DIR, or beside the llama-bench found; null when neither has one. */
export function findLlamaEmbedding(): string | null {
    const lb = findLlamaBench().path;
    const dirs = [process.env.LLAMA_CPP_BIN_DIR, lb ? path.dirname(lb) : undefined].filter((d): d is string => !!d);
    return dirs.map((d) => path.join(d, "llama-embedding")).find((p) => existsSync(p)) ?? null;
}

export interface LlamaEmbeddingRun {
    /** Wall time of the whole process, ms. */
    ms: number;
    /** Tokens it evaluated. */
    tokens: number;
}

/**
 * Embeds `texts` in one llama-embedding process (its own packing: texts in order, up to
 * -b tokens per decode, a sequence each). Throws with its output's tail when it fails.
 */
export async function runLlamaEmbedding(bin: string, o: { model: string; texts: string[]; threads: number; contextSize: number; gpuLayers?: BenchGpuLayers }): Promise<LlamaEmbeddingRun> {
    if (o.texts.some((t) => t.includes(EMBD_SEPARATOR))) throw new Error("a bench text contains the separator");
    const dir = mkdtempSync(path.join(tmpdir(), "llamafuse-embd-"));
    try {
        const file = path.join(dir, "prompts.txt");
        writeFileSync(file, o.texts.join(EMBD_SEPARATOR));
        const args = [
            "-m", o.model, "-f", file, "--embd-separator", EMBD_SEPARATOR, "-t", String(o.threads), "-tb", String(o.threads),
            "-c", String(o.contextSize), "-b", String(o.contextSize), "-ub", String(o.contextSize), "-fa", "on", ...nglArgs(o.gpuLayers),
            // its timings are on only with --perf, and printed at the info level only with -v
            "--perf", "-v",
        ];
        let out: string;
        const t0 = performance.now();
        try {
            const r = await run(bin, args, { maxBuffer: 256 << 20, timeout: 1_800_000 });
            out = r.stdout + r.stderr;
        } catch (err) {
            const e = err as { stdout?: string; stderr?: string; message: string };
            throw new Error(`llama-embedding failed: ${e.message}\n${String(e.stderr ?? "").slice(-2000)}`);
        }
        // llama_perf_context_print: prompt eval time =   1234.56 ms /  5678 tokens (...)
        const m = /prompt eval time\s*=\s*([\d.]+)\s*ms\s*\/\s*(\d+)\s*tokens/.exec(out);
        if (!m) throw new Error(`llama-embedding printed no prompt eval time:\n${out.slice(-2000)}`);
        return { ms: performance.now() - t0, tokens: Number(m[2]) };
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}
