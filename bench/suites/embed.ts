// `llamafuse bench embed`: texts/s and tokens/s of sentence embeddings for 256 texts of 8-256
// tokens, on a BERT-base-shape model and a ~0.6B llama-shape one (Qwen3-Embedding-0.6B's
// dimensions, last-token pooling), both synthetic. llamafuse embeds the whole list in one
// call (texts packed across sequences into few llama_decode calls); node-llama-cpp's
// embedding context takes one text per call; llama.cpp's llama-embedding, where built, packs
// the list in its own order. Same files, same threads, same run, alternating.
import path from "node:path";
import { loadModel, type Model } from "../../src/model.js";
import { ourGpuLayers, peerGpuLayers } from "./gpu-layers.js";
import type { SuiteOptions } from "./rows.js";
import type { SynthOptions } from "../../src/synth/index.js";
import { cachedSynthModel } from "../../src/synth-cache.js";
import { EMBD_SEPARATOR, findLlamaEmbedding, runLlamaEmbedding } from "./llama-embedding.js";
import { benchTokens, loadPeer } from "./peer.js";
import { interleavedMedianMs, median } from "./stats.js";

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

/** The suite options (threads, quick, model, noPeer, cacheDir, log, gpuLayers), and: */
export interface EmbedBenchOptions extends SuiteOptions {
    /** Texts, their length range and timed rounds, instead of the quick or full sizes (a run sized to a busy machine). */
    sizes?: EmbedBenchSizes;
}

export interface EmbedBenchSizes {
    n: number;
    min: number;
    max: number;
    rounds: number;
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
    /** llama.cpp's llama-embedding on the same texts: median prompt eval ms (null: not built, or it failed). */
    llamaEmbeddingMs: number | null;
    /**
     * Median CPU ms of this process (all its threads) over one run, for ours and node-llama-cpp's:
     * unlike wall time, not stretched by other processes' load (node-llama-cpp's many short calls
     * wait for a core once per call on a busy machine, one long embed() call does not).
     */
    oursCpuMs: number;
    peerCpuMs: number | null;
    batchSize: number;
}

/** First token id random bench text is drawn from: past the specials and unused slots vocabularies put first. */
const FIRST_PLAIN_TOKEN = 1000;

/**
 * Texts of lengths spread evenly over [min, max] tokens, as strings (for llama-embedding, which
 * reads text) and as the tokens the model's tokenizer makes of them, specials included (what
 * llamafuse and node-llama-cpp embed). Each is random vocabulary pieces made into text and
 * tokenized again, shortened until it has at most its target length (a round trip may merge
 * or split pieces, so a text can come out a few tokens short).
 */
export async function benchTexts(model: Model, n: number, min: number, max: number): Promise<{ strings: string[]; tokens: Int32Array[] }> {
    const vocab = Math.min(model.info.vocabSize, 150_000); // below Qwen2's added specials (151643+)
    const strings: string[] = [];
    const tokens: Int32Array[] = [];
    for (let i = 0; i < n; i++) {
        const len = min + Math.round(((max - min) * i) / Math.max(1, n - 1));
        let body = benchTokens(len, vocab - FIRST_PLAIN_TOKEN, 1000 + i).map((t) => t + FIRST_PLAIN_TOKEN);
        for (;;) {
            const text = (await model.detokenize(body)).replaceAll(EMBD_SEPARATOR, " ");
            const ids = await model.tokenize(text);
            if (ids.length <= len || body.length <= 1) {
                strings.push(text);
                tokens.push(ids);
                break;
            }
            body = body.slice(0, body.length - Math.max(1, Math.ceil((ids.length - len) / 2)));
        }
    }
    return { strings, tokens };
}

export async function runEmbedBench(o: EmbedBenchOptions): Promise<{ rows: EmbedBenchRow[]; notes: string[] }> {
    const sizes = o.sizes ?? (o.quick ? { n: 16, min: 8, max: 64, rounds: 2 } : { n: 256, min: 8, max: 256, rounds: 3 });
    const { peer, note } = o.noPeer ? { peer: null, note: "node-llama-cpp skipped (--no-peer)" } : await loadPeer();
    const llamaEmbedding = o.noPeer ? null : findLlamaEmbedding();
    const rows: EmbedBenchRow[] = [];
    const notes = [
        `${sizes.n} texts of up to ${sizes.min}-${sizes.max} tokens (random vocabulary pieces; every runtime embeds the same tokens); median of ${sizes.rounds} alternating rounds; ${note}`,
        "llamafuse: one embed() call for the list (packed up to batchSize tokens and 64 texts per decode); node-llama-cpp: getEmbeddingFor per text, as its API works",
        llamaEmbedding
            ? `llama-embedding column: llama.cpp's llama-embedding (${llamaEmbedding}) on the same texts, one process per round, its own packing (texts in order, -c/-b/-ub = contextSize, -fa on); its time is the process's wall time less that of a run of one short text (start-up, model load)`
            : "llama-embedding: not found ($LLAMA_CPP_BIN_DIR, or beside llama-bench); no second peer",
    ];
    try {
        const models = o.model ? [{ label: path.basename(o.model), synth: null }] : o.quick ? QUICK_MODELS : EMBED_BENCH_MODELS;
        for (const m of models) {
            o.log(`embed: ${m.label}`);
            const file = m.synth ? await cachedSynthModel(m.synth, { dir: o.cacheDir, name: "bench-embed", onWrite: (f) => o.log(`writing ${f}`) }) : o.model!;
            const model = await loadModel(file, ourGpuLayers(o.gpuLayers));
            try {
                const info = model.info;
                const texts = await benchTexts(model, sizes.n, sizes.min, sizes.max);
                const tokens = texts.tokens.reduce((s, t) => s + t.length, 0);
                const contextSize = Math.min(512, info.trainContextSize || 512);
                const ectx = await model.createEmbeddingContext({ threads: o.threads, contextSize });
                // BERT's attention is bidirectional: measured with our kernels (which take it) and with ggml's.
                const ectxGgml = await model.createEmbeddingContext({ threads: o.threads, contextSize, attention: "ggml" });
                const pm = peer ? await peer.llama.loadModel({ modelPath: file, ...peerGpuLayers(o.gpuLayers) }) : null;
                const pctx = pm ? await pm.createEmbeddingContext({ contextSize, threads: o.threads }) : null;
                try {
                    const cpu: Record<"ours" | "peer", number[]> = { ours: [], peer: [] };
                    const timedCpu = (name: "ours" | "peer", fn: () => Promise<unknown>) => async () => {
                        const c0 = process.cpuUsage();
                        await fn();
                        const c = process.cpuUsage(c0);
                        cpu[name].push((c.user + c.system) / 1000);
                    };
                    const tasks: Record<string, () => Promise<unknown>> = {
                        ours: timedCpu("ours", () => ectx.embed(texts.tokens)),
                        oursGgml: () => ectxGgml.embed(texts.tokens),
                    };
                    if (pctx) {
                        tasks.peer = timedCpu("peer", async () => {
                            for (const t of texts.tokens) await pctx.getEmbeddingFor(Array.from(t) as never);
                        });
                    }
                    // The rounds' timing of this task is not used: runLlamaEmbedding times the process, less its start-up.
                    const llamaEmbeddingMs: number[] = [];
                    let llamaEmbeddingNote: string | null = null;
                    let llamaEmbeddingCalls = 0;
                    // its start-up and model loading, measured once: a run of the shortest text
                    let llamaEmbeddingBaseMs = 0;
                    if (llamaEmbedding) {
                        try {
                            llamaEmbeddingBaseMs = (await runLlamaEmbedding(llamaEmbedding, { model: file, texts: texts.strings.slice(0, 1), threads: o.threads, contextSize, gpuLayers: o.gpuLayers })).ms;
                        } catch (err) {
                            llamaEmbeddingNote = `llama-embedding failed on ${m.label}: ${(err as Error).message.split("\n")[0]}`;
                        }
                        tasks.llamaEmbedding = async () => {
                            // the warm-up round (a process of its own has nothing to warm) and after a failure: nothing
                            if (llamaEmbeddingCalls++ === 0 || llamaEmbeddingNote) return;
                            try {
                                const r = await runLlamaEmbedding(llamaEmbedding, { model: file, texts: texts.strings, threads: o.threads, contextSize, gpuLayers: o.gpuLayers });
                                if (r.tokens !== tokens) llamaEmbeddingNote = `llama-embedding evaluated ${r.tokens} tokens, llamafuse ${tokens}: not the same input, column left empty`;
                                else llamaEmbeddingMs.push(Math.max(1, r.ms - llamaEmbeddingBaseMs));
                            } catch (err) {
                                llamaEmbeddingNote = `llama-embedding failed on ${m.label}: ${(err as Error).message.split("\n")[0]}`;
                            }
                        };
                    }
                    const ms = await interleavedMedianMs(tasks, sizes.rounds);
                    if (llamaEmbeddingNote) notes.push(llamaEmbeddingNote);
                    // the warm-up round's CPU times are dropped, as interleavedMedianMs drops its wall times
                    const oursCpuMs = median(cpu.ours.slice(1));
                    const peerCpuMs = cpu.peer.length > 1 ? median(cpu.peer.slice(1)) : null;
                    notes.push(`${m.label}: CPU time per run (whole process, all threads; load-independent): llamafuse ${(oursCpuMs / 1000).toFixed(1)} s` +
                        (peerCpuMs !== null ? `, node-llama-cpp ${(peerCpuMs / 1000).toFixed(1)} s: ${(peerCpuMs / oursCpuMs).toFixed(2)}x` : ""));
                    rows.push({
                        model: m.label, texts: sizes.n, tokens, oursMs: ms.ours!, oursGgmlMs: ms.oursGgml!, peerMs: ms.peer ?? null,
                        llamaEmbeddingMs: !llamaEmbeddingNote && llamaEmbeddingMs.length ? median(llamaEmbeddingMs) : null, oursCpuMs, peerCpuMs, batchSize: ectx.batchSize,
                    });
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
    return { rows, notes };
}
