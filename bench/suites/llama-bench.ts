// llama.cpp's own llama-bench as a third column, where a build of it is found (it is not
// built by default: LLAMAFUSE_LLAMA_TOOLS=1, or point $LLAMA_BENCH / $LLAMA_CPP_BIN_DIR at
// one). Same model file, same thread count, flash attention on as in our contexts.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { nglArgs, type BenchGpuLayers } from "./gpu-layers.js";

const run = promisify(execFile);

export interface LlamaBenchTest {
    model: string;
    threads: number;
    /** Prompt tokens (pp test); 0 for none. */
    nPrompt: number;
    /** Generated tokens (tg test); 0 for none. */
    nGen: number;
    /** Tokens in the KV cache before each test. @default 0 */
    depth?: number;
    reps: number;
    /** -ngl (--gpu-layers). */
    gpuLayers?: BenchGpuLayers;
}

export interface LlamaBenchResult {
    /** tokens/s (llama-bench's avg_ts) of the pp and tg tests. */
    pp: number | null;
    tg: number | null;
}

interface LlamaBenchJsonRow {
    n_prompt: number;
    n_gen: number;
    avg_ts: number;
}

/** Runs one llama-bench invocation; null when it fails (the row then has no third column). */
export async function runLlamaBench(bin: string, t: LlamaBenchTest): Promise<LlamaBenchResult | null> {
    const args = [
        "-m", t.model, "-t", String(t.threads), "-p", String(t.nPrompt), "-n", String(t.nGen),
        "-d", String(t.depth ?? 0), "-r", String(t.reps), "-fa", "on", "-o", "json", ...nglArgs(t.gpuLayers),
    ];
    try {
        const { stdout } = await run(bin, args, { maxBuffer: 16 << 20, timeout: 600_000 });
        const rows = JSON.parse(stdout) as LlamaBenchJsonRow[];
        return {
            pp: rows.find((r) => r.n_prompt > 0 && r.n_gen === 0)?.avg_ts ?? null,
            tg: rows.find((r) => r.n_gen > 0 && r.n_prompt === 0)?.avg_ts ?? null,
        };
    } catch {
        return null;
    }
}
