// Sampling benchmark (issue 4): time per sampled token for typical chains over 32K and 128K
// vocabularies, and generation tokens/s on stories260K — llamafuse's native loop against
// node-llama-cpp, same model file, same thread count, same run, alternating runs so that both
// see the same machine noise. Medians of repeated runs.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { binding, packageRoot } from "../../src/binding.js";
import { loadModel, type Model } from "../../src/model.js";
import { createSampler, type SamplingOptions } from "../../src/sampling.js";
import { benchMeta, findLlamaBench, type BenchMeta } from "./meta.js";
import { loadPeer } from "./peer.js";
import { formatTable, median } from "./stats.js";
import { nglArgs, ourGpuLayers, peerGpuLayers, type BenchGpuLayers } from "./gpu-layers.js";

export interface SamplingBenchOptions {
    /** Thread counts for the generation rows. @default [1] */
    threads?: number[];
    /** Tokens generated per run. @default 256 */
    tokens?: number;
    /** Runs per measurement (the median is reported). @default 5 */
    reps?: number;
    /** Samples per chain timing. @default 200 */
    samples?: number;
    /** Directory with stories260K.gguf and llama-2-tiny-random.gguf. @default ../shared/models */
    modelsDir?: string;
    /** Layers to offload for the generation rows, both runtimes (--gpu-layers). */
    gpuLayers?: BenchGpuLayers;
    /** Skip node-llama-cpp. @default false */
    noPeer?: boolean;
}

export interface SamplingBenchRow {
    kind: "sample" | "generate";
    /** What was measured: chain name (sample) or "greedy"/"default chain" (generate). */
    name: string;
    vocab: number;
    threads: number | null;
    /** Generate rows: the attention kernels our context used. */
    attention?: string;
    /** Sample rows: median microseconds per sampled token. */
    usPerToken?: number;
    /** Generate rows: median tokens/s, ours and node-llama-cpp's, and ours / theirs. */
    oursTokS?: number;
    peerTokS?: number | null;
    ratio?: number | null;
    /** Generate rows: tokens per second of process CPU time (steadier on a shared machine). */
    oursTokPerCpuS?: number;
    peerTokPerCpuS?: number | null;
    cpuRatio?: number | null;
    /** llama.cpp's own llama-bench tg (greedy rows, where a llama-bench binary is found), and ours / it. */
    llamaBenchTokS?: number | null;
    llamaBenchRatio?: number | null;
    note?: string;
}

const CHAINS: Record<string, SamplingOptions> = {
    greedy: { temperature: 0 },
    "default (top-k 40, top-p .95, min-p .05, temp .8)": {},
    "default + repeat penalty 1.1": { repeatPenalty: 1.1 },
    "top-p .95 only (sorts the full vocab)": { topK: 0, minP: 0, topP: 0.95 },
    "mirostat 2": { mirostat: 2 },
};

function syntheticLogits(n: number, seed: number): Float32Array {
    // Roughly a model's shape: most logits near zero, a few large.
    let s = seed >>> 0;
    const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
    return Float32Array.from({ length: n }, () => {
        const u = Math.max(rnd(), 1e-12), v = rnd();
        return 2.5 * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    });
}

async function timeChains(model: Model, samples: number, reps: number): Promise<SamplingBenchRow[]> {
    const rows: SamplingBenchRow[] = [];
    const V = model.info.vocabSize;
    const logits = syntheticLogits(V, 1);
    for (const [name, opts] of Object.entries(CHAINS)) {
        const sampler = await createSampler(model, { ...opts, seed: 1 });
        const per: number[] = [];
        for (let r = 0; r < reps; r++) {
            const t0 = performance.now();
            for (let i = 0; i < samples; i++) await sampler.sample(logits);
            per.push(((performance.now() - t0) * 1000) / samples);
        }
        await sampler.dispose();
        rows.push({ kind: "sample", name, vocab: V, threads: null, usPerToken: median(per), note: "sampleLogits: copy + chain + promise round trip" });
    }
    return rows;
}

async function generationRows(file: string, threadsList: number[], n: number, reps: number, gpuLayers?: BenchGpuLayers, noPeer = false): Promise<SamplingBenchRow[]> {
    const rows: SamplingBenchRow[] = [];
    const prompt = "Once upon a time";
    const model = await loadModel(file, ourGpuLayers(gpuLayers));
    const tokens = await model.tokenize(prompt);
    const { peer, note } = noPeer ? { peer: null, note: "node-llama-cpp skipped" } : await loadPeer();
    const peerModel = peer ? await peer.llama.loadModel({ modelPath: file, ...peerGpuLayers(gpuLayers) }) : null;
    try {
        // ggml's attention is like for like with both peers (the loop's own cost); fused is
        // what llamafuse runs by default where its kernels are built in.
        const modes = binding().hasFusedAttention ? (["ggml", "fused"] as const) : (["ggml"] as const);
        for (const threads of threadsList) for (const attention of modes) {
            for (const [name, opts] of [["greedy", { temperature: 0 }], ["default chain", { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, seed: 1 }]] as const) {
                const ctx = await model.createContext({ contextSize: 512, batchSize: 512, threads, attention });
                const pctx = peerModel ? await peerModel.createContext({ contextSize: 512, batchSize: 512, threads }) : null;
                const pseq = pctx?.getSequence();
                // Wall-clock tokens/s, and tokens per second of this process's CPU time (all its
                // threads): the second is steadier on a shared machine, where wall time also
                // measures how long the scheduler kept us waiting. Both runtimes run in-process.
                const ours: number[] = [], theirs: number[] = [], oursCpu: number[] = [], theirsCpu: number[] = [];
                const timed = async (run: () => Promise<number>, wall: number[], cpu: number[]) => {
                    const c0 = process.cpuUsage();
                    const t0 = performance.now();
                    const k = await run();
                    const ms = performance.now() - t0;
                    const c = process.cpuUsage(c0);
                    wall.push((k / ms) * 1000);
                    cpu.push((k / ((c.user + c.system) / 1000)) * 1000);
                };
                const runOurs = async () => {
                    let k = 0;
                    for await (const _ of ctx.generate(tokens, { ...opts, maxTokens: n, stopOnEog: false })) k++;
                    return k;
                };
                const runPeer = async () => {
                    let k = 0;
                    for await (const _ of pseq!.evaluate(Array.from(tokens) as never, opts.temperature === 0 ? { temperature: 0 } : { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, seed: 1 } as never)) {
                        if (++k >= n) break;
                    }
                    return k;
                };
                const reset = async () => {
                    await ctx.kv.clear();
                    await pseq?.clearHistory();
                };
                await reset();
                await runOurs(); // warm-up, both
                if (pseq) await runPeer();
                for (let r = 0; r < reps; r++) {
                    await reset();
                    await timed(runOurs, ours, oursCpu);
                    if (pseq) await timed(runPeer, theirs, theirsCpu);
                }
                const o = median(ours);
                const p = pseq ? median(theirs) : null;
                const oc = median(oursCpu);
                const pc = pseq ? median(theirsCpu) : null;
                const lb = name === "greedy" && attention === "ggml" ? llamaBenchTg(file, threads, n, reps, gpuLayers) : null;
                rows.push({
                    kind: "generate", name, attention, vocab: model.info.vocabSize, threads, oursTokS: o, peerTokS: p, ratio: p ? o / p : null,
                    oursTokPerCpuS: oc, peerTokPerCpuS: pc, cpuRatio: pc ? oc / pc : null,
                    llamaBenchTokS: lb, llamaBenchRatio: lb ? o / lb : null,
                    note: `${n} tokens incl. the ${tokens.length}-token prompt; ${peer ? "peer: " + note : note}`,
                });
                await ctx.dispose();
                await pctx?.dispose();
            }
        }
    } finally {
        await peerModel?.dispose();
        await peer?.dispose();
        await model.dispose();
    }
    return rows;
}

/** llama-bench's tg (tokens/s, flash attention on as in our contexts), or null where it is not built. */
function llamaBenchTg(file: string, threads: number, n: number, reps: number, gpuLayers?: BenchGpuLayers): number | null {
    const bin = findLlamaBench().path;
    if (!bin) return null;
    try {
        const out = execFileSync(bin, ["-m", file, "-t", String(threads), "-p", "0", "-n", String(n), "-r", String(reps), "-fa", "1", "-o", "json", ...nglArgs(gpuLayers)], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
        return (JSON.parse(out) as { avg_ts: number }[])[0]?.avg_ts ?? null;
    } catch {
        return null;
    }
}

/** Runs the whole sampling benchmark; rows are plain data (the CLI prints or saves them). */
export async function runSamplingBench(options: SamplingBenchOptions = {}): Promise<{ meta: BenchMeta; rows: SamplingBenchRow[] }> {
    const dir = options.modelsDir ?? process.env.LLAMAFUSE_TEST_MODELS ?? path.resolve(packageRoot, "..", "shared", "models");
    const threads = options.threads ?? [1];
    const reps = options.reps ?? 5;
    const rows: SamplingBenchRow[] = [];

    // 32K: the Llama-2 vocabulary (a real model file). 128K: Llama-3's vocabulary, loaded
    // vocab-only from llama.cpp's test files (a chain needs only the vocabulary).
    const v32 = path.join(dir, "llama-2-tiny-random.gguf");
    const v128 = path.join(packageRoot, "deps", "llama.cpp", "models", "ggml-vocab-llama-bpe.gguf");
    for (const [file, vocabOnly] of [[v32, false], [v128, true]] as const) {
        if (!existsSync(file)) {
            rows.push({ kind: "sample", name: "(skipped)", vocab: 0, threads: null, note: `missing ${file}` });
            continue;
        }
        const m = await loadModel(file, { vocabOnly });
        try {
            rows.push(...(await timeChains(m, options.samples ?? 200, reps)));
        } finally {
            await m.dispose();
        }
    }

    const stories = path.join(dir, "stories260K.gguf");
    if (existsSync(stories)) rows.push(...(await generationRows(stories, threads, options.tokens ?? 256, reps, options.gpuLayers, options.noPeer)));
    else rows.push({ kind: "generate", name: "(skipped)", vocab: 0, threads: null, note: `missing ${stories}` });
    return { meta: benchMeta(threads[0] ?? 1, false), rows };
}

export function formatSamplingRows(rows: SamplingBenchRow[]): string {
    const sample = rows.filter((r) => r.kind === "sample").map((r) => ({ chain: r.name, vocab: r.vocab, "µs/token": r.usPerToken ?? NaN }));
    const gen = rows.filter((r) => r.kind === "generate").map((r) => ({
        generate: r.name, attention: r.attention ?? "-", threads: r.threads ?? "-", "ours tok/s": r.oursTokS ?? NaN, "node-llama-cpp tok/s": r.peerTokS ?? "n/a",
        ratio: r.ratio != null ? `${r.ratio.toFixed(2)}x` : "n/a",
        "ours tok/cpu-s": r.oursTokPerCpuS ?? NaN,
        "peer tok/cpu-s": r.peerTokPerCpuS ?? "n/a",
        "cpu ratio": r.cpuRatio != null ? `${r.cpuRatio.toFixed(2)}x` : "n/a",
        "llama-bench tok/s": r.llamaBenchTokS ?? "n/a",
        "vs llama-bench": r.llamaBenchRatio != null ? `${r.llamaBenchRatio.toFixed(2)}x` : "n/a",
    }));
    return `${formatTable(sample)}\n\n${formatTable(gen)}`;
}
