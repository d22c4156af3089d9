// A generation's last token (maxTokens reached, or a stop string completed) goes into the cache
// without its logits row: nothing in that generation needs it, and on a small model the row
// (the output head) is most of a decode. The sequence owes those logits and computes them
// when something continues from it. To every caller the sequence must still behave as if
// they were kept: sampling, continuing, copying the sequence and saving its state all give
// what one uninterrupted greedy run gives.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Context, type Model } from "../../src/index.js";
import { collect } from "../helpers/collect.js";
import { MODELS } from "../helpers/models.js";

describe("a generation's last token: logits computed only when asked for", () => {
    let model: Model;
    let ctx: Context;
    let prompt: Int32Array;
    let reference: number[];
    const skipped = () => ctx.schedulerStats()?.lastRowsSkipped ?? 0;

    beforeAll(async () => {
        model = await loadModel(MODELS.stories260K);
        ctx = await model.createContext({ contextSize: 512, threads: 1, sequences: 2 });
        prompt = await model.tokenize("Once upon a time");
        reference = (await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 40, stopOnEog: false }))).tokens;
        await ctx.kv.clear();
    });
    afterAll(async () => {
        await ctx.dispose();
        await model.dispose();
    });

    it("maxTokens: the last row is skipped, and sampling afterwards gives greedy's next token", async () => {
        const before = skipped();
        const a = await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 10, stopOnEog: false }));
        expect(a.tokens).toEqual(reference.slice(0, 10));
        expect(skipped()).toBe(before + 1);
        expect((await ctx.kv.positions(0)).max).toBe(prompt.length + 10 - 1); // the token is in the cache
        expect((await ctx.sample(0, { temperature: 0 })).token).toBe(reference[10]);
        // Sampling paid what was owed: a second sample reads the same logits.
        expect((await ctx.sample(0, { temperature: 0 })).token).toBe(reference[10]);
        expect((await ctx.kv.positions(0)).max).toBe(prompt.length + 10 - 1);
        await ctx.kv.clear();
    });

    it("one token at a time, each continuing from the last one's owed logits, is the greedy run", async () => {
        const got: number[] = [];
        const first = await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 1, stopOnEog: false }));
        got.push(...first.tokens);
        while (got.length < 20) got.push(...(await collect(ctx.generate([], { temperature: 0, maxTokens: 1, stopOnEog: false }))).tokens);
        expect(got).toEqual(reference.slice(0, 20));
        expect((await ctx.kv.positions(0)).max).toBe(prompt.length + 20 - 1);
        await ctx.kv.clear();
    });

    it("a copied sequence inherits what is owed; both continue like the greedy run", async () => {
        await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 12, stopOnEog: false, sequence: 0 }));
        await ctx.kv.copy(0, 1);
        const one = await collect(ctx.generate([], { temperature: 0, maxTokens: 5, stopOnEog: false, sequence: 1 }));
        const zero = await collect(ctx.generate([], { temperature: 0, maxTokens: 5, stopOnEog: false, sequence: 0 }));
        expect(one.tokens).toEqual(reference.slice(12, 17));
        expect(zero.tokens).toEqual(reference.slice(12, 17));
        await ctx.kv.clear();
    });

    it("a saved state carries the logits owed at save time", async () => {
        await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 8, stopOnEog: false }));
        const state = await ctx.saveState(undefined, { sequence: 0 });
        await ctx.kv.clear();
        await ctx.loadState(state!, { sequence: 0 });
        expect((await ctx.sample(0, { temperature: 0 })).token).toBe(reference[8]);
        await ctx.kv.clear();
    });

    it("a stop string: the row is skipped too, and continuing goes on from the stop", async () => {
        const pieces = model.tokenPieces(reference).map((p) => new TextDecoder().decode(p));
        const text = pieces.join("");
        // A stop string that ends inside token k: the cache keeps tokens 0..k.
        const k = 6;
        const end = pieces.slice(0, k + 1).join("").length;
        const stop = text.slice(end - 2, end);
        expect(text.indexOf(stop)).toBe(end - 2); // the first place it occurs
        const before = skipped();
        await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 30, stopOnEog: false, stop }));
        expect(skipped()).toBe(before + 1);
        expect((await ctx.kv.positions(0)).max).toBe(prompt.length + k);
        const more = await collect(ctx.generate([], { temperature: 0, maxTokens: 4, stopOnEog: false }));
        expect(more.tokens).toEqual(reference.slice(k + 1, k + 5));
        await ctx.kv.clear();
    });

    it("removing the last token drops what is owed: the sequence has no logits to sample", async () => {
        await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 5, stopOnEog: false }));
        await ctx.kv.remove(0, prompt.length + 4);
        await expect(ctx.sample(0, { temperature: 0 })).rejects.toMatchObject({ code: "ERR_NO_LOGITS" });
        await ctx.kv.clear();
    });
});
