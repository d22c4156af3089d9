// Forward benchmark: prompt processing (pp), single-token decode (tg) and the per-call
// overhead of forward, llamafuse against node-llama-cpp (same llama.cpp commit, same model
// file, same thread count, same run). Each figure is the median of several timed runs.
import { existsSync } from "node:fs";
import path from "node:path";
import { loadModel } from "../model.js";
import { packageRoot } from "../binding.js";
import { formatTable, interleavedMedianMs, median } from "./stats.js";

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

export async function runForwardBench(options: ForwardBenchOptions = {}): Promise<ForwardBenchRow[]> {
    const modelPath = options.model ?? defaultBenchModel();
    if (!modelPath) throw new Error("no model given and ../shared/models/stories260K.gguf not found");
    const threadsList = options.threads ?? [1, 2];
    const nPrompt = options.promptTokens ?? 512;
    const nGen = options.genTokens ?? 128;
    const reps = options.reps ?? 5;
    const rows: ForwardBenchRow[] = [];

    const model = await loadModel(modelPath);
    const vocab = model.info.vocabSize;
    const prompt = tokens(nPrompt, vocab);
    const bos = model.info.bos >= 0 ? model.info.bos : prompt[0]!;
    const ctxSize = nPrompt + nGen + 256;

    const peerLlama = options.noPeer ? null : await (await import("node-llama-cpp")).getLlama({ gpu: false, build: "never", progressLogs: false, logLevel: "error" as never });
    const peerModel = peerLlama ? await peerLlama.loadModel({ modelPath }) : null;

    for (const threads of threadsList) {
        const ctx = await model.createContext({ contextSize: ctxSize, batchSize: nPrompt, threads });
        const pctx = peerModel ? await peerModel.createContext({ contextSize: ctxSize, batchSize: nPrompt, threads }) : null;
        const pseq = pctx?.getSequence();

        // pp: the whole prompt in one call. Ours and the peer's runs alternate, round by round.
        const pp = await interleavedMedianMs({
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
        }, reps);
        rows.push(row(`pp${nPrompt}`, threads, nPrompt / (pp.ours! / 1000), pp.peer === undefined ? null : nPrompt / (pp.peer / 1000)));

        // tg: greedy decode, one token per call (sampling in JS: an argmax).
        const tg = await interleavedMedianMs({
            ours: async () => {
                await ctx.kv.clear();
                let next = bos;
                for (let i = 0; i < nGen; i++) next = argmax((await ctx.forward({ sequence: 0, tokens: [next] })).logits(0));
            },
            ...(pseq && {
                peer: async () => {
                    await pseq.clearHistory();
                    let n = 0;
                    for await (const _ of pseq.evaluate([bos] as never, { temperature: 0 })) if (++n >= nGen) break;
                },
            }),
        }, reps);
        rows.push(row(`tg${nGen}`, threads, nGen / (tg.ours! / 1000), tg.peer === undefined ? null : nGen / (tg.peer / 1000)));

        if (options.generate) {
            // tg through the native generate loop (sampling and the next decode stay in C++),
            // greedy, against the same peer loop as above.
            const gen = await interleavedMedianMs({
                ours: async () => {
                    await ctx.kv.clear();
                    let n = 0;
                    for await (const _ of ctx.generate([bos], { temperature: 0, maxTokens: nGen, stopOnEog: false })) n++;
                    if (n !== nGen) throw new Error(`generate produced ${n} of ${nGen} tokens`);
                },
                ...(pseq && {
                    peer: async () => {
                        await pseq.clearHistory();
                        let n = 0;
                        for await (const _ of pseq.evaluate([bos] as never, { temperature: 0 })) if (++n >= nGen) break;
                    },
                }),
            }, reps);
            rows.push(row(`tg${nGen} (generate)`, threads, nGen / (gen.ours! / 1000), gen.peer === undefined ? null : nGen / (gen.peer / 1000)));
        }
        if (options.overhead === false) {
            await ctx.dispose();
            await pctx?.dispose();
            continue;
        }

        // Per-call overhead: one-token forwards with no output wanted vs the peer's evaluate-only call.
        const calls = 100;
        const ohOurs: number[] = [];
        const ohPeer: number[] = [];
        for (let r = 0; r < reps; r++) {
            await ctx.kv.clear();
            let t0 = performance.now();
            for (let i = 0; i < calls; i++) await ctx.forward({ sequence: 0, tokens: [prompt[i]!], logits: "none" });
            ohOurs.push(((performance.now() - t0) * 1000) / calls);
            if (pseq) {
                await pseq.clearHistory();
                t0 = performance.now();
                for (let i = 0; i < calls; i++) await pseq.evaluateWithoutGeneratingNewTokens([prompt[i]!] as never);
                ohPeer.push(((performance.now() - t0) * 1000) / calls);
            }
        }
        const o = median(ohOurs), p = pseq ? median(ohPeer) : null;
        rows.push({ test: "forward 1 token", threads, unit: "µs/call", llamafuse: o, nodeLlamaCpp: p, ratio: p === null ? null : p / o });

        await ctx.dispose();
        await pctx?.dispose();
    }
    await model.dispose();
    await peerModel?.dispose();
    await peerLlama?.dispose();
    return rows;
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
