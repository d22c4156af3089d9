// The benchmark suites behind `llamafuse bench` and `npm run bench`, with one row shape for
// all of them: what was measured, ours, the peer's, and the ratio (>1: llamafuse is better,
// whether the unit is a rate or a time). Each suite has a --quick size for smoke runs.
import path from "node:path";
import { QUICK_OPTIONS, runAttentionBenchDetailed, type AttentionBenchOptions } from "./attention.js";
import { CHAT_BENCH_MODEL, runChatBench } from "./chat.js";
import { runEmbedBench } from "./embed.js";
import { DEPTH_MODEL_QUICK, LLAMA_BENCH, PEER, ours, runDepthBench, type DepthBenchResult } from "./depth.js";
import { defaultBenchModel, runForwardBench } from "./forward.js";
import { runLlamaBench } from "./llama-bench.js";
import { findLlamaBench } from "./meta.js";
import { runSamplingBench } from "./sampling.js";
import { serveSuite } from "./serve.js";
import { runTokenizeBench } from "./tokenize.js";
import { cachedSynthModel } from "../../src/synth-cache.js";
import { MODEL_1B, type BenchRow, type SuiteName, type SuiteOptions, type SuiteResult } from "./rows.js";

export { MODEL_1B, SUITES, type BenchRow, type SuiteName, type SuiteOptions, type SuiteResult } from "./rows.js";


const isTime = (unit: string) => /s\/(call|op)$/.test(unit);

/** The CLI's full attention configuration: sized to finish in a few minutes on 2 cores. */
export const ATTENTION_DEFAULT: AttentionBenchOptions = {
    headDims: [128], gqa: [1, 4, 8], depths: [4096, 16384], kvTypes: ["f16", "q8_0"], phases: ["decode", "prefill"], prefillTokens: 256, reps: [5, 1],
};

async function fallbackModel(o: SuiteOptions): Promise<string> {
    return o.model ?? defaultBenchModel() ?? (await cachedSynthModel(DEPTH_MODEL_QUICK, { dir: o.cacheDir, name: "bench-tiny" }));
}

async function forwardSuite(o: SuiteOptions): Promise<Omit<SuiteResult, "seconds">> {
    const model = await fallbackModel(o);
    // Quick still needs 100 prompt tokens: the overhead row feeds them one per call.
    const sizes = o.quick ? { promptTokens: 128, genTokens: 16, reps: 2 } : { promptTokens: 512, genTokens: 128, reps: 5 };
    const rows = await runForwardBench({ model, threads: [o.threads], noPeer: o.noPeer, gpuLayers: o.gpuLayers, ...sizes });
    const bin = findLlamaBench().path;
    const lb = bin ? await runLlamaBench(bin, { model, threads: o.threads, nPrompt: sizes.promptTokens, nGen: sizes.genTokens, reps: sizes.reps, gpuLayers: o.gpuLayers }) : null;
    const third = (test: string) => (test.startsWith("pp") ? lb?.pp : test.startsWith("tg") ? lb?.tg : null) ?? null;
    return {
        suite: "forward",
        rows: rows.map((r) => ({ suite: "forward", test: r.test, model: path.basename(model), threads: r.threads, unit: r.unit, llamafuse: r.llamafuse, nodeLlamaCpp: r.nodeLlamaCpp, ratio: r.ratio, llamaBench: third(r.test) })),
        notes: ["tg: one forward per token with an argmax in JS (ours) vs sequence.evaluate (node-llama-cpp); overhead: one-token forwards with no logits"],
        detail: rows,
    };
}


// pp and tg at depth 0 on a 1B-class Q4_0 model, where the matrix products dominate: the
// same llama.cpp on both sides, so this row shows what our own layers cost or save.
async function forward1bSuite(o: SuiteOptions): Promise<Omit<SuiteResult, "seconds">> {
    if (o.quick && !o.model) {
        // --quick is a smoke run in seconds; this suite's model alone is a 700 MB file to write
        // (51 s of a 'quick' run in issue 15). With --model it runs, at quick sizes.
        return { suite: "forward-1b", rows: [], notes: ["skipped: --quick does not write the 1B model (pass --model, or run without --quick)"], detail: [] };
    }
    const model = o.model ?? (await cachedSynthModel(MODEL_1B, { dir: o.cacheDir, name: "bench-1b", onWrite: (f) => o.log(`writing ${f} (random weights, once)`) }));
    const sizes = o.quick ? { promptTokens: 32, genTokens: 4, reps: 2 } : { promptTokens: 128, genTokens: 32, reps: 7 };
    const rows = await runForwardBench({ model, threads: [o.threads], noPeer: o.noPeer, gpuLayers: o.gpuLayers, overhead: false, generate: true, ...sizes });
    return {
        suite: "forward-1b",
        rows: rows.map((r) => ({ suite: "forward-1b", test: r.test, model: path.basename(model), threads: r.threads, unit: r.unit, llamafuse: r.llamafuse, nodeLlamaCpp: r.nodeLlamaCpp, ratio: r.ratio, llamaBench: null })),
        notes: [
            "model: synthetic llama-3.2-1b shape, Q4_0, random weights; node-llama-cpp with its default context options",
            "tg: one forward per token with an argmax in JS; tg (generate): our native greedy loop; the peer: sequence.evaluate at temperature 0",
        ],
        detail: rows,
    };
}

async function tokenizeSuite(o: SuiteOptions): Promise<Omit<SuiteResult, "seconds">> {
    const rows = await runTokenizeBench({ noPeer: o.noPeer, ...(o.quick ? { textBytes: 16 * 1024, reps: 2 } : {}) });
    const differ = rows.filter((r) => r.sameTokens === false).map((r) => r.vocab);
    return {
        suite: "tokenize",
        rows: rows.map((r) => ({ suite: "tokenize", test: r.test, model: r.vocab, threads: 1, unit: r.unit, llamafuse: r.llamafuse, nodeLlamaCpp: r.nodeLlamaCpp, ratio: r.ratio, llamaBench: null })),
        notes: [
            "tokenizers run on one thread; ours is async (a worker per call), the peer's is synchronous",
            differ.length ? `WARNING: token ids differ from node-llama-cpp for ${differ.join(", ")}` : "token ids equal node-llama-cpp's on every vocabulary",
        ],
        detail: rows,
    };
}

async function attentionSuite(o: SuiteOptions): Promise<Omit<SuiteResult, "seconds">> {
    const opts = { ...(o.quick ? QUICK_OPTIONS : ATTENTION_DEFAULT), threads: o.threads, onRow: (r: { phase: string; depth: number; ratio: number }) => o.log(`attention ${r.phase} depth ${r.depth}: ${r.ratio.toFixed(2)}x`) };
    const res = await runAttentionBenchDetailed(opts);
    return {
        suite: "attention",
        rows: res.rows.map((r) => ({
            suite: "attention", test: `${r.phase} depth ${r.depth}`, model: `${r.kvType} D${r.headDim} GQA${r.gqa}`, threads: r.threads, unit: "µs/op",
            llamafuse: r.fusedUs, nodeLlamaCpp: r.ggmlUs, ratio: r.ratio, llamaBench: null,
        })),
        notes: [
            "peer column: ggml's FLASH_ATTN_EXT CPU kernel, the one node-llama-cpp runs (same llama.cpp commit), timed on identical tensors in this process",
            `read bandwidth measured in this run: ${res.bandwidthGBs.toFixed(2)} GB/s (${o.threads} threads)`,
        ],
        detail: res,
    };
}

async function depthSuite(o: SuiteOptions): Promise<Omit<SuiteResult, "seconds">> {
    const quick = o.quick ? { depths: [0, 256, 1024], genTokens: 8, reps: 2, model: o.model ?? (await cachedSynthModel(DEPTH_MODEL_QUICK, { dir: o.cacheDir, name: "bench-tiny" })) } : { model: o.model };
    const res = await runDepthBench({ threads: o.threads, noPeer: o.noPeer, cacheDir: o.cacheDir, log: o.log, gpuLayers: o.gpuLayers, ...quick });
    const rows: BenchRow[] = [];
    const name = path.basename(res.model);
    // llama-bench pays its own prefill to each depth on every repetition: two are enough.
    const bin = findLlamaBench().path;
    for (const p of res.points) {
        if (!bin) break;
        o.log(`llama-bench: tg${res.genTokens} at depth ${p.depth}`);
        const lb = await runLlamaBench(bin, { model: res.model, threads: res.threads, nPrompt: 0, nGen: res.genTokens, depth: p.depth, reps: 2, gpuLayers: o.gpuLayers });
        p.tg[LLAMA_BENCH] = lb?.tg ?? null;
    }
    for (const p of res.points) {
        const peer = p.tg[PEER] ?? null;
        for (const mode of ["fused", "ggml"] as const) {
            const v = p.tg[ours(mode)];
            if (v === undefined || v === null) continue;
            rows.push({ suite: "depth", test: `tg${res.genTokens} @ ${p.depth} (${mode})`, model: name, threads: res.threads, unit: "tokens/s", llamafuse: v, nodeLlamaCpp: peer, ratio: peer ? v / peer : null, llamaBench: p.tg[LLAMA_BENCH] ?? null });
        }
        const pre = Object.entries(p.prefill).find(([k]) => k.startsWith("llamafuse"));
        if (pre) {
            const pp = p.prefill[PEER] ?? null;
            rows.push({ suite: "depth", test: `prefill to ${p.depth} (${pre[0].replace("llamafuse ", "")})`, model: name, threads: res.threads, unit: "tokens/s", llamafuse: pre[1]!, nodeLlamaCpp: pp, ratio: pp ? pre[1]! / pp : null, llamaBench: null });
        }
    }
    return {
        suite: "depth",
        rows,
        notes: [`model: ${res.modelLabel}`, "node-llama-cpp runs with flashAttention: true (as llamafuse), so both use FLASH_ATTN_EXT", res.peerNote],
        detail: res satisfies DepthBenchResult,
    };
}

async function samplingSuite(o: SuiteOptions): Promise<Omit<SuiteResult, "seconds">> {
    const sizes = o.quick ? { reps: 1, samples: 20, tokens: 16 } : {};
    const res = await runSamplingBench({ threads: [o.threads], noPeer: o.noPeer, gpuLayers: o.gpuLayers, ...sizes });
    const rows: BenchRow[] = [];
    const notes: string[] = [];
    for (const r of res.rows) {
        if (r.note && r.name === "(skipped)") {
            notes.push(`skipped: ${r.note}`);
            continue;
        }
        if (r.kind === "sample") {
            rows.push({ suite: "sampling", test: `sample: ${r.name}`, model: `vocab ${r.vocab}`, threads: 1, unit: "µs/token", llamafuse: r.usPerToken ?? NaN, nodeLlamaCpp: null, ratio: null, llamaBench: null });
        } else {
            rows.push({
                suite: "sampling", test: `generate: ${r.name}${r.attention ? ` (${r.attention})` : ""}`, model: "stories260K", threads: r.threads ?? o.threads, unit: "tokens/s",
                llamafuse: r.oursTokS ?? NaN, nodeLlamaCpp: r.peerTokS ?? null, ratio: r.ratio ?? null, llamaBench: r.llamaBenchTokS ?? null,
            });
        }
    }
    notes.push("sample rows: the chain alone on fixed logits (node-llama-cpp has no call that samples given logits, so no peer column); generate rows: the whole loop against node-llama-cpp");
    return { suite: "sampling", rows, notes, detail: res.rows };
}

async function chatSuite(o: SuiteOptions): Promise<Omit<SuiteResult, "seconds">> {
    const rows = await runChatBench({ threads: o.threads, noPeer: o.noPeer, cacheDir: o.cacheDir, log: o.log, gpuLayers: o.gpuLayers, ...(o.quick ? { historyTokens: 256, rounds: 2 } : {}) });
    return {
        suite: "chat",
        rows: rows.map((r) => ({ suite: "chat", test: r.test, model: "synthetic qwen2 (Qwen2.5 template)", threads: o.threads, unit: "ms/call", llamafuse: r.llamafuse, nodeLlamaCpp: r.nodeLlamaCpp, ratio: r.nodeLlamaCpp ? r.nodeLlamaCpp / r.llamafuse : null, llamaBench: null })),
        notes: [
            `model: ${JSON.stringify(CHAT_BENCH_MODEL)} with random weights; the turn's first token only (maxTokens 1), greedy; ratio: node-llama-cpp's time / ours (above 1: we are faster)`,
            "TTFT: from the call to the first streamed text (our first delta, node-llama-cpp's first onTextChunk); the whole one-token turn also includes our decode of that token into the cache (without its logits row: computed only when a later call continues from it)",
            `reuse: ${rows[0]?.reusedTokens} of ${(rows[0]?.reusedTokens ?? 0) + (rows[0]?.evaluatedTokens ?? 0)} prompt tokens came from the cache; peer: node-llama-cpp's LlamaChatSession with the same template (JinjaTemplateChatWrapper), history reset to the same ${rows[0]?.historyTokens} tokens each round`,
        ],
        detail: rows,
    };
}

async function embedSuite(o: SuiteOptions): Promise<Omit<SuiteResult, "seconds">> {
    const { rows, notes } = await runEmbedBench({ threads: o.threads, quick: o.quick, model: o.model, noPeer: o.noPeer, cacheDir: o.cacheDir, log: o.log, gpuLayers: o.gpuLayers });
    const out: BenchRow[] = [];
    for (const r of rows) {
        for (const [test, ms] of [[`embed ${r.texts} texts`, r.oursMs], [`embed ${r.texts} texts (ggml attention)`, r.oursGgmlMs]] as const) {
            for (const [unit, amount] of [["texts/s", r.texts], ["tokens/s", r.tokens]] as const) {
                const ours = (amount * 1000) / ms;
                const peer = r.peerMs === null ? null : (amount * 1000) / r.peerMs;
                const llamaEmbedding = r.llamaEmbeddingMs === null ? null : (amount * 1000) / r.llamaEmbeddingMs;
                out.push({ suite: "embed", test, model: r.model, threads: o.threads, unit, llamafuse: ours, nodeLlamaCpp: peer, ratio: peer ? ours / peer : null, llamaBench: llamaEmbedding });
            }
        }
    }
    return { suite: "embed", rows: out, notes, detail: rows, llamaTool: "llama-embedding" };
}

const RUNNERS: Record<SuiteName, (o: SuiteOptions) => Promise<Omit<SuiteResult, "seconds">>> = {
    tokenize: tokenizeSuite,
    forward: forwardSuite,
    "forward-1b": forward1bSuite,
    sampling: samplingSuite,
    attention: attentionSuite,
    depth: depthSuite,
    serve: serveSuite,
    chat: chatSuite,
    embed: embedSuite,
};

export async function runSuite(name: SuiteName, o: SuiteOptions): Promise<SuiteResult> {
    const t0 = performance.now();
    const r = await RUNNERS[name](o);
    // Ratios are "higher is better" for every unit: rates ours/peer, times peer/ours.
    for (const row of r.rows) {
        if (row.ratio === null && row.nodeLlamaCpp !== null && row.llamafuse > 0) {
            row.ratio = isTime(row.unit) ? row.nodeLlamaCpp / row.llamafuse : row.llamafuse / row.nodeLlamaCpp;
        }
    }
    return { ...r, seconds: (performance.now() - t0) / 1000 };
}
