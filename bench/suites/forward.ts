// Forward benchmark: prompt processing (pp), single-token decode (tg) and the per-call
// overhead of forward, llamafuse against node-llama-cpp (same llama.cpp commit, same model
// file, same thread count, same run). Each figure is the median of several timed runs.
import { existsSync } from "node:fs";
import path from "node:path";
import type { Context } from "../../src/context.js";
import { loadModel, type Model } from "../../src/model.js";
import { packageRoot } from "../../src/binding.js";
import type { Llama, LlamaContext, LlamaModel } from "node-llama-cpp";
import { formatTable, interleavedSamplesMs, median } from "./stats.js";
import { ourGpuLayers, peerGpuLayers, type BenchGpuLayers } from "./gpu-layers.js";

export interface ForwardBenchOptions {
    /** GGUF to run. @default ../shared/models/stories260K.gguf beside the package, when present */
    model?: string;
    /** Thread counts to measure. @default [1, 2] */
    threads?: number[];
    /** Prompt length for pp. @default 512 */
    promptTokens?: number;
    /** Generated tokens for tg. @default 128 */
    genTokens?: number;
    /** Timed runs per figure (median reported). @default 5 */
    reps?: number;
    /** Skip node-llama-cpp. @default false */
    noPeer?: boolean;
    /** Measure the per-call overhead row (100 one-token forwards; slow on large models). @default true */
    overhead?: boolean;
    /** Add a tg row for our native `generate` loop (greedy) against the peer's evaluate. @default false */
    generate?: boolean;
    /** Layers to offload, for both runtimes (--gpu-layers). @default each runtime's default */
    gpuLayers?: BenchGpuLayers;
}

export interface ForwardBenchRow {
    test: string;
    threads: number;
    unit: "tokens/s" | "µs/call";
    llamafuse: number;
    nodeLlamaCpp: number | null;
    /** llamafuse / node-llama-cpp for tokens/s, node-llama-cpp / llamafuse for µs (>1: we win). */
    ratio: number | null;
}

export function defaultBenchModel(): string | undefined {
    const p = path.resolve(packageRoot, "..", "shared", "models", "stories260K.gguf");
    return existsSync(p) ? p : undefined;
}

// Deterministic token ids inside the vocabulary (skipping the first few special ids).
function tokens(n: number, vocab: number, seed = 1): number[] {
    let s = seed;
    return Array.from({ length: n }, () => {
        s = (s * 1103515245 + 12345) >>> 0;
        return 3 + (s % (vocab - 3));
    });
}

function argmax(a: Float32Array): number {
    let best = 0;
    for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
    return best;
}

type Samples = Record<string, number[]>;
type Loaded = { model: Model; peerModel: LlamaModel | null };

/** What one load phase measures at one thread count: raw milliseconds per round. */
interface PhaseSamples {
    pp: Samples;
    tg: Samples;
    gen?: Samples;
    overhead?: { ours: number[]; peer: number[] };
}

export async function runForwardBench(options: ForwardBenchOptions = {}): Promise<ForwardBenchRow[]> {
    const modelPath = options.model ?? defaultBenchModel();
    if (!modelPath) throw new Error("no model given and ../shared/models/stories260K.gguf not found");
    const threadsList = options.threads ?? [1, 2];
    const nPrompt = options.promptTokens ?? 512;
    const nGen = options.genTokens ?? 128;
    const reps = options.reps ?? 5;

    const peerLlama = options.noPeer ? null : await (await import("node-llama-cpp")).getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: "error" as never });
    // The model loaded first in a process decodes a few percent slower on this machine, for
    // either runtime (seen on the 1B Q4_0 model: whichever loads first loses 5-10% at tg;
    // a later load of either wins). So each runtime is loaded first in one of two phases,
    // and the figures are medians over the rounds of both.
    const orders: ("ours" | "peer")[] = peerLlama ? ["ours", "peer"] : ["ours"];
    const roundsPerPhase = Math.max(1, Math.ceil(reps / orders.length));
    const phases: PhaseSamples[][] = [];
    try {
        for (const first of orders) {
            const loaded = await loadBoth(modelPath, peerLlama, first, options.gpuLayers);
            try {
                phases.push(await measurePhase(loaded, threadsList, { nPrompt, nGen, rounds: roundsPerPhase, options }));
            } finally {
                await loaded.model.dispose();
                await loaded.peerModel?.dispose();
            }
        }
    } finally {
        await peerLlama?.dispose();
    }

    const rows: ForwardBenchRow[] = [];
    const pooled = (pick: (p: PhaseSamples) => Samples | undefined, t: number, key: string) =>
        median(phases.flatMap((ph) => pick(ph[t]!)?.[key] ?? []));
    const has = (pick: (p: PhaseSamples) => Samples | undefined, t: number, key: string) => phases.some((ph) => (pick(ph[t]!)?.[key]?.length ?? 0) > 0);
    threadsList.forEach((threads, t) => {
        const rate = (pick: (p: PhaseSamples) => Samples | undefined, n: number, test: string) =>
            rows.push(row(test, threads, n / (pooled(pick, t, "ours") / 1000), has(pick, t, "peer") ? n / (pooled(pick, t, "peer") / 1000) : null));
        rate((p) => p.pp, nPrompt, `pp${nPrompt}`);
        rate((p) => p.tg, nGen, `tg${nGen}`);
        if (options.generate) rate((p) => p.gen, nGen, `tg${nGen} (generate)`);
        if (options.overhead !== false) {
            const o = median(phases.flatMap((ph) => ph[t]!.overhead!.ours));
            const p = peerLlama ? median(phases.flatMap((ph) => ph[t]!.overhead!.peer)) : null;
            rows.push({ test: "forward 1 token", threads, unit: "µs/call", llamafuse: o, nodeLlamaCpp: p, ratio: p === null ? null : p / o });
        }
    });
    return rows;
}

async function loadBoth(modelPath: string, peerLlama: Llama | null, first: "ours" | "peer", gpuLayers: BenchGpuLayers | undefined): Promise<Loaded> {
    const loadPeer = async () => (peerLlama ? await peerLlama.loadModel({ modelPath, ...peerGpuLayers(gpuLayers) }) : null);
    if (first === "peer") {
        const peerModel = await loadPeer();
        return { peerModel, model: await loadModel(modelPath, ourGpuLayers(gpuLayers)) };
    }
    const model = await loadModel(modelPath, ourGpuLayers(gpuLayers));
    return { model, peerModel: await loadPeer() };
}

async function measurePhase(
    { model, peerModel }: Loaded,
    threadsList: number[],
    { nPrompt, nGen, rounds, options }: { nPrompt: number; nGen: number; rounds: number; options: ForwardBenchOptions },
): Promise<PhaseSamples[]> {
    const vocab = model.info.vocabSize;
    const prompt = tokens(nPrompt, vocab);
    const bos = model.info.bos >= 0 ? model.info.bos : prompt[0]!;
    const ctxSize = nPrompt + nGen + 256;
    const out: PhaseSamples[] = [];

    for (const threads of threadsList) {
        const ctx = await model.createContext({ contextSize: ctxSize, batchSize: nPrompt, threads });
        const pctx = peerModel ? await peerModel.createContext({ contextSize: ctxSize, batchSize: nPrompt, threads }) : null;
        try {
            out.push(await measureContexts(ctx, pctx, { prompt, bos, nGen, rounds, options }));
        } finally {
            await ctx.dispose();
            await pctx?.dispose();
        }
    }
    return out;
}

async function measureContexts(
    ctx: Context,
    pctx: LlamaContext | null,
    { prompt, bos, nGen, rounds, options }: { prompt: number[]; bos: number; nGen: number; rounds: number; options: ForwardBenchOptions },
): Promise<PhaseSamples> {
    const pseq = pctx?.getSequence();
    const peerGreedy = pseq && (async () => {
        await pseq.clearHistory();
        let n = 0;
        for await (const _ of pseq.evaluate([bos] as never, { temperature: 0 })) if (++n >= nGen) break;
    });
    const phase: PhaseSamples = { pp: {}, tg: {} };

    // pp: the whole prompt in one call. Ours and the peer's runs alternate, round by round.
    phase.pp = await interleavedSamplesMs({
        ours: async () => {
            await ctx.kv.clear();
            await ctx.forward({ sequence: 0, tokens: prompt });
        },
        ...(pseq && {
            peer: async () => {
                await pseq.clearHistory();
                await pseq.evaluateWithoutGeneratingNewTokens(prompt as never);
            },
        }),
    }, rounds);

    // tg: greedy decode, one token per call (sampling in JS: an argmax).
    phase.tg = await interleavedSamplesMs({
        ours: async () => {
            await ctx.kv.clear();
            let next = bos;
            for (let i = 0; i < nGen; i++) next = argmax((await ctx.forward({ sequence: 0, tokens: [next] })).logits(0));
        },
        ...(peerGreedy && { peer: peerGreedy }),
    }, rounds);

    if (options.generate) {
        // tg through the native generate loop (sampling and the next decode stay in C++),
        // greedy, against the same peer loop as above.
        phase.gen = await interleavedSamplesMs({
            ours: async () => {
                await ctx.kv.clear();
                let n = 0;
                for await (const _ of ctx.generate([bos], { temperature: 0, maxTokens: nGen, stopOnEog: false })) n++;
                if (n !== nGen) throw new Error(`generate produced ${n} of ${nGen} tokens`);
            },
            ...(peerGreedy && { peer: peerGreedy }),
        }, rounds);
    }

    if (options.overhead !== false) {
        // Per-call overhead: one-token forwards with no output wanted vs the peer's evaluate-only call.
        const calls = 100;
        const overhead = { ours: [] as number[], peer: [] as number[] };
        for (let r = 0; r < rounds; r++) {
            await ctx.kv.clear();
            let t0 = performance.now();
            for (let i = 0; i < calls; i++) await ctx.forward({ sequence: 0, tokens: [prompt[i]!], logits: "none" });
            overhead.ours.push(((performance.now() - t0) * 1000) / calls);
            if (pseq) {
                await pseq.clearHistory();
                t0 = performance.now();
                for (let i = 0; i < calls; i++) await pseq.evaluateWithoutGeneratingNewTokens([prompt[i]!] as never);
                overhead.peer.push(((performance.now() - t0) * 1000) / calls);
            }
        }
        phase.overhead = overhead;
    }
    return phase;
}

function row(test: string, threads: number, ours: number, peer: number | null): ForwardBenchRow {
    return { test, threads, unit: "tokens/s", llamafuse: ours, nodeLlamaCpp: peer, ratio: peer === null ? null : ours / peer };
}

export function formatForwardRows(rows: ForwardBenchRow[]): string {
    return formatTable(rows.map((r) => ({
        test: r.test,
        threads: r.threads,
        unit: r.unit,
        llamafuse: r.llamafuse,
        "node-llama-cpp": r.nodeLlamaCpp ?? "-",
        ratio: r.ratio === null ? "-" : `${r.ratio.toFixed(2)}x`,
    })));
}
