// synthModel's shape and scale options, each checked where it must show: in the GGUF header as
// node-llama-cpp's own reader sees it, and in what the addon computes from the file.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { readGgufFileInfo } from "node-llama-cpp";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/index.js";
import { synthModel, type SynthOptions } from "../../src/synth/index.js";

const dir = mkdtempSync(path.join(tmpdir(), "llamafuse-synth-api-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SMALL = { architecture: "llama", layers: 2, embedding: 64, heads: 2, headsKv: 1, ff: 128, vocab: "llama-spm", type: "f16", seed: 4 } as const;
let n = 0;
const write = (o: Omit<SynthOptions, "output">) => synthModel({ ...o, output: path.join(dir, `m${n++}.gguf`) });

/** The header as node-llama-cpp reads it, flattened to "a.b.c" keys. */
async function header(file: string): Promise<{ meta: Record<string, unknown>; tensors: string[] }> {
    const info = await readGgufFileInfo(file, { readTensorInfo: true, logWarnings: false });
    const meta: Record<string, unknown> = {};
    const walk = (o: Record<string, unknown>, prefix: string) => {
        for (const [k, v] of Object.entries(o)) {
            const key = prefix ? `${prefix}.${k}` : k;
            if (v !== null && typeof v === "object" && !Array.isArray(v) && !ArrayBuffer.isView(v)) walk(v as Record<string, unknown>, key);
            else meta[key] = v;
        }
    };
    walk(info.metadata as unknown as Record<string, unknown>, "");
    return { meta, tensors: (info.tensorInfo ?? []).map((t) => t.name) };
}

function std(x: Float32Array): number {
    let m = 0;
    for (const v of x) m += v;
    m /= x.length;
    let s = 0;
    for (const v of x) s += (v - m) ** 2;
    return Math.sqrt(s / x.length);
}

describe("synthModel options", () => {
    it("name, contextLength, ropeTheta and rmsEps land in the header and in model.info", async () => {
        const r = await write({ ...SMALL, name: "api coverage model", contextLength: 1536, ropeTheta: 250000, rmsEps: 3e-6 });
        const { meta } = await header(r.path);
        expect(meta["general.name"]).toBe("api coverage model");
        expect(meta["llama.context_length"]).toBe(1536);
        expect(meta["llama.rope.freq_base"]).toBeCloseTo(250000, 0);
        expect(meta["llama.attention.layer_norm_rms_epsilon"] as number).toBeCloseTo(3e-6, 10);
        const model = await loadModel(r.path);
        try {
            expect(model.info.name).toBe("api coverage model");
            expect(model.info.trainContextSize).toBe(1536);
        } finally {
            await model.dispose();
        }
    });

    it("ropeTheta changes what the model computes (positions enter through RoPE)", async () => {
        const a = await write({ ...SMALL, ropeTheta: 10000 });
        const b = await write({ ...SMALL, ropeTheta: 500 });
        const logits = async (file: string) => {
            const model = await loadModel(file);
            const ctx = await model.createContext({ contextSize: 256, threads: 1 });
            const out = (await ctx.forward({ sequence: 0, tokens: [1, 500, 600, 700, 800, 900] })).logits(0);
            await model.dispose();
            return out;
        };
        const la = await logits(a.path), lb = await logits(b.path);
        let diff = 0;
        la.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - lb[i]!))));
        expect(diff).toBeGreaterThan(1e-3);
    });

    it("qkvBias writes the q/k/v bias tensors; without it there are none", async () => {
        const withBias = await header((await write({ ...SMALL, qkvBias: true })).path);
        const without = await header((await write({ ...SMALL, qkvBias: false })).path);
        for (const l of [0, 1]) {
            for (const t of ["attn_q", "attn_k", "attn_v"]) {
                expect(withBias.tensors).toContain(`blk.${l}.${t}.bias`);
                expect(without.tensors).not.toContain(`blk.${l}.${t}.bias`);
            }
        }
    });

    it("vocabSize picks the vocabulary of that size; a size the file does not have is a warning", async () => {
        const r = await write({ ...SMALL, vocab: undefined, vocabSize: 32000 });
        expect(r.vocabSize).toBe(32000);
        expect(path.basename(r.vocabPath)).toBe("ggml-vocab-llama-spm.gguf");
        expect((await header(r.path)).meta["tokenizer.ggml.tokens"]).toHaveLength(32000);
        const w = await write({ ...SMALL, vocabSize: 1234 });
        expect(w.vocabSize).toBe(32000);
        expect(w.warnings.join("\n")).toMatch(/vocabSize 1234 was not used/);
    });

    it("embeddingScale is the logits' standard deviation", async () => {
        for (const scale of [1, 8]) {
            const r = await write({ ...SMALL, embedding: 256, heads: 4, headsKv: 2, ff: 512, embeddingScale: scale });
            const model = await loadModel(r.path);
            try {
                const ctx = await model.createContext({ contextSize: 256, threads: 1 });
                const out = await ctx.forward({ sequence: 0, tokens: [1, 500, 600, 700], logits: "all" });
                // 32,000 logits per position: the sample std is within a few % of the scale
                for (let i = 0; i < 4; i++) expect(std(out.logits(0, i)) / scale, `scale ${scale}, position ${i}`).toBeGreaterThan(0.8);
                for (let i = 0; i < 4; i++) expect(std(out.logits(0, i)) / scale, `scale ${scale}, position ${i}`).toBeLessThan(1.25);
            } finally {
                await model.dispose();
            }
        }
    });

    it("initScale 0 zeroes every block: the last token alone decides the logits", async () => {
        const run = async (initScale: number) => {
            const r = await write({ ...SMALL, initScale });
            const model = await loadModel(r.path);
            try {
                const ctx = await model.createContext({ contextSize: 256, threads: 1, sequences: 2 });
                const out = await ctx.forward([
                    { sequence: 0, tokens: [1, 500, 600, 700] },
                    { sequence: 1, tokens: [1, 900, 800, 50, 700] },
                ]);
                let diff = 0;
                out.logits(0).forEach((v, i) => (diff = Math.max(diff, Math.abs(v - out.logits(1)[i]!))));
                return diff;
            } finally {
                await model.dispose();
            }
        };
        expect(await run(0)).toBeLessThan(1e-5); // attention and FFN add 0 to the residual stream
        expect(await run(1)).toBeGreaterThan(1e-2);
    });
});
