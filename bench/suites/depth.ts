// Generation speed against context depth: tg (tokens/s of single-token decode + sample) with
// D tokens already in the KV cache, for llamafuse with its fused attention, llamafuse with
// ggml's attention (switched at run time, same cache, same process) and node-llama-cpp
// (flash attention on, as ours: both then run FLASH_ATTN_EXT, theirs with ggml's kernel).
//
// The default model is synthetic and attention-heavy, with the attention shape of Llama-3
// (head size 128, 4 query heads per KV head) on a small body: 2 layers, 8 query heads, a
// 512-wide embedding and FFN. At 16K the KV cache read per token (2 layers × K,V × 2 heads
// × 128 × 2 bytes × 16384 = 32 MiB) outweighs the weights (~22 MB at Q8_0, most of it the
// 32000-token output matrix). The depths are reached
// by extending one cache (0 → 4K → 16K), so each prefill is paid once per runtime; after
// each tg run the generated tokens are removed again.
//
// tg is timed from the call to the arrival of the last token and counts decodes: ours
// decodes the one-token prompt and each of its N tokens (a token is decoded before it is
// delivered), the peer decodes the prompt and the tokens before its (N+1)th, so both
// figures are N+1 one-token decodes (and samples) over the same wall time. Timing from the
// first token instead would be wrong for ours: its native loop runs ahead of JS, so several
// tokens can arrive at once.
import type { Context } from "../../src/context.js";
import { loadModel } from "../../src/model.js";
import type { SynthOptions } from "../../src/synth/index.js";
import { cachedSynthModel } from "../../src/synth-cache.js";
import { benchTokens, loadPeer } from "./peer.js";
import { median } from "./stats.js";
import { ourGpuLayers, peerGpuLayers, type BenchGpuLayers } from "./gpu-layers.js";

type AttentionMode = "fused" | "ggml";

export interface DepthBenchOptions {
    /** GGUF to run. @default the synthetic DEPTH_MODEL (written once into the cache folder) */
    model?: string;
    /** KV depths, ascending. @default [0, 4096, 16384] */
    depths?: number[];
    /** Tokens per tg run. @default 32 */
    genTokens?: number;
    /** tg runs per figure (median reported). @default 5 */
    reps?: number;
    /** @default 2 */
    threads?: number;
    /** @default ["fused", "ggml"] (fused is skipped when the build has no fused kernels) */
    modes?: AttentionMode[];
    noPeer?: boolean;
    /** Cache folder for the synthetic model. */
    cacheDir?: string;
    /** Progress lines (prefills take a while). */
    log?: (line: string) => void;
    /** Layers to offload, for both runtimes (--gpu-layers). */
    gpuLayers?: BenchGpuLayers;
}

export interface DepthBenchPoint {
    depth: number;
    /** tokens/s by runtime: "llamafuse fused", "llamafuse ggml", "node-llama-cpp". */
    tg: Record<string, number | null>;
    /** Prefill tokens/s that brought the cache to this depth (from the previous depth). */
    prefill: Record<string, number | null>;
}

export interface DepthBenchResult {
    model: string;
    modelLabel: string;
    threads: number;
    genTokens: number;
    points: DepthBenchPoint[];
    peerNote: string;
}

/** Attention-heavy synthetic shape (see the file comment). */
export const DEPTH_MODEL: Omit<SynthOptions, "output"> = {
    architecture: "llama", layers: 2, embedding: 512, heads: 8, headsKv: 2, headDim: 128, ff: 512,
    vocab: "llama-spm", contextLength: 32768, type: "q8_0", seed: 7, name: "llamafuse depth bench (attention-heavy, random weights)",
};

/** For smoke runs: the tiny preset. */
export const DEPTH_MODEL_QUICK: Omit<SynthOptions, "output"> = { preset: "tiny", type: "f16", seed: 0, name: "llamafuse depth bench quick (random weights)" };

export const PEER = "node-llama-cpp";
/** Filled in by the suite where llama-bench is built (bench/suites/suites.ts). */
export const LLAMA_BENCH = "llama-bench";
export const ours = (mode: AttentionMode) => `llamafuse ${mode}`;

/** Greedy generation of n tokens from one token appended at the depth: decodes (n + 1) per second. */
async function tgOurs(ctx: Context, first: number, n: number): Promise<number> {
    let tEnd = 0, k = 0;
    const t0 = performance.now();
    // continue: the token goes after the prefilled depth (a plain prompt would replace the sequence).
    for await (const _ of ctx.generate([first], { temperature: 0, maxTokens: n, stopOnEog: false, continue: true })) {
        tEnd = performance.now();
        k++;
    }
    if (k !== n) throw new Error(`generation produced ${k} of ${n} tokens`);
    return (k + 1) / ((tEnd - t0) / 1000);
}

export async function runDepthBench(options: DepthBenchOptions = {}): Promise<DepthBenchResult> {
    const depths = [...(options.depths ?? [0, 4096, 16384])].sort((a, b) => a - b);
    const n = options.genTokens ?? 32;
    const reps = options.reps ?? 5;
    const threads = options.threads ?? 2;
    const log = options.log ?? (() => {});
    const modelPath = options.model ?? (await cachedSynthModel(DEPTH_MODEL, { dir: options.cacheDir, name: "bench-depth", onWrite: (f) => log(`writing the depth-bench model to ${f}`) }));
    const maxDepth = depths[depths.length - 1]!;
    const contextSize = maxDepth + n + 64;
    const batch = 512;

    const model = await loadModel(modelPath, ourGpuLayers(options.gpuLayers));
    const { binding } = await import("../../src/binding.js");
    const modes = (options.modes ?? ["fused", "ggml"]).filter((m) => m !== "fused" || binding().hasFusedAttention);
    const prompt = benchTokens(maxDepth + 1, model.info.vocabSize, 3);
    const points: DepthBenchPoint[] = depths.map((depth) => ({ depth, tg: {}, prefill: {} }));
    const label = `${model.info.name || modelPath} (${model.info.layers} layers, ${model.info.heads} heads/${model.info.headsKv} kv, head size ${model.info.headDim})`;

    // Both runtimes hold their cache at once, and their tg runs alternate (ours fused, ours
    // ggml, the peer, again and again): on a shared machine every runtime then sees the same
    // noise, which keeps the ratios honest even when the absolute numbers move.
    const ctx = await model.createContext({ contextSize, batchSize: batch, threads, attention: modes[0] ?? "ggml" });
    const { peer, note } = options.noPeer ? { peer: null, note: "peer skipped (--no-peer)" } : await loadPeer();
    const pm = peer ? await peer.llama.loadModel({ modelPath, ...peerGpuLayers(options.gpuLayers) }) : null;
    const pctx = pm ? await pm.createContext({ contextSize, batchSize: batch, threads, flashAttention: true }) : null;
    const seq = pctx?.getSequence() ?? null;
    try {
        let at = 0;
        for (const p of points) {
            if (p.depth > at) {
                await ctx.setAttention(modes[0] ?? "ggml");
                log(`llamafuse: prefill ${at} → ${p.depth}`);
                let t0 = performance.now();
                for (let i = at; i < p.depth; i += batch) {
                    await ctx.forward({ sequence: 0, tokens: prompt.slice(i, Math.min(p.depth, i + batch)), logits: "none" });
                }
                p.prefill[ours(modes[0] ?? "ggml")] = (p.depth - at) / ((performance.now() - t0) / 1000);
                if (seq) {
                    log(`node-llama-cpp: prefill ${at} → ${p.depth}`);
                    t0 = performance.now();
                    await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(at, p.depth) as never);
                    p.prefill[PEER] = (p.depth - at) / ((performance.now() - t0) / 1000);
                }
                at = p.depth;
            }
            const runners: [string, () => Promise<number>][] = modes.map((mode) => [ours(mode), async () => {
                await ctx.setAttention(mode);
                const v = await tgOurs(ctx, prompt[p.depth]!, n);
                await ctx.kv.remove(0, p.depth, -1);
                return v;
            }]);
            if (seq) {
                runners.push([PEER, async () => {
                    let tEnd = 0, k = 0;
                    const t0 = performance.now();
                    // Its (n+1)th token arrives after n+1 decodes: the prompt and n tokens.
                    for await (const _ of seq.evaluate([prompt[p.depth]!] as never, { temperature: 0 })) {
                        tEnd = performance.now();
                        if (++k >= n + 1) break;
                    }
                    await seq.eraseContextTokenRanges([{ start: p.depth, end: seq.nextTokenIndex }]);
                    return k / ((tEnd - t0) / 1000);
                }]);
            }
            const runs: Record<string, number[]> = {};
            for (let r = 0; r < reps; r++) {
                // The order rotates, so no runtime always runs right after another one's
                // thread pool (which may still be spinning) or always first.
                for (let i = 0; i < runners.length; i++) {
                    const [name, once] = runners[(i + r) % runners.length]!;
                    (runs[name] ??= []).push(await once());
                }
            }
            if (!seq) p.tg[PEER] = null;
            for (const [name, xs] of Object.entries(runs)) {
                p.tg[name] = median(xs);
                log(`${name}: tg${n} at depth ${p.depth}: ${p.tg[name]!.toFixed(1)} tokens/s`);
            }
        }
    } finally {
        await ctx.dispose();
        await model.dispose();
        await pctx?.dispose();
        await pm?.dispose();
        await peer?.dispose();
    }
    return { model: modelPath, modelLabel: label, threads, genTokens: n, points, peerNote: note };
}
