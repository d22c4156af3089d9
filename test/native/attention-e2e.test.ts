// End to end: logits of contexts with attention "fused" against "ggml" on the same model, after
// a prompt of a few hundred tokens (the tiled batch kernel) and over 64 teacher-forced decode
// steps (the decode kernel), on synthetic GQA models (head dims 64 and 128, f16 and q8_0 KV
// caches) and on the small real models in ../shared/models. kernelStats() shows which ran.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelStats, kernelStatsReset } from "../../src/attention.js";
import { loadModel, type Model } from "../../src/index.js";
import { synthModel } from "../../src/synth/index.js";
import { haveModels, MODELS } from "../helpers/models.js";
import { relL2, rng } from "../helpers/attention-ref.js";
import { top2 } from "../helpers/logits.js";

const THREADS = 2;
const PROMPT = 320;
const STEPS = 64;


function maxAbsDiff(a: Float32Array, b: Float32Array): number {
    let m = 0;
    for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
    return m;
}

/** Prompt logits and 64 teacher-forced greedy steps, fused against ggml, on one model. */
async function compare(model: Model, prompt: number[], kvType: "f16" | "q8_0") {
    const fused = await model.createContext({ attention: "fused", threads: THREADS, contextSize: 1024, kvType });
    const ggml = await model.createContext({ attention: "ggml", threads: THREADS, contextSize: 1024, kvType });
    try {
        kernelStatsReset();
        const a = await fused.forward([{ sequence: 0, tokens: prompt, logits: "all" }]);
        const afterFused = kernelStats();
        const b = await ggml.forward([{ sequence: 0, tokens: prompt, logits: "all" }]);
        // the ggml context never enters our kernels
        expect(kernelStats()).toEqual(afterFused);

        const n = model.info.vocabSize;
        const la = new Float32Array(prompt.length * n);
        const lb = new Float32Array(prompt.length * n);
        for (let i = 0; i < prompt.length; i++) {
            la.set(a.logits(0, i), i * n);
            lb.set(b.logits(0, i), i * n);
        }
        const promptErr = relL2(la, lb);

        // Teacher forcing: both contexts get ggml's greedy token; their argmax may differ only
        // where ggml's top two logits are closer than the two contexts' logits differ.
        let agree = 0;
        let next = top2(b.logits(0)).best;
        const fed: number[] = [];
        const stepsFused: Float32Array[] = [];
        const stepsGgml: Float32Array[] = [];
        for (let s = 0; s < STEPS; s++) {
            fed.push(next);
            const fa = (await fused.forward([{ sequence: 0, tokens: [next] }])).logits(0);
            const fb = (await ggml.forward([{ sequence: 0, tokens: [next] }])).logits(0);
            stepsFused.push(fa);
            stepsGgml.push(fb);
            const ta = top2(fa);
            const tb = top2(fb);
            if (ta.best === tb.best) agree++;
            else expect(tb.gap).toBeLessThanOrEqual(2 * maxAbsDiff(fa, fb));
            next = tb.best;
        }
        const stats = kernelStats();

        // Reference for the decode steps: the whole sequence again as one batch in a ggml
        // context (ggml's batch kernel accumulates in f32; its one-token kernel rounds q to
        // f16 and accumulates V in f16, so ggml's decode logits are not the reference).
        const ref = await model.createContext({ attention: "ggml", threads: THREADS, contextSize: 1024, kvType });
        let stepErr = 0;
        let ggmlStepErr = 0;
        let stepVsGgml = 0;
        for (let s = 0; s < STEPS; s++) stepVsGgml = Math.max(stepVsGgml, relL2(stepsFused[s]!, stepsGgml[s]!));
        try {
            const r = await ref.forward([{ sequence: 0, tokens: [...prompt, ...fed], logits: "all" }]);
            for (let s = 0; s < STEPS; s++) {
                const want = r.logits(0, prompt.length + s);
                stepErr = Math.max(stepErr, relL2(stepsFused[s]!, want));
                ggmlStepErr = Math.max(ggmlStepErr, relL2(stepsGgml[s]!, want));
            }
        } finally {
            await ref.dispose();
        }
        return { promptErr, stepErr, ggmlStepErr, stepVsGgml, agree, stats, afterFused };
    } finally {
        await fused.dispose();
        await ggml.dispose();
    }
}

// Bounds per cache type, from the measured worst of the two shapes with headroom. f16: prompt
// 5.1e-6 when first measured, 3.6e-4 / 3.9e-4 on the builds from 13:20 on (ggml's side of the
// prompt changed with that day's build changes; both sides stay within the float64 bounds of
// the shared-model test), held to 1e-3 as the shared models' prompts are; decode steps against
// the batch recomputation 6.0e-6 then, 5.0e-4 / 5.3e-4 on those builds (the batched prompt
// pass changed, not the kernels: ggml's own decode against the batch is 1.5e-3 there), held
// to 1.5e-3; and ggml's
// own one-token kernel 1.4e-3 from both (it rounds q to f16 and accumulates V in f16; held to
// 3.5e-3). q8_0: ggml rounds q to q8_0 before q·k, ours keeps it in f32 (~1e-6 from float64 at
// the op level), so fused vs ggml is 4.1e-3 (prompt) and 4.4e-3 (steps): held to 1.1e-2.
const SYNTH_BOUND = {
    f16: { prompt: 1e-3, stepVsGgml: 3.5e-3, step: 1.5e-3 },
    q8_0: { prompt: 1.1e-2, stepVsGgml: 1.1e-2, step: 1.1e-2 },
} as const;

describe("fused vs ggml attention, synthetic GQA models", () => {
    let dir: string;
    const shapes = [
        { name: "head dim 64, 8 heads / 2 KV heads", embedding: 512, heads: 8, headsKv: 2, headDim: 64 },
        { name: "head dim 128, 4 heads / 1 KV head", embedding: 512, heads: 4, headsKv: 1, headDim: 128 },
    ];
    const files: Record<string, string> = {};

    beforeAll(async () => {
        dir = mkdtempSync(path.join(tmpdir(), "llamafuse-attn-e2e-"));
        for (const [i, s] of shapes.entries()) {
            files[s.name] = (await synthModel({
                output: path.join(dir, `m${i}.gguf`), architecture: "llama", layers: 2, ff: 1024,
                embedding: s.embedding, heads: s.heads, headsKv: s.headsKv, headDim: s.headDim,
                vocab: "llama-spm", contextLength: 2048, seed: 7 + i, embeddingScale: 8,
            })).path;
        }
    }, 300_000);
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    for (const s of shapes) {
        for (const kvType of ["f16", "q8_0"] as const) {
            it(`${s.name}, ${kvType} KV cache`, async () => {
                const model = await loadModel(files[s.name]!);
                try {
                    const r = rng(99);
                    const prompt = Array.from({ length: PROMPT }, () => 3 + Math.floor(r() * (model.info.vocabSize - 3)));
                    const res = await compare(model, prompt, kvType);
                    // every attention op of the fused context ran on our kernels: 2 layers, one
                    // graph for the prompt and one per step
                    expect(res.afterFused).toEqual({ fused: 2, declined: 0 });
                    expect(res.stats).toEqual({ fused: 2 * (1 + STEPS), declined: 0 });
                    console.log(`${s.name} ${kvType}: prompt rel L2 ${res.promptErr.toExponential(2)}, decode fused vs ggml ${res.stepVsGgml.toExponential(2)}, decode vs batch: fused ${res.stepErr.toExponential(2)}, ggml ${res.ggmlStepErr.toExponential(2)}; argmax agreed ${res.agree}/${STEPS}`);
                    const bound = SYNTH_BOUND[kvType];
                    expect(res.promptErr).toBeLessThanOrEqual(bound.prompt);
                    expect(res.stepVsGgml).toBeLessThanOrEqual(bound.stepVsGgml);
                    expect(res.stepErr).toBeLessThanOrEqual(bound.step);
                    expect(res.agree).toBeGreaterThanOrEqual(STEPS - 4);
                } finally {
                    await model.dispose();
                }
            }, 300_000);
        }
    }
});

// What the fused kernels must do on each real model: take every attention op (stories260K,
// head size 8; TinyStories-656K, head size 16) or decline every one (llama-2-tiny-random, head
// size 4, not a multiple of 8: there "fused" runs ggml's kernel, so fused vs ggml compares ggml
// with ggml and proves only that the fallback is exact).
const EXPECT_FUSED: Record<keyof typeof MODELS, boolean> = { stories260K: true, tiny656K: true, tinyRandom: false };

describe.skipIf(!haveModels())("fused vs ggml attention, ../shared/models", () => {
    for (const [name, file] of Object.entries(MODELS) as [keyof typeof MODELS, string][]) {
        it(`${name}${EXPECT_FUSED[name] ? "" : " (the declined case: every op falls back to ggml)"}`, async () => {
            const model = await loadModel(file);
            try {
                const text = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ".repeat(6);
                const prompt = Array.from(await model.tokenize(text, { addSpecial: true, parseSpecial: false }));
                const res = await compare(model, prompt, "f16");
                // head sizes here are tiny: the kernels either take them or decline them whole
                console.log(`${name}: fused ${res.stats.fused} / declined ${res.stats.declined} ops; prompt rel L2 ${res.promptErr.toExponential(2)}, decode fused vs ggml ${res.stepVsGgml.toExponential(2)}, decode vs batch: fused ${res.stepErr.toExponential(2)}, ggml ${res.ggmlStepErr.toExponential(2)}; argmax agreed ${res.agree}/${STEPS}`);
                // One op per layer per graph: the prompt is one ubatch, then one per decode step.
                const layers = model.info.layers;
                const taken = EXPECT_FUSED[name];
                expect(res.afterFused).toEqual(taken ? { fused: layers, declined: 0 } : { fused: 0, declined: layers });
                expect(res.stats).toEqual(taken ? { fused: layers * (1 + STEPS), declined: 0 } : { fused: 0, declined: layers * (1 + STEPS) });
                if (!taken) {
                    expect(res.promptErr).toBe(0); // ggml against ggml: bit for bit
                    expect(res.stepVsGgml).toBe(0);
                }
                // measured: stories260K 3.7e-4, the other two 0 (656K's q8_0 activations absorb
                // the kernels' ~1e-7 differences; tinyRandom runs ggml's kernel either way)
                expect(res.promptErr).toBeLessThanOrEqual(1e-3);
                // Decode steps are held to the batch recomputation, not to ggml's decode, and no
                // tighter than ggml's own decode holds to it: tiny656K quantizes activations to
                // q8_0 in every matmul, which turns ulp-level differences into ~1e-2 logit changes
                // (ggml's one-token kernel is 1.75e-2 off there; ours 0 to 8e-3 by chunking).
                expect(res.stepErr).toBeLessThanOrEqual(Math.max(5e-3, 1.5 * res.ggmlStepErr));
            } finally {
                await model.dispose();
            }
        }, 300_000);
    }
});
