// Context-level API that had no test: setAttention and the attention getter, canShift,
// ForwardResult.sequences, kv.remove on every sequence, kv.copy of a range, ubatchSize,
// threadPolling, every KV cache type, beam search aborted midway, stopOnEog, and the error
// codes a real input reaches. References: the same computation done another way (one
// sequence alone, a fresh decode, the f16 cache), and kernelStats() for which kernel ran.
import { existsSync, readFileSync } from "node:fs";
import { totalmem } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelStats, kernelStatsReset, loadModel, type Context, type KvType, type Model } from "../../src/index.js";
import { MODELS } from "../helpers/models.js";
import { argmax, relL2 } from "../helpers/reference-llama.js";
import { cachedSynthModel } from "../helpers/synth-cache.js";

const PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog.";

let stories: Model;
let tokens: Int32Array;
beforeAll(async () => {
    stories = await loadModel(MODELS.stories260K);
    tokens = await stories.tokenize(PROMPT);
});
afterAll(() => stories?.dispose());

async function logitsOf(ctx: Context, seq = 0): Promise<Float32Array> {
    return (await ctx.forward({ sequence: seq, tokens, logits: "all" })).logits(seq);
}

describe("attention mode", () => {
    it("setAttention switches the kernels for later calls; the getter follows; results agree", async () => {
        const ctx = await stories.createContext({ contextSize: 256, threads: 1, attention: "ggml" });
        try {
            const layers = stories.info.layers;
            expect(ctx.attention).toBe("ggml");
            kernelStatsReset();
            const viaGgml = await logitsOf(ctx);
            expect(kernelStats()).toEqual({ fused: 0, declined: 0 });

            await ctx.setAttention("fused");
            expect(ctx.attention).toBe("fused");
            await ctx.kv.clear();
            const viaFused = await logitsOf(ctx);
            expect(kernelStats()).toEqual({ fused: layers, declined: 0 });
            // the same model two ways: ~2e-3 each from float64 (forward.test.ts), closer to each other
            console.log(`stories260K, last position: fused vs ggml relative L2 ${relL2(viaFused, viaGgml).toExponential(2)}`);
            expect(relL2(viaFused, viaGgml)).toBeLessThan(FUSED_VS_GGML);
            expect(argmax(viaFused)).toBe(argmax(viaGgml));

            await ctx.setAttention("ggml");
            expect(ctx.attention).toBe("ggml");
            await ctx.kv.clear();
            expect(await logitsOf(ctx)).toEqual(viaGgml); // back to ggml's kernel: bit for bit
            expect(kernelStats()).toEqual({ fused: layers, declined: 0 });

            await expect(ctx.setAttention("flash" as never)).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
            expect(ctx.attention).toBe("ggml");
        } finally {
            await ctx.dispose();
        }
    });
});

describe("forward results and the KV cache", () => {
    let ctx: Context;
    beforeAll(async () => {
        ctx = await stories.createContext({ contextSize: 512, sequences: 3, threads: 1 });
    });
    afterAll(() => ctx?.dispose());

    it("ForwardResult.sequences lists exactly the sequences of the call", async () => {
        await ctx.kv.clear();
        const out = await ctx.forward([{ sequence: 2, tokens: [1, 403] }, { sequence: 0, tokens: [1, 407] }]);
        expect([...out.sequences].sort()).toEqual([0, 2]);
        expect(() => out.logits(1)).toThrow(expect.objectContaining({ code: "ERR_INVALID_SEQUENCE" }));
        const one = await ctx.forward({ sequence: 1, tokens: [1] });
        expect(one.sequences).toEqual([1]);
    });

    it("kv.remove(-1, p0, p1) cuts every sequence; re-decoding gives the same logits again", async () => {
        await ctx.kv.clear();
        const first = await ctx.forward([0, 1, 2].map((sequence) => ({ sequence, tokens, logits: "all" as const })));
        const keep = 10;
        expect(await ctx.kv.remove(-1, keep, -1)).toBe(true);
        for (const s of [0, 1, 2]) expect(await ctx.kv.positions(s)).toEqual({ min: 0, max: keep - 1 });
        const again = await ctx.forward({ sequence: 1, tokens: tokens.subarray(keep), logits: "all" });
        // other cells and another batch shape than the first decode: rounding only (2.8e-5 measured)
        for (let i = keep; i < tokens.length; i++) expect(relL2(again.logits(1, i - keep), first.logits(1, i))).toBeLessThan(1e-4);
        expect(await ctx.kv.remove(-1, 0, -1)).toBe(true);
        for (const s of [0, 1, 2]) expect(await ctx.kv.positions(s)).toEqual({ min: -1, max: -1 });
    });

    it("kv.copy(src, dst, p0, p1) shares only that range: dst continues as if it had decoded it", async () => {
        await ctx.kv.clear();
        const whole = await ctx.forward({ sequence: 0, tokens, logits: "all" });
        const cut = 12;
        await ctx.kv.copy(0, 1, 0, cut);
        expect(await ctx.kv.positions(1)).toEqual({ min: 0, max: cut - 1 });
        expect(await ctx.kv.positions(0)).toEqual({ min: 0, max: tokens.length - 1 });
        // sequence 1 decodes the rest itself; its logits match sequence 0's over the same prefix
        const rest = await ctx.forward({ sequence: 1, tokens: tokens.subarray(cut), logits: "all" });
        // another batch shape than sequence 0's decode: rounding only (2.8e-5 measured)
        for (let i = cut; i < tokens.length; i++) expect(relL2(rest.logits(1, i - cut), whole.logits(0, i)), `position ${i}`).toBeLessThan(1e-4);
        // a range in the middle: positions [4, 8) only
        await ctx.kv.copy(0, 2, 4, 8);
        expect(await ctx.kv.positions(2)).toEqual({ min: 4, max: 7 });
    });

    it("canShift is true for an f16 cache, and a shift then moves positions", async () => {
        expect(ctx.canShift).toBe(true);
        await ctx.kv.clear();
        await ctx.forward({ sequence: 0, tokens: tokens.subarray(0, 10) });
        await ctx.kv.shift(0, 0, -1, 5);
        expect(await ctx.kv.positions(0)).toEqual({ min: 5, max: 14 });
    });
});

describe("context options", () => {
    it("ubatchSize splits a forward into micro-batches (one graph each), with the same logits", async () => {
        const n = 32;
        const run = async (options: { batchSize?: number; ubatchSize?: number }) => {
            const ctx = await stories.createContext({ contextSize: 256, threads: 1, ...options });
            try {
                kernelStatsReset();
                const out = await ctx.forward({ sequence: 0, tokens: tokens.subarray(0, n), logits: "all" });
                return { ctx: { ubatchSize: ctx.ubatchSize, batchSize: ctx.batchSize }, graphs: kernelStats().fused / stories.info.layers, out };
            } finally {
                await ctx.dispose();
            }
        };
        const whole = await run({});
        expect(whole.graphs).toBe(1);
        const micro = await run({ batchSize: 64, ubatchSize: 8 });
        expect(micro.ctx).toEqual({ ubatchSize: 8, batchSize: 64 });
        expect(micro.graphs).toBe(n / 8);
        for (let i = 0; i < n; i++) expect(relL2(micro.out.logits(0, i), whole.out.logits(0, i))).toBeLessThan(1e-3);
        await expect(stories.createContext({ batchSize: 16, ubatchSize: 32 })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
    });

    it("threadPolling 0 and 100 compute the same logits as the default (it changes waiting, not math)", async () => {
        const run = async (threadPolling?: number) => {
            const ctx = await stories.createContext({ contextSize: 256, threads: 2, ...(threadPolling === undefined ? {} : { threadPolling }) });
            try {
                return await logitsOf(ctx);
            } finally {
                await ctx.dispose();
            }
        };
        const base = await run();
        expect(await run(0)).toEqual(base);
        expect(await run(100)).toEqual(base);
        for (const bad of [-1, 101, 1.5, "50"]) {
            await expect(stories.createContext({ threadPolling: bad as never })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION", message: expect.stringContaining("threadPolling") });
        }
    });
});

describe("KV cache types against the f16 cache", () => {
    // The GQA synthetic model of forward.test.ts (head size 64: every block type fits), greedy
    // margins clear (embeddingScale 8). Each type either runs, close to f16 by its bound (from
    // the measured figure with headroom), or is refused with a code before llama.cpp sees it.
    const TYPES: KvType[] = ["f32", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl"];
    let model: Model;
    let prompt: Int32Array;
    let f16: Float32Array[];
    beforeAll(async () => {
        model = await loadModel(await cachedSynthModel({ layers: 2, embedding: 256, heads: 8, headsKv: 2, headDim: 64, ff: 512, vocab: "llama-spm", type: "f16", seed: 11 }));
        prompt = await model.tokenize(PROMPT.repeat(3));
        f16 = await runKv("f16");
    });
    afterAll(() => model?.dispose());

    async function runKv(kvType: KvType): Promise<Float32Array[]> {
        const ctx = await model.createContext({ contextSize: 512, threads: 1, kvType });
        try {
            const out = await ctx.forward({ sequence: 0, tokens: prompt, logits: "all" });
            stateBytes[kvType] = (await ctx.saveState())!.length;
            return Array.from({ length: prompt.length }, (_, i) => out.logits(0, i));
        } finally {
            await ctx.dispose();
        }
    }
    const stateBytes: Partial<Record<KvType, number>> = {};
    // bytes per cache element of each type (ggml's block sizes)
    const ELEMENT_BYTES: Record<KvType, number> = { f32: 4, f16: 2, bf16: 2, q8_0: 34 / 32, q5_1: 24 / 32, q5_0: 22 / 32, q4_1: 20 / 32, q4_0: 18 / 32, iq4_nl: 18 / 32 };

    const measured: Record<string, number> = {};
    afterAll(() => console.log(`KV cache vs f16, worst relative L2: ${Object.entries(measured).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", ")}`));

    it.each(TYPES)("%s", async (kvType) => {
        const got = await runKv(kvType);
        let worst = 0;
        for (let i = 0; i < prompt.length; i++) worst = Math.max(worst, relL2(got[i]!, f16[i]!));
        measured[kvType] = worst;
        // The cache really is of that type: a saved state holds K and V of every used cell
        // (2 layers × K,V × positions × 2 KV heads × 64), so it differs from the f16 one by
        // that many elements times the difference in element size (to a few bytes of header).
        const elements = 2 * 2 * prompt.length * 2 * 64;
        expect(Math.abs(stateBytes[kvType]! - stateBytes.f16! - elements * (ELEMENT_BYTES[kvType] - 2))).toBeLessThanOrEqual(8);
        if (kvType === "f32") {
            // llama.cpp casts an f32 cache to f16 for flash attention (llama-graph.cpp), so an f32
            // cache computes exactly what an f16 one does
            expect(worst).toBe(0);
        } else {
            expect(worst).toBeGreaterThan(0);
            expect(worst).toBeLessThan(KV_BOUND[kvType]!);
        }
    });

    it("canShift: false for a bf16 cache (ggml's CPU rope has no bf16 kernel); kv.shift then fails with ERR_UNSUPPORTED before ggml could abort", async () => {
        for (const [kvType, shiftable] of [["f16", true], ["q8_0", true], ["bf16", false]] as const) {
            const ctx = await model.createContext({ contextSize: 512, threads: 1, kvType });
            try {
                expect(ctx.canShift, kvType).toBe(shiftable);
                await ctx.forward({ sequence: 0, tokens: prompt.subarray(0, 20) });
                if (shiftable) {
                    await ctx.kv.shift(0, 0, -1, 3);
                    expect(await ctx.kv.positions(0)).toEqual({ min: 3, max: 22 });
                    await ctx.forward({ sequence: 0, tokens: [prompt[20]!] }); // the shifted cache is usable
                } else {
                    await expect(ctx.kv.shift(0, 0, -1, 3)).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" });
                    expect(await ctx.kv.positions(0)).toEqual({ min: 0, max: 19 }); // untouched
                }
            } finally {
                await ctx.dispose();
            }
        }
    });

    it("fewer bits per element, further from f16: bf16 < q8_0 < q5_* < q4_* and iq4_nl", () => {
        const m = measured as Record<KvType, number>;
        expect(m.bf16).toBeLessThan(m.q8_0);
        expect(m.q8_0).toBeLessThan(Math.min(m.q5_0, m.q5_1));
        expect(Math.max(m.q5_0, m.q5_1)).toBeLessThan(Math.min(m.q4_0, m.q4_1, m.iq4_nl));
    });
});

describe("generation controls", () => {
    it("stopOnEog: true ends at the end-of-generation token (not emitted); false goes on through it", async () => {
        const ctx = await stories.createContext({ contextSize: 256, threads: 1 });
        try {
            const eos = stories.info.eos;
            // a bias that makes EOS the greedy pick at once
            const o = { temperature: 0, maxTokens: 5, logitBias: { [eos]: 100 } };
            const run = async (stopOnEog: boolean) => {
                const it = ctx.generate(tokens, { ...o, stopOnEog });
                const got: number[] = [];
                for (;;) {
                    const r = await it.next();
                    if (r.done) return { got, summary: r.value };
                    got.push(r.value.token);
                }
            };
            const stopped = await run(true);
            expect(stopped.got).toEqual([]);
            expect(stopped.summary.reason).toBe("eog");
            await ctx.kv.clear();
            const through = await run(false);
            expect(through.got).toEqual([eos, eos, eos, eos, eos]);
            expect(through.summary.reason).toBe("maxTokens");
        } finally {
            await ctx.dispose();
        }
    });

    it("beam search aborted midway: ERR_ABORTED soon after, and the context then gives the same beams as a fresh one", async () => {
        const opts = { beams: 3, maxTokens: 12 };
        const fresh = await stories.createContext({ contextSize: 512, sequences: 3, threads: 1 });
        const expected = await fresh.beamSearch(tokens, opts);
        await fresh.dispose();

        const ctx = await stories.createContext({ contextSize: 512, sequences: 3, threads: 1 });
        try {
            const layers = stories.info.layers;
            kernelStatsReset();
            const ac = new AbortController();
            // abort once three graphs (the prompt and two steps) have run: genuinely midway
            const timer = setInterval(() => kernelStats().fused >= 3 * layers && ac.abort(), 0);
            const err = await ctx.beamSearch(tokens, { beams: 3, maxTokens: 400, signal: ac.signal }).catch((e) => e);
            clearInterval(timer);
            expect(err).toMatchObject({ code: "ERR_ABORTED" });
            const graphs = kernelStats().fused / layers;
            expect(graphs).toBeGreaterThanOrEqual(3);
            expect(graphs).toBeLessThan(20); // far from the 400 steps asked for
            await ctx.kv.clear();
            expect(await ctx.beamSearch(tokens, opts)).toEqual(expected);
        } finally {
            await ctx.dispose();
        }
    });
});

describe("error codes reached by real input", () => {
    it("ERR_BUSY: a second generate on a sequence that is generating, and a KV edit of it", async () => {
        const ctx = await stories.createContext({ contextSize: 256, threads: 1, sequences: 2 });
        try {
            const first = ctx.generate(tokens, { temperature: 0, maxTokens: 50 });
            await first.next(); // holds sequence 0 now
            await expect(ctx.generate(tokens, { temperature: 0, maxTokens: 5 }).next()).rejects.toMatchObject({ code: "ERR_BUSY" });
            await expect(ctx.kv.remove(0, 0, -1)).rejects.toMatchObject({ code: "ERR_BUSY" });
            // another sequence is free
            const other = await ctx.generate(tokens, { temperature: 0, maxTokens: 2, sequence: 1 }).next();
            expect(other.done).toBe(false);
            await first.return(undefined as never);
            expect(await ctx.kv.remove(0, 0, -1)).toBe(true); // released
        } finally {
            await ctx.dispose();
        }
    });

    it("ERR_NO_CHAT_TEMPLATE: a chat template asked of a model that has none", async () => {
        expect(stories.info.metadata["tokenizer.chat_template"]).toBeUndefined();
        await expect(Promise.resolve().then(() => stories.applyChatTemplate([{ role: "user", content: "hi" }]))).rejects.toMatchObject({ code: "ERR_NO_CHAT_TEMPLATE" });
    });

    // 4 layers × K and V × 2^24 cells × 512 × 4 bytes (f32) = 275 GB: more than this machine has,
    // so the KV buffer allocation fails inside llama_init_from_model. Where the kernel promises
    // any allocation (vm.overcommit_memory = 1) or the machine is that large, llama.cpp would
    // clear 275 GB instead: skipped there, visibly.
    const overcommitAlways = existsSync("/proc/sys/vm/overcommit_memory") && readFileSync("/proc/sys/vm/overcommit_memory", "utf8").trim() === "1";
    it.skipIf(overcommitAlways || totalmem() > 128 * 2 ** 30)("ERR_CONTEXT_CREATE: a KV cache larger than the machine's memory; the model stays usable", async () => {
        const big = await loadModel(await cachedSynthModel({ layers: 4, embedding: 512, heads: 8, headsKv: 8, ff: 1536, vocab: "llama-spm", type: "f16", seed: 3 }));
        try {
            await expect(big.createContext({ contextSize: 2 ** 24, kvType: "f32", threads: 1 })).rejects.toMatchObject({ code: "ERR_CONTEXT_CREATE" });
            const ctx = await big.createContext({ contextSize: 256, threads: 1 });
            await ctx.forward({ sequence: 0, tokens: [1, 2, 3] });
            await ctx.dispose();
        } finally {
            await big.dispose();
        }
    });

    it.skip("ERR_DECODE and ERR_NATIVE: no public input reaches them (validation screens every llama_decode / llama.cpp failure it can foresee); they remain for failures inside llama.cpp", () => {});

    it("ERR_UNSUPPORTED: a context on a vocabOnly model", async () => {
        const m = await loadModel(MODELS.stories260K, { vocabOnly: true });
        try {
            await expect(m.createContext()).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" });
        } finally {
            await m.dispose();
        }
    });
});

// stories260K, the prompt above: fused vs ggml 6.8e-4 measured (f16 KV: ggml rounds q to f16), about 3x
const FUSED_VS_GGML = 2e-3;
// Measured on the 133-position prompt above: bf16 5.2e-3, q8_0 1.5e-2, q5_1 9.4e-2, q5_0 9.3e-2,
// q4_1 1.8e-1, q4_0 2.2e-1, iq4_nl 1.7e-1 (random weights amplify cache rounding); about 2x.
const KV_BOUND: Partial<Record<KvType, number>> = { bf16: 1.2e-2, q8_0: 3.5e-2, q5_1: 0.2, q5_0: 0.2, q4_1: 0.4, q4_0: 0.45, iq4_nl: 0.35 };
