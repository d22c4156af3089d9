// Beam search: width 1 is greedy; wider beams never score below greedy here; reported
// log-probs equal a separate forward's log-softmax; one decode per step inside the
// context's scheduler, shared with other generations; the context is left clean; abort,
// dispose; bad input.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Context, type Model } from "../../src/index.js";
import { MODELS } from "../helpers/models.js";

const PROMPTS = ["Once upon a time", "The little dog", "Tom and his friend went to the"];
const T = 16;

let model: Model;
let ctx: Context;
beforeAll(async () => {
    model = await loadModel(MODELS.stories260K);
    ctx = await model.createContext({ contextSize: 256, threads: 1, sequences: 4, attention: "ggml" });
});
afterAll(async () => {
    await ctx.dispose();
    await model.dispose();
});

/** Sum of log-softmax of `tokens` after `prompt`, from one independent forward (float64). */
async function scoreByForward(prompt: Int32Array, tokens: number[]): Promise<number> {
    const ref = await model.createContext({ contextSize: 256, threads: 1, attention: "ggml" });
    const all = [...prompt, ...tokens];
    const out = await ref.forward({ sequence: 0, tokens: all, logits: "all" });
    let sum = 0;
    for (let i = 0; i < tokens.length; i++) {
        const row = out.logits(0, prompt.length - 1 + i);
        let max = -Infinity;
        for (const v of row) max = Math.max(max, v);
        let z = 0;
        for (const v of row) z += Math.exp(v - max);
        sum += row[tokens[i]!]! - max - Math.log(z);
    }
    await ref.dispose();
    return sum;
}

async function greedy(prompt: Int32Array, n: number): Promise<number[]> {
    const out: number[] = [];
    for await (const s of ctx.generate(prompt, { temperature: 0, maxTokens: n })) out.push(s.token);
    await ctx.kv.clear();
    return out;
}

describe("beamSearch", () => {
    it("beams: 1 equals greedy", async () => {
        for (const p of PROMPTS) {
            const prompt = await model.tokenize(p);
            const [h] = await ctx.beamSearch(prompt, { beams: 1, maxTokens: T });
            expect(h!.tokens).toEqual(await greedy(prompt, T));
            expect(h!.text).toBe(new TextDecoder().decode(Uint8Array.from(model.tokenPieces(h!.tokens, { special: false }).flatMap((x) => [...x]))));
        }
    });

    it("with k beams the best score is at least greedy's, and log-probs match a separate forward", async () => {
        for (const p of PROMPTS) {
            const prompt = await model.tokenize(p);
            const g = await greedy(prompt, T);
            const gLogProb = await scoreByForward(prompt, g);
            for (const beams of [2, 4]) {
                const hyps = await ctx.beamSearch(prompt, { beams, maxTokens: T, lengthPenalty: 0 });
                expect(hyps.length).toBeGreaterThan(0);
                expect(hyps.length).toBeLessThanOrEqual(beams);
                for (let i = 1; i < hyps.length; i++) expect(hyps[i - 1]!.score).toBeGreaterThanOrEqual(hyps[i]!.score);
                expect(new Set(hyps.map((h) => h.tokens.join())).size).toBe(hyps.length);
                // Scored the same way (one independent forward each): logits of a one-token step
                // and of a whole-prompt batch differ in the last bits, which adds up over T tokens.
                expect(await scoreByForward(prompt, hyps[0]!.tokens)).toBeGreaterThanOrEqual(gLogProb - 1e-6);
                for (const h of hyps) {
                    expect(h.score).toBe(h.logProb); // lengthPenalty 0
                    expect(h.logProb).toBeCloseTo(await scoreByForward(prompt, h.tokens), 2);
                }
            }
        }
    });

    it("lengthPenalty divides by length^penalty", async () => {
        const prompt = await model.tokenize(PROMPTS[0]!);
        const hyps = await ctx.beamSearch(prompt, { beams: 3, maxTokens: 8, lengthPenalty: 1 });
        for (const h of hyps) expect(h.score).toBeCloseTo(h.logProb / h.tokens.length, 6);
    });

    it("one decode per step, one token per live beam, in the scheduler's steps; sequences are left empty", async () => {
        const prompt = await model.tokenize(PROMPTS[1]!);
        await ctx.generate([1], { maxTokens: 0, sequence: 0 }).next(); // the scheduler exists
        const before = ctx.schedulerStats()!;
        await ctx.beamSearch(prompt, { beams: 4, maxTokens: 10 });
        const after = ctx.schedulerStats()!;
        const steps = after.steps - before.steps;
        const decoded = after.decodedTokens - before.decodedTokens;
        expect(steps).toBeLessThanOrEqual(10); // the prompt + at most 9 steps
        expect(steps).toBeGreaterThanOrEqual(2);
        expect(decoded).toBeLessThanOrEqual(prompt.length + 4 * (steps - 1));
        expect(decoded).toBeGreaterThan(prompt.length + (steps - 1)); // several beams per step
        for (let s = 0; s < 4; s++) expect((await ctx.kv.positions(s)).max).toBe(-1);
        expect(Array.from(ctx.kv.tokens(0)!)).toEqual([]);
    });

    it("stop strings finish a hypothesis, cut before the match", async () => {
        const prompt = await model.tokenize(PROMPTS[0]!);
        const hyps = await ctx.beamSearch(prompt, { beams: 2, maxTokens: 20, stop: "Lily" });
        for (const h of hyps) expect(h.text).not.toContain("Lily");
        expect(hyps.some((h) => h.text.endsWith("named "))).toBe(true);
    });

    it("bad input", async () => {
        const prompt = await model.tokenize(PROMPTS[0]!);
        await expect(ctx.beamSearch(prompt, { beams: 5 })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION", message: expect.stringContaining("sequences") });
        await expect(ctx.beamSearch(prompt, { beams: 0 })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
        await expect(ctx.beamSearch(prompt, { beam: 2 } as never)).rejects.toThrow(/did you mean "beams"/);
        await expect(ctx.beamSearch([], { beams: 2 })).rejects.toMatchObject({ code: "ERR_INVALID_BATCH" });
        await expect(ctx.beamSearch([1, 1e9], { beams: 2 })).rejects.toMatchObject({ code: "ERR_INVALID_TOKEN" });
        const ac = new AbortController();
        ac.abort();
        await expect(ctx.beamSearch(prompt, { beams: 2, signal: ac.signal })).rejects.toMatchObject({ code: "ERR_ABORTED" });
    });

    it("runs beside a generation on another sequence (each as alone); held sequences refuse other calls with ERR_BUSY", async () => {
        const wide = await model.createContext({ contextSize: 256, threads: 1, sequences: 5, attention: "ggml" });
        try {
            const prompt = await model.tokenize(PROMPTS[2]!);
            const other = await model.tokenize(PROMPTS[0]!);
            const gen = async (seq: number) => {
                const out: number[] = [];
                for await (const s of wide.generate(other, { sequence: seq, temperature: 0, maxTokens: 40 })) out.push(s.token);
                return out;
            };
            const steps = () => wide.schedulerStats()?.steps ?? 0;
            let t0 = steps();
            const aloneBeams = await wide.beamSearch(prompt, { beams: 3, maxTokens: 12, sequences: [1, 2, 3] });
            const searchSteps = steps() - t0;
            t0 = steps();
            const aloneGen = await gen(4);
            const genSteps = steps() - t0;
            await wide.kv.clear();
            t0 = steps();
            const [beams, tokens] = await Promise.all([wide.beamSearch(prompt, { beams: 3, maxTokens: 12, sequences: [1, 2, 3] }), gen(4)]);
            // They advanced together: shared llama_decode steps, not one after the other.
            expect(steps() - t0).toBeLessThan(searchSteps + genSteps - 5);
            expect(tokens).toEqual(aloneGen);
            expect(beams.map((b) => b.tokens)).toEqual(aloneBeams.map((b) => b.tokens));
            // The steps' batches differ (the generation's token rides along) and the shared cache
            // holds its cells: float noise on 12 summed log-probs (measured 2.5e-4).
            beams.forEach((b, i) => expect(Math.abs(b.logProb - aloneBeams[i]!.logProb)).toBeLessThan(2e-3));

            // While the search holds 0..1, they are refused; sequence 2 is free.
            const search = wide.beamSearch(prompt, { beams: 2, maxTokens: 30, sequences: [0, 1] });
            await new Promise((r) => setTimeout(r, 0));
            await expect(wide.generate(other, { sequence: 1, maxTokens: 2 }).next()).rejects.toMatchObject({ code: "ERR_BUSY" });
            await expect(wide.forward({ sequence: 0, tokens: [1] })).rejects.toMatchObject({ code: "ERR_BUSY" });
            expect((await gen(2)).length).toBe(40);
            await search;
            // A generation holds its sequence against a search.
            const it = wide.generate(other, { sequence: 3, maxTokens: 200, temperature: 0 });
            await it.next();
            await expect(wide.beamSearch(prompt, { beams: 2, sequences: [2, 3] })).rejects.toMatchObject({ code: "ERR_BUSY" });
            await it.return(undefined as never);
            await expect(wide.beamSearch(prompt, { beams: 2, sequences: [2, 2] })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
            await expect(wide.beamSearch(prompt, { beams: 3, sequences: [0, 1] })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
            await expect(wide.beamSearch(prompt, { sequences: [0, 9] })).rejects.toMatchObject({ code: "ERR_INVALID_SEQUENCE" });
            for (const s of [0, 1]) expect((await wide.kv.positions(s)).max).toBe(-1); // the searches' sequences
        } finally {
            await wide.dispose();
        }
    });

    it("an abort mid-search rejects with ERR_ABORTED and empties its sequences; dispose mid-search rejects with ERR_DISPOSED", async () => {
        // Long searches (1,000 steps of 4 beams), stopped a few milliseconds in.
        const c = await model.createContext({ contextSize: 4096, threads: 1, sequences: 4, attention: "ggml" });
        const prompt = await model.tokenize(PROMPTS[0]!);
        const ac = new AbortController();
        const search = c.beamSearch(prompt, { beams: 4, maxTokens: 1000, stopOnEog: false, signal: ac.signal });
        setTimeout(() => ac.abort(), 5);
        await expect(search).rejects.toMatchObject({ code: "ERR_ABORTED" });
        for (let s = 0; s < 4; s++) expect((await c.kv.positions(s)).max).toBe(-1);
        // The sequences are free again.
        expect((await c.beamSearch(prompt, { beams: 2, maxTokens: 3 })).length).toBeGreaterThan(0);
        const doomed = c.beamSearch(prompt, { beams: 4, maxTokens: 1000, stopOnEog: false }).then(() => null, (err: unknown) => err);
        await new Promise((r) => setTimeout(r, 5));
        await c.dispose();
        expect(await doomed).toMatchObject({ code: "ERR_DISPOSED" });
    });
});
