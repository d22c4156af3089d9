// The context owns its sampler chains (issue 14): ctx.resetSampling() is a method that
// resets a sequence's chains, and ctx.dispose() frees every chain it built (a freed native
// chain refuses to sample), where a module-level WeakMap used to keep them until GC.
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model, type SamplingOptions } from "../../src/index.js";
import { contextSampler, resolveSampling } from "../../src/sampling.js";
import { MODELS } from "../helpers/models.js";

const have = existsSync(MODELS.stories260K);

describe.runIf(have)("sampler chains owned by the context", () => {
    let model: Model;
    beforeAll(async () => {
        model = await loadModel(MODELS.stories260K);
    });
    afterAll(async () => {
        await model?.dispose();
    });

    it("ctx.resetSampling(sequence) forgets the penalty history of that sequence only", async () => {
        const ctx = await model.createContext({ contextSize: 256, threads: 1, sequences: 2 });
        const prompt = await model.tokenize("Once upon a time");
        await ctx.forward([{ sequence: 0, tokens: prompt }, { sequence: 1, tokens: prompt }]);
        const opts = { temperature: 0, presencePenalty: 100 };
        const first = (await ctx.sample(0, opts)).token;
        expect((await ctx.sample(0, opts)).token).not.toBe(first); // banned by its own history
        expect((await ctx.sample(1, opts)).token).toBe(first);
        await ctx.resetSampling(0);
        expect((await ctx.sample(0, opts)).token).toBe(first); // history gone
        expect((await ctx.sample(1, opts)).token).not.toBe(first); // sequence 1 kept its history
        await ctx.dispose();
    });

    it("ctx.dispose() frees every chain the context built", async () => {
        const ctx = await model.createContext({ contextSize: 256, threads: 1, sequences: 2 });
        const V = model.info.vocabSize;
        const chain = (seq: number, o: SamplingOptions) => contextSampler(ctx, seq, resolveSampling(o, V, ctx.contextSize));
        const chains = [await chain(0, { temperature: 0.7, seed: 3 }), await chain(1, { temperature: 0.7, seed: 3 }), await chain(0, { topK: 5, seed: 1 })];
        const logits = new Float32Array(V).map((_, i) => Math.sin(i));
        for (const c of chains) expect((await c.sampleLogits(logits, -1)).token).toBeGreaterThanOrEqual(0);
        await ctx.dispose();
        // a freed native chain answers ERR_DISPOSED ("the sampler is disposed")
        for (const c of chains) await expect(c.sampleLogits(logits, -1)).rejects.toMatchObject({ code: "ERR_DISPOSED", message: expect.stringMatching(/sampler is disposed/) });
    });
});
