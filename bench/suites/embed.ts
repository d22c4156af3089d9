// `llamafuse bench embed`: texts/s and tokens/s of sentence embeddings for 256 texts of 8-256
// tokens, on a BERT-base-shape model and a ~0.6B llama-shape one (Qwen3-Embedding-0.6B's
// dimensions, last-token pooling), both synthetic. llamafuse embeds the whole list in one
// call (texts packed across sequences into few llama_decode calls); node-llama-cpp's
// embedding context takes one text per call. Same files, same threads, same run, alternating.
import { existsSync } from "node:fs";
import path from "node:path";
import { loadModel } from "../../src/model.js";
import { ourGpuLayers, peerGpuLayers, type BenchGpuLayers } from "./gpu-layers.js";
import type { SynthOptions } from "../../src/synth/index.js";
import { cachedSynthModel } from "../../src/synth-cache.js";
import { findLlamaBench } from "./meta.js";
import { benchTokens, loadPeer } from "./peer.js";
import { interleavedMedianMs } from "./stats.js";

export interface EmbedBenchModel {
    label: string;
    synth: Omit<SynthOptions, "output">;
}

export const EMBED_BENCH_MODELS: EmbedBenchModel[] = [
    { label: "bert-base (f16)", synth: { preset: "bert-base", type: "f16" } },
    { label: "llama 0.6B, last pooling (f16)", synth: { preset: "embed-0.6b", type: "f16" } },
];
// Quick: a smoke run in seconds; the llama row uses the tiny llama shape instead of 0.6B.
const QUICK_MODELS: EmbedBenchModel[] = [
    { label: "bert-tiny (f16)", synth: { preset: "bert-tiny", type: "f16" } },
    { label: "llama tiny, last pooling (f16)", synth: { preset: "tiny", pooling: "last", type: "f16" } },
];

export interface EmbedBenchOptions {
    threads: number;
    quick: boolean;
    /** One GGUF to measure instead of the two synthetic shapes (`llamafuse bench embed -m file`). */
    model?: string;
    noPeer?: boolean;
    cacheDir?: string;
    log: (line: string) => void;
    /** Layers to offload, for both runtimes (--gpu-layers). */
    gpuLayers?: BenchGpuLayers;
}

export interface EmbedBenchRow {
    model: string;
    texts: number;
    tokens: number;
    /** Median ms for the whole list. */
    oursMs: number;
    /** The same with ggml's attention kernel instead of llamafuse's fused one. */
    oursGgmlMs: number;
    peerMs: number | null;
    batchSize: number;
}

/** Texts of lengths spread evenly over [min, max] tokens, with the model's specials around them. */
export function benchTexts(n: number, min: number, max: number, vocab: number, wrap: { first?: number; last?: number }): Int32Array[] {
    return Array.from({ length: n }, (_, i) => {
        const len = min + Math.round(((max - min) * i) / Math.max(1, n - 1));
        const body = benchTokens(len - (wrap.first !== undefined ? 1 : 0) - (wrap.last !== undefined ? 1 : 0), vocab, 1000 + i);
        return Int32Array.from([...(wrap.first !== undefined ? [wrap.first] : []), ...body, ...(wrap.last !== undefined ? [wrap.last] : [])]);
    });
}

export async function runEmbedBench(o: EmbedBenchOptions): Promise<{ rows: EmbedBenchRow[]; notes: string[] }> {
    const sizes = o.quick ? { n: 16, min: 8, max: 64, rounds: 2 } : { n: 256, min: 8, max: 256, rounds: 3 };
    const { peer, note } = o.noPeer ? { peer: null, note: "node-llama-cpp skipped (--no-peer)" } : await loadPeer();
    const rows: EmbedBenchRow[] = [];
    const notes = [
        `${sizes.n} texts of ${sizes.min}-${sizes.max} tokens (token ids, so both runtimes embed the same tokens); median of ${sizes.rounds} alternating rounds; ${note}`,
        "llamafuse: one embed() call for the list (packed up to batchSize tokens and 64 texts per decode); node-llama-cpp: getEmbeddingFor per text, as its API works",
    ];
    try {
        const models = o.model ? [{ label: path.basename(o.model), synth: null }] : o.quick ? QUICK_MODELS : EMBED_BENCH_MODELS;
        for (const m of models) {
            o.log(`embed: ${m.label}`);
            const file = m.synth ? await cachedSynthModel(m.synth, { dir: o.cacheDir, name: "bench-embed", onWrite: (f) => o.log(`writing ${f}`) }) : o.model!;
            const model = await loadModel(file, ourGpuLayers(o.gpuLayers));
            try {
                const info = model.info;
                const bert = info.architecture === "bert";
                const texts = benchTexts(sizes.n, sizes.min, sizes.max, info.vocabSize, bert ? { first: 101, last: 102 } : info.addBos ? { first: info.bos } : {});
                const tokens = texts.reduce((s, t) => s + t.length, 0);
                const contextSize = Math.min(512, info.trainContextSize || 512);
                const ectx = await model.createEmbeddingContext({ threads: o.threads, contextSize });
                // BERT's attention is bidirectional: measured with our kernels (which take it) and with ggml's.
                const ectxGgml = await model.createEmbeddingContext({ threads: o.threads, contextSize, attention: "ggml" });
                const pm = peer ? await peer.llama.loadModel({ modelPath: file, ...peerGpuLayers(o.gpuLayers) }) : null;
                const pctx = pm ? await pm.createEmbeddingContext({ contextSize: 512, threads: o.threads }) : null;
                try {
                    const tasks: Record<string, () => Promise<unknown>> = { ours: () => ectx.embed(texts), oursGgml: () => ectxGgml.embed(texts) };
                    if (pctx) {
                        tasks.peer = async () => {
                            for (const t of texts) await pctx.getEmbeddingFor(Array.from(t) as never);
                        };
                    }
                    const ms = await interleavedMedianMs(tasks, sizes.rounds);
                    rows.push({ model: m.label, texts: sizes.n, tokens, oursMs: ms.ours!, oursGgmlMs: ms.oursGgml!, peerMs: ms.peer ?? null, batchSize: ectx.batchSize });
                } finally {
                    await ectx.dispose();
                    await ectxGgml.dispose();
                    await pctx?.dispose();
                    await pm?.dispose();
                }
            } finally {
                await model.dispose();
            }
        }
    } finally {
        await peer?.dispose();
    }
    const lb = findLlamaBench().path;
    const llamaEmbedding = lb ? path.join(path.dirname(lb), "llama-embedding") : null;
    notes.push(llamaEmbedding && existsSync(llamaEmbedding)
        ? `llama-embedding found at ${llamaEmbedding} but not run: it reads text, not token ids (no same-input comparison yet)`
        : "llama-embedding: not built here (LLAMAFUSE_LLAMA_TOOLS=1 builds llama-bench only)");
    return { rows, notes };
}
