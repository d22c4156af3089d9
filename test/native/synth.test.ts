// Synthetic models: the files synthModel writes must load and run in node-llama-cpp
// (the peer, same llama.cpp commit), in llama.cpp's own tools where built, and in our
// addon where built; tokenization must match llama.cpp's own test vectors for the
// copied vocabulary; preset shapes must have the published parameter counts.

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { getLlama, LlamaLogLevel, readGgufFileInfo, type Llama, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dequantizeQ8_0, f16BitsToF32 } from "../../src/synth/gguf/quant.js";
import { readGguf, readTensorBytes } from "../../src/synth/gguf/reader.js";
import { GgmlType } from "../../src/synth/gguf/types.js";
import { planSynthModel, synthModel, type SynthOptions, type SynthResult } from "../../src/synth/index.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const vocabDir = join(root, "deps/llama.cpp/models");
const haveVocabs = existsSync(join(vocabDir, "ggml-vocab-llama-spm.gguf"));
const dir = mkdtempSync(join(tmpdir(), "llamafuse-synth-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The models under test: the tiny preset in each type, a GQA shape with a head-size override, and a small Qwen2. */
const specs: Record<string, Omit<SynthOptions, "output"> & { vocabName: string }> = {
    "tiny-f16": { preset: "tiny", type: "f16", seed: 1, vocabName: "llama-spm" },
    "tiny-q8_0": { preset: "tiny", type: "q8_0", seed: 1, vocabName: "llama-spm" },
    "tiny-q4_0": { preset: "tiny", type: "q4_0", seed: 1, vocabName: "llama-spm" },
    // q dim 4*64 = 256 ≠ embedding 192: exercises attention.key_length and a wide attn_output.
    "gqa-hd64-bpe": {
        layers: 2, embedding: 192, heads: 4, headsKv: 2, headDim: 64, ff: 320, vocab: "llama-bpe", tieEmbeddings: true,
        type: "q8_0", seed: 5, vocabName: "llama-bpe",
    },
    "qwen2-small": {
        architecture: "qwen2", layers: 2, embedding: 128, heads: 2, headsKv: 1, ff: 256, vocab: "qwen2", tieEmbeddings: true,
        type: "q4_0", seed: 9, vocabName: "qwen2",
    },
};
const results: Record<string, SynthResult> = {};
const fileOf = (name: string): string => join(dir, `${name}.gguf`);

/** llama.cpp's tokenizer test vectors: "<text>\n__ggml_vocab_test__\n" blocks and one line of ids each. */
function vocabVectors(name: string): { text: string; ids: number[] }[] {
    const base = join(vocabDir, `ggml-vocab-${name}.gguf`);
    const raw = readFileSync(`${base}.inp`, "utf8");
    const texts = raw.split("\n__ggml_vocab_test__\n");
    if (texts.at(-1) === "") texts.pop();
    const outs = readFileSync(`${base}.out`, "utf8").split("\n").slice(0, texts.length);
    return texts.map((text, i) => ({ text, ids: outs[i]!.trim().split(" ").filter(Boolean).map(Number) }));
}

function findTool(names: string[]): string | undefined {
    const dirs = [
        process.env.LLAMA_CPP_BIN_DIR, join(root, "build/bin"), join(root, "build/llama.cpp/bin"), join(root, "deps/llama.cpp/build/bin"),
        ...(process.env.PATH ?? "").split(delimiter),
    ].filter((d): d is string => !!d);
    for (const n of names) for (const d of dirs) if (existsSync(join(d, n))) return join(d, n);
    return undefined;
}

describe.skipIf(!haveVocabs)("synthModel", () => {
    beforeAll(async () => {
        for (const [name, { vocabName: _, ...options }] of Object.entries(specs)) {
            results[name] = await synthModel({ ...options, output: fileOf(name) });
        }
    }, 120_000);

    it("writes exactly the file its plan describes, with the vocab file's tokenizer.* copied whole", async () => {
        for (const [name, spec] of Object.entries(specs)) {
            const r = results[name]!;
            const { vocabName: _, ...options } = spec;
            const plan = await planSynthModel({ ...options, output: fileOf(name) });
            expect(statSync(r.path).size).toBe(plan.bytes);
            expect(r.bytes).toBe(plan.bytes);
            const file = await readGguf(r.path);
            expect(file.tensors.map((t) => [t.name, t.dims, t.type])).toEqual(plan.tensors.map((t) => [t.name, t.dims, t.type]));
            const vocab = await readGguf(join(vocabDir, `ggml-vocab-${spec.vocabName}.gguf`));
            const tokenizerKeys = (m: Map<string, unknown>): [string, unknown][] => [...m].filter(([k]) => k.startsWith("tokenizer."));
            expect(tokenizerKeys(file.metadata)).toEqual(tokenizerKeys(vocab.metadata));
            expect(r.vocabSize).toBe((vocab.metadata.get("tokenizer.ggml.tokens")!.value as unknown[]).length);
        }
        // Names, shapes (ggml order) and types, as llama.cpp's loader asks for them.
        const qwen = await readGguf(results["qwen2-small"]!.path);
        const t = Object.fromEntries(qwen.tensors.map((x) => [x.name, x]));
        expect(t["token_embd.weight"]).toMatchObject({ dims: [128, 151936], type: GgmlType.Q4_0 });
        expect(t["output.weight"]).toBeUndefined(); // tied
        expect(t["blk.1.attn_k.weight"]).toMatchObject({ dims: [128, 64], type: GgmlType.Q4_0 });
        expect(t["blk.1.attn_k.bias"]).toMatchObject({ dims: [64], type: GgmlType.F32 });
        expect(t["blk.1.ffn_down.weight"]).toMatchObject({ dims: [256, 128], type: GgmlType.Q4_0 });
        expect(t["blk.0.ffn_norm.weight"]).toMatchObject({ dims: [128], type: GgmlType.F32 });
        const gqa = await readGguf(results["gqa-hd64-bpe"]!.path);
        expect(gqa.metadata.get("llama.attention.key_length")).toEqual({ type: "uint32", value: 64 });
        expect(gqa.tensors.find((x) => x.name === "blk.0.attn_output.weight")?.dims).toEqual([256, 192]);
        const info = await readGgufFileInfo(results["tiny-q8_0"]!.path, { logWarnings: false });
        expect(info.metadata.general.architecture).toBe("llama");
        expect(info.tensorInfo!.map((x) => x.name)).toContain("output.weight");
    });

    it("is deterministic in the seed, and one seed draws the same weights in every type", async () => {
        const again = join(dir, "again.gguf");
        await synthModel({ preset: "tiny", type: "q4_0", seed: 1, output: again });
        const hash = (p: string): string => createHash("sha256").update(readFileSync(p)).digest("hex");
        expect(hash(again)).toBe(hash(results["tiny-q4_0"]!.path));
        await synthModel({ preset: "tiny", type: "q4_0", seed: 2, output: again });
        expect(hash(again)).not.toBe(hash(results["tiny-q4_0"]!.path));

        const tensor = "blk.1.ffn_up.weight";
        const f16File = await readGguf(results["tiny-f16"]!.path);
        const q8File = await readGguf(results["tiny-q8_0"]!.path);
        const raw16 = await readTensorBytes(results["tiny-f16"]!.path, f16File, tensor);
        const h = new Uint16Array(raw16.buffer, raw16.byteOffset, raw16.byteLength / 2);
        const x16 = Float32Array.from(h, f16BitsToF32);
        const q8 = await readTensorBytes(results["tiny-q8_0"]!.path, q8File, tensor);
        const x8 = dequantizeQ8_0(q8, x16.length);
        for (let b = 0; b < x16.length / 32; b++) {
            const d = f16BitsToF32(q8[b * 34]! | (q8[b * 34 + 1]! << 8));
            for (let j = b * 32; j < b * 32 + 32; j++) {
                // Both come from the same float: q8_0 is within half a step, fp16 within 2^-11 relative.
                expect(Math.abs(x8[j]! - x16[j]!)).toBeLessThanOrEqual(d * 0.51 + Math.abs(x16[j]!) * 2 ** -10);
            }
        }
        // Documented scales: matrices N(0, initScale²/fan_in), embeddings N(0, embeddingScale²/embedding).
        const std = (x: Float32Array): number => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
        expect(std(x16)).toBeCloseTo(1 / Math.sqrt(128), 2);
        const emb = await readTensorBytes(results["tiny-f16"]!.path, f16File, "token_embd.weight");
        const e16 = Float32Array.from(new Uint16Array(emb.buffer, emb.byteOffset, emb.byteLength / 2), f16BitsToF32);
        expect(std(e16)).toBeCloseTo(4 / Math.sqrt(128), 2);
    });

    it("gives the presets the published parameter counts of the real models", async () => {
        const published = { "llama-3.2-1b": 1_235_814_400, "llama-3.1-8b": 8_030_261_248, "qwen2.5-0.5b": 494_032_768 } as const;
        for (const [preset, count] of Object.entries(published)) {
            const plan = await planSynthModel({ preset: preset as keyof typeof published, type: "q4_0", output: join(dir, "unused.gguf") });
            expect(plan.parameters, preset).toBe(count);
            expect(plan.f16Fallback).toEqual([]);
        }
    });

    it("validates options with LlamaError codes, reports progress, and aborts cleanly", async () => {
        const output = join(dir, "bad.gguf");
        await expect(synthModel({ preset: "tiny", output, headsKV: 1 } as SynthOptions)).rejects.toMatchObject({
            code: "ERR_INVALID_OPTION", message: /did you mean "headsKv"/,
        });
        await expect(synthModel({ layers: 1, embedding: 96, heads: 4, headsKv: 3, ff: 64, output })).rejects.toMatchObject({
            code: "ERR_INVALID_OPTION", message: /divisor of heads/,
        });
        await expect(synthModel({ architecture: "qwen2", layers: 1, embedding: 96, heads: 2, headDim: 64, ff: 64, output })).rejects.toMatchObject({
            code: "ERR_INVALID_OPTION", message: /for qwen2/,
        });
        await expect(synthModel({ layers: 1, embedding: 64, heads: 1, ff: 64, output })).resolves.toMatchObject({ vocabSize: 32000 });
        await expect(synthModel({ preset: "tiny", output, vocab: "no-such-vocab" })).rejects.toMatchObject({ code: "ERR_FILE_NOT_FOUND" });
        // A row size that is not a multiple of 32 falls back to F16 for that tensor, as llama-quantize does.
        const odd = await synthModel({ layers: 1, embedding: 64, heads: 1, ff: 80, type: "q8_0", output });
        expect(odd.f16Fallback).toEqual(["blk.0.ffn_down.weight"]);

        const fractions: number[] = [];
        await synthModel({ preset: "tiny", type: "q8_0", output, onProgress: (f) => fractions.push(f) });
        expect(fractions.length).toBeGreaterThan(5);
        expect(fractions.every((f, i) => i === 0 || f >= fractions[i - 1]!)).toBe(true);
        expect(fractions.at(-1)).toBe(1);

        rmSync(output, { force: true });
        const controller = new AbortController();
        const aborted = synthModel({ preset: "tiny", output, onProgress: (f) => f > 0.3 && controller.abort() , signal: controller.signal });
        await expect(aborted).rejects.toMatchObject({ code: "ERR_ABORTED" });
        expect(existsSync(output)).toBe(false);
        expect(existsSync(`${output}.partial-${process.pid}`)).toBe(false);
    });

    describe("in node-llama-cpp (the peer)", () => {
        let llama: Llama;
        beforeAll(async () => {
            llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
        });

        for (const name of Object.keys(specs)) {
            it(`${name}: loads, tokenizes like llama.cpp's test vectors, and generates from finite logits`, async () => {
                const model = await llama.loadModel({ modelPath: fileOf(name) });
                try {
                    expect(model.fileInfo.metadata.general.name).toMatch(/random weights/);
                    const vectors = vocabVectors(specs[name]!.vocabName);
                    expect(vectors.length).toBeGreaterThan(30);
                    for (const { text, ids } of vectors) expect(Array.from(model.tokenize(text)), JSON.stringify(text)).toEqual(ids);

                    const context = await model.createContext({ contextSize: 256, threads: 1 });
                    try {
                        const prompt = model.tokenize("The quick brown fox jumps over the lazy dog");
                        const run = async (): Promise<{ top: [Token, number][]; sum: number; size: number; tokens: Token[] }> => {
                            const seq = context.getSequence();
                            try {
                                const out = await seq.controlledEvaluate([
                                    ...prompt.slice(0, -1),
                                    [prompt.at(-1)!, { generateNext: { probabilities: true, token: true } }],
                                ]);
                                const next = out.at(-1)!.next;
                                const probs = [...next.probabilities!.entries()];
                                const tokens: Token[] = [next.token!];
                                for await (const t of seq.evaluate([next.token!], { temperature: 0 })) {
                                    tokens.push(t);
                                    if (tokens.length >= 8) break;
                                }
                                return { top: probs.slice(0, 3), sum: probs.reduce((s, [, p]) => s + p, 0), size: probs.length, tokens };
                            } finally {
                                seq.dispose();
                            }
                        };
                        const a = await run();
                        const vocabSize = results[name]!.vocabSize;
                        expect(a.size).toBe(vocabSize);
                        expect(a.sum).toBeCloseTo(1, 3); // NaN logits would make this NaN
                        // Not flat: with embeddingScale 4 the argmax stands well clear of 1/vocab.
                        expect(a.top[0]![1]).toBeGreaterThan(50 / vocabSize);
                        expect(a.tokens.every((t) => Number.isInteger(t) && t >= 0 && t < vocabSize)).toBe(true);
                        expect(a.tokens[0]).toBe(a.top[0]![0]);
                        expect((await run()).tokens).toEqual(a.tokens); // greedy is reproducible
                    } finally {
                        await context.dispose();
                    }
                } finally {
                    await model.dispose();
                }
            }, 120_000);
        }
    });

    const bench = findTool(["llama-bench"]);
    it.skipIf(!bench)(`runs in llama.cpp's llama-bench${bench ? "" : " (skipped: not built; build with LLAMAFUSE_LLAMA_TOOLS=1 or set LLAMA_CPP_BIN_DIR)"}`, () => {
        for (const name of ["tiny-q4_0", "qwen2-small"]) {
            const r = spawnSync(bench!, ["-m", fileOf(name), "-p", "16", "-n", "4", "-t", "1", "-r", "1", "-o", "json"], { encoding: "utf8", timeout: 120_000 });
            expect(r.status, r.stderr).toBe(0);
            const rows = JSON.parse(r.stdout) as { avg_ts: number; n_prompt: number; n_gen: number }[];
            expect(rows.length).toBe(2);
            for (const row of rows) expect(row.avg_ts).toBeGreaterThan(0);
        }
    }, 300_000);

    const addon = existsSync(join(root, "build/Release/llamafuse.node"));
    it.skipIf(!addon)("loads in llamafuse's own addon and agrees with node-llama-cpp on the next token", async () => {
        const { loadModel } = await import("../../src/index.js");
        const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
        for (const name of ["tiny-f16", "gqa-hd64-bpe", "qwen2-small"]) {
            const ours = await loadModel(fileOf(name));
            const peer = await llama.loadModel({ modelPath: fileOf(name) });
            try {
                const text = "Once upon a time, there was a little";
                const tokens = await ours.tokenize(text, { addSpecial: false });
                expect(Array.from(tokens)).toEqual(Array.from(peer.tokenize(text)));
                const ctx = await ours.createContext({ contextSize: 256, threads: 1 });
                const out = await ctx.forward([{ sequence: 0, tokens, logits: "last" }]);
                const logits = out.logits(0);
                expect(logits.length).toBe(results[name]!.vocabSize);
                expect(logits.every(Number.isFinite)).toBe(true);
                let argmax = 0;
                for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[argmax]!) argmax = i;
                await ctx.dispose();

                const pctx = await peer.createContext({ contextSize: 256, threads: 1 });
                const seq = pctx.getSequence();
                const res = await seq.controlledEvaluate([...Array.from(tokens, (t) => t as Token).slice(0, -1), [tokens.at(-1)! as Token, { generateNext: { token: true } }]]);
                expect(res.at(-1)!.next.token, name).toBe(argmax);
                await pctx.dispose();
            } finally {
                await ours.dispose();
                await peer.dispose();
            }
        }
    }, 300_000);
});
