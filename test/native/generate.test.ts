// generate(): greedy output equal to node-llama-cpp's (same llama.cpp commit), computed here;
// UTF-8-safe streaming, stop strings across token boundaries, abort, early exit, and that
// the context is left consistent (KV cache and next-token logits) in every case.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, LlamaError, type Context, type GenerateOptions, type GenerateStep, type Model } from "../../src/index.js";
import { logSoftmax64, topK } from "../helpers/log-softmax.js";
import { collect } from "../helpers/collect.js";
import { MODELS } from "../helpers/models.js";
import { peer, peerGreedy } from "../helpers/peer.js";

const PROMPTS = ["Once upon a time", "The little dog", "Tom and his friend went to the", "One day, a girl named Sue"];
const N = 120;



describe("greedy generation equals node-llama-cpp's", () => {
    for (const [name, file] of [["stories260K", MODELS.stories260K], ["TinyStories-656K", MODELS.tiny656K]] as const) {
        for (const attention of ["ggml"] as const) {
            it(`${name}, ${PROMPTS.length} prompts, ${N} tokens, attention: ${attention}`, async () => {
                const model = await loadModel(file);
                const inputs = await Promise.all(PROMPTS.map(async (p) => Array.from(await model.tokenize(p))));
                const expected = await peerGreedy(file, inputs, N);
                let compared = 0;
                for (let i = 0; i < PROMPTS.length; i++) {
                    const ctx = await model.createContext({ contextSize: 256, threads: 1, attention });
                    const got = await collect(ctx.generate(inputs[i]!, { temperature: 0, maxTokens: N }));
                    expect(got.tokens, `prompt ${JSON.stringify(PROMPTS[i])}`).toEqual(expected[i]);
                    // The streamed text is what detokenizing prompt + output adds to the prompt's text.
                    const before = await model.detokenize(inputs[i]!, { removeSpecial: true });
                    const after = await model.detokenize([...inputs[i]!, ...got.tokens], { removeSpecial: true });
                    expect(before + got.text).toBe(after);
                    compared += got.tokens.length;
                    await ctx.dispose();
                }
                expect(compared).toBeGreaterThanOrEqual(100 * PROMPTS.length - 100);
                await model.dispose();
            });
        }
    }

    it("a string prompt is tokenized with BOS, the same as the tokens path", async () => {
        const model = await loadModel(MODELS.tiny656K);
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        const a = await collect(ctx.generate(PROMPTS[0]!, { temperature: 0, maxTokens: 30 }));
        await ctx.kv.clear();
        const tokens = await model.tokenize(PROMPTS[0]!);
        expect(tokens[0]).toBe(model.info.bos);
        expect(tokens[1]).toBe(80); // the 656K model's leading "▁" (see ../shared/models/README.md)
        const b = await collect(ctx.generate(tokens, { temperature: 0, maxTokens: 30 }));
        expect(a).toEqual(b);
        await ctx.dispose();
        await model.dispose();
    });
});

describe("streaming, stop strings, abort and the state they leave", () => {
    let model: Model;
    let ctx: Context;
    let reference: { tokens: number[]; text: string };
    let prompt: Int32Array;
    beforeAll(async () => {
        model = await loadModel(MODELS.stories260K);
        ctx = await model.createContext({ contextSize: 512, threads: 1, sequences: 2 });
        prompt = await model.tokenize(PROMPTS[0]!);
        reference = await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 60 }));
        await ctx.kv.clear();
    });
    afterAll(async () => {
        await ctx.dispose();
        await model.dispose();
    });

    it("continuing with [] after a generate goes on exactly where greedy would", async () => {
        const a = await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 25 }));
        const b = await collect(ctx.generate([], { temperature: 0, maxTokens: 35 }));
        expect([...a.tokens, ...b.tokens]).toEqual(reference.tokens);
        expect((await ctx.kv.positions(0)).max).toBe(prompt.length + 60 - 1);
        await ctx.kv.clear();
    });

    it("a stop string spanning tokens ends generation, is not emitted, and the cache ends at the token that completed it", async () => {
        // A stop string that starts inside one token and ends inside a later one.
        const full = reference.text;
        const at = full.indexOf("named Lily");
        expect(at).toBeGreaterThan(0);
        const stop = full.slice(at + 2, at + 9); // "med Lil"
        const got = await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 60, stop: ["zzz", stop] }));
        expect(got.text).toBe(full.slice(0, at + 2));
        // Tokens kept in the cache: through the one whose text completes the stop string.
        const pieces = model.tokenPieces(reference.tokens).map((p) => new TextDecoder().decode(p));
        let len = 0, k = 0;
        while (len < at + 9) len += pieces[k++]!.length;
        expect((await ctx.kv.positions(0)).max).toBe(prompt.length + k - 1);
        // The next-token logits are those after token k-1: continuing gives greedy's next tokens.
        const more = await collect(ctx.generate([], { temperature: 0, maxTokens: 5 }));
        expect(more.tokens).toEqual(reference.tokens.slice(k, k + 5));
        await ctx.kv.clear();
    });

    it("text that only looks like the start of a stop string is released at the end", async () => {
        const got = await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 60, stop: reference.text.slice(-3) + "QQQ" }));
        expect(got.text).toBe(reference.text);
        await ctx.kv.clear();
    });

    it("breaking out of the loop trims the cache to the tokens taken and keeps their logits", async () => {
        const taken: number[] = [];
        for await (const s of ctx.generate(prompt, { temperature: 0, maxTokens: 60 })) {
            taken.push(s.token);
            if (taken.length === 7) break;
        }
        expect(taken).toEqual(reference.tokens.slice(0, 7));
        // Give the trim (queued on the context) a chance: any later call is ordered after it.
        expect((await ctx.kv.positions(0)).max).toBe(prompt.length + 7 - 1);
        const more = await collect(ctx.generate([], { temperature: 0, maxTokens: 5 }));
        expect(more.tokens).toEqual(reference.tokens.slice(7, 12));
        await ctx.kv.clear();
    });

    it("abort stops at once with ERR_ABORTED and leaves the context usable", async () => {
        const ac = new AbortController();
        let n = 0;
        const run = async () => {
            for await (const _ of ctx.generate(prompt, { temperature: 0, maxTokens: 400, stopOnEog: false, signal: ac.signal })) {
                if (++n === 3) ac.abort();
            }
        };
        await expect(run()).rejects.toMatchObject({ code: "ERR_ABORTED" });
        expect(n).toBe(3);
        const pos = await ctx.kv.positions(0);
        expect(pos.max).toBe(prompt.length + 3 - 1);
        const more = await collect(ctx.generate([], { temperature: 0, maxTokens: 4 }));
        expect(more.tokens).toEqual(reference.tokens.slice(3, 7));
        await ctx.kv.clear();
    });

    it("a consumer may await other calls on the same context inside its loop (no deadlock)", async () => {
        const taken: number[] = [];
        for await (const s of ctx.generate(prompt, { temperature: 0, maxTokens: 60, sequence: 0 })) {
            taken.push(s.token);
            await ctx.kv.positions(1); // queued behind the generation
        }
        expect(taken).toEqual(reference.tokens);
        await ctx.kv.clear();
    });

    it("an already-aborted signal throws ERR_ABORTED", () => {
        const ac = new AbortController();
        ac.abort();
        expect(() => ctx.generate(prompt, { signal: ac.signal })).toThrow(expect.objectContaining({ code: "ERR_ABORTED" }));
    });

    it("sequences are independent: generating on 1 leaves 0 alone", async () => {
        const a = await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 10, sequence: 0 }));
        const b = await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 10, sequence: 1 }));
        expect(a.tokens).toEqual(reference.tokens.slice(0, 10));
        expect(b.tokens).toEqual(a.tokens);
        const c = await collect(ctx.generate([], { temperature: 0, maxTokens: 5, sequence: 0 }));
        expect(c.tokens).toEqual(reference.tokens.slice(10, 15));
        await ctx.kv.clear();
    });

    it("same seed, same output; different seeds differ", async () => {
        const run = async (seed: number) => {
            await ctx.kv.clear();
            return (await collect(ctx.generate(prompt, { temperature: 1, topK: 0, topP: 1, minP: 0, seed, maxTokens: 40 }))).tokens;
        };
        const a = await run(1), b = await run(1), c = await run(2);
        expect(a).toEqual(b);
        expect(c).not.toEqual(a);
        await ctx.kv.clear();
    });

    it("maxTokens: 0 decodes the prompt and yields nothing", async () => {
        const got = await collect(ctx.generate(prompt, { maxTokens: 0 }));
        expect(got.tokens).toEqual([]);
        expect((await ctx.kv.positions(0)).max).toBe(prompt.length - 1);
        await ctx.kv.clear();
    });
});

describe("UTF-8: a character split across tokens comes out whole", () => {
    it("llama-2-tiny-random: a grammar forces 😀 as byte tokens; the text arrives whole, once", async () => {
        const model = await loadModel(MODELS.tinyRandom);
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        const prompt = await model.tokenize("x");
        const steps: { token: number; text: string }[] = [];
        for await (const s of ctx.generate(prompt, { grammar: 'root ::= "😀😀"', maxTokens: 12, temperature: 0 })) steps.push(s);
        const bytes = model.tokenPieces(steps.map((s) => s.token)).map((p) => p.length);
        // The model's vocabulary spells it with several tokens (byte fallback or partial pieces).
        expect(steps.length).toBeGreaterThan(2);
        expect(bytes.some((n) => n > 0 && n < 4)).toBe(true);
        expect(steps.map((s) => s.text).join("")).toBe("😀😀");
        for (const s of steps) expect(s.text === "" || s.text === "😀" || s.text === "😀😀").toBe(true);
        await ctx.dispose();
        await model.dispose();
    });
});

describe("bad input", () => {
    it("generate on a disposed context: ERR_DISPOSED", async () => {
        const model = await loadModel(MODELS.stories260K);
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        await ctx.dispose();
        expect(() => ctx.generate("hi")).toThrow(LlamaError);
        expect(() => ctx.generate("hi")).toThrow(expect.objectContaining({ code: "ERR_DISPOSED" }));
        await model.dispose();
    });

    it("disposing while a generation is queued: the iterator fails with ERR_DISPOSED", async () => {
        const model = await loadModel(MODELS.stories260K);
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        const it = ctx.generate("Once", { maxTokens: 5 });
        const d = ctx.dispose();
        await expect((async () => { for await (const _ of it) { /* */ } })()).rejects.toMatchObject({ code: "ERR_DISPOSED" });
        await d;
        await model.dispose();
    });

    // Issue 13 changed this: dispose used to wait for the whole generation; now it stops it
    // within a step and the iterator rejects.
    it("model.dispose() during a generation stops it; the iterator rejects with ERR_DISPOSED; nothing crashes", async () => {
        const model = await loadModel(MODELS.stories260K);
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        const tokens: number[] = [];
        let disposing: Promise<void> | null = null;
        const run = async () => {
            for await (const s of ctx.generate("Once upon a time", { temperature: 0, maxTokens: 200, stopOnEog: false })) {
                tokens.push(s.token);
                if (tokens.length === 2) disposing = model.dispose();
            }
        };
        await expect(run()).rejects.toMatchObject({ code: "ERR_DISPOSED" });
        expect(tokens.length).toBeLessThan(200);
        await disposing;
        expect(ctx.disposed).toBe(true);
    });

    it("options are checked before anything runs", async () => {
        const model = await loadModel(MODELS.stories260K);
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        expect(() => ctx.generate("x", { maxToken: 3 } as never)).toThrow(/did you mean "maxTokens"/);
        expect(() => ctx.generate("x", { stop: "" })).toThrow(expect.objectContaining({ code: "ERR_INVALID_OPTION" }));
        expect(() => ctx.generate("x", { sequence: 3 })).toThrow(expect.objectContaining({ code: "ERR_INVALID_SEQUENCE" }));
        expect(() => ctx.generate([99999])).toThrow(expect.objectContaining({ code: "ERR_INVALID_TOKEN" }));
        expect(() => ctx.generate("x", { temperature: -1 })).toThrow(expect.objectContaining({ code: "ERR_INVALID_OPTION" }));
        await expect(collect(ctx.generate([], { maxTokens: 2 }))).rejects.toMatchObject({ code: "ERR_NO_LOGITS" });
        await ctx.dispose();
        await model.dispose();
    });
});

describe("sequence semantics: prompt cache by default, continue: true to append", () => {
    let model: Model;
    let ctx: Context;
    let prompt: Int32Array;
    let reference: number[];
    beforeAll(async () => {
        model = await loadModel(MODELS.stories260K);
        ctx = await model.createContext({ contextSize: 512, threads: 1, sequences: 2 });
        prompt = await model.tokenize(PROMPTS[0]!);
        reference = (await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 40 }))).tokens;
        await ctx.kv.clear();
    });
    afterAll(async () => {
        await ctx.dispose();
        await model.dispose();
    });

    /** Runs a generation to its end; returns its tokens and the iterator's summary. */
    async function run(input: string | ArrayLike<number>, options: GenerateOptions) {
        const it = ctx.generate(input, options);
        const tokens: number[] = [];
        for (;;) {
            const r = await it.next();
            if (r.done) return { tokens, summary: r.value };
            tokens.push(r.value.token);
        }
    }

    it("a prompt that extends the cached tokens evaluates only its new tail and continues exactly", async () => {
        const first = await run(prompt, { temperature: 0, maxTokens: 20 });
        expect(first.tokens).toEqual(reference.slice(0, 20));
        expect(first.summary).toMatchObject({ promptTokens: prompt.length, reusedTokens: 0, evaluatedTokens: prompt.length, tokens: 20 });
        expect(Array.from(ctx.kv.tokens(0)!)).toEqual([...prompt, ...reference.slice(0, 20)]);
        // The whole cache as the prompt, plus 3 tokens the cache does not hold.
        const next = [...prompt, ...reference.slice(0, 23)];
        const second = await run(next, { temperature: 0, maxTokens: 10 });
        expect(second.summary).toMatchObject({ promptTokens: next.length, reusedTokens: prompt.length + 20, evaluatedTokens: 3 });
        expect(second.tokens).toEqual(reference.slice(23, 33));
        expect((await ctx.kv.positions(0)).max).toBe(next.length + 10 - 1);
        await ctx.kv.clear();
    });

    it("a prompt equal to the cache re-evaluates only its last token (for fresh logits)", async () => {
        await run(prompt, { temperature: 0, maxTokens: 10 });
        const again = [...prompt, ...reference.slice(0, 10)];
        const r = await run(again, { temperature: 0, maxTokens: 5 });
        expect(r.summary).toMatchObject({ reusedTokens: again.length - 1, evaluatedTokens: 1 });
        expect(r.tokens).toEqual(reference.slice(10, 15));
        await ctx.kv.clear();
    });

    it("a prompt that diverges from the cache drops the cached tail and matches a fresh run", async () => {
        const other = await model.tokenize("Once upon a time there was a big red ball");
        const shared = other.findIndex((t, i) => t !== prompt[i]);
        expect(shared).toBeGreaterThan(1);
        const fresh = await run(other, { temperature: 0, maxTokens: 20, sequence: 1 });
        await run(prompt, { temperature: 0, maxTokens: 30 });
        const reusedRun = await run(other, { temperature: 0, maxTokens: 20 });
        expect(reusedRun.summary).toMatchObject({ reusedTokens: shared, evaluatedTokens: other.length - shared });
        expect(reusedRun.tokens).toEqual(fresh.tokens);
        expect(Array.from(ctx.kv.tokens(0)!)).toEqual([...other, ...fresh.tokens]);
        expect((await ctx.kv.positions(0)).max).toBe(other.length + 20 - 1);
        // A string prompt is matched the same way (its BOS included).
        const s = await run("Once upon a time there was a big red ball", { temperature: 0, maxTokens: 20 });
        expect(s.summary).toMatchObject({ reusedTokens: other.length - 1, evaluatedTokens: 1 });
        expect(s.tokens).toEqual(fresh.tokens);
        await ctx.kv.clear();
    });

    it("continue: true appends the prompt to what the sequence holds", async () => {
        await run(prompt, { temperature: 0, maxTokens: 10 });
        const more = reference.slice(10, 13);
        const r = await run(more, { temperature: 0, maxTokens: 5, continue: true });
        expect(r.summary).toMatchObject({ promptTokens: 3, reusedTokens: 0, evaluatedTokens: 3 });
        expect(r.tokens).toEqual(reference.slice(13, 18));
        expect((await ctx.kv.positions(0)).max).toBe(prompt.length + 18 - 1);
        expect(Array.from(ctx.kv.tokens(0)!)).toEqual([...prompt, ...reference.slice(0, 18)]);
        await ctx.kv.clear();
    });

    it("the token list follows kv operations, and becomes unknown where it cannot be exact", async () => {
        await run(prompt, { temperature: 0, maxTokens: 10 });
        const all = [...prompt, ...reference.slice(0, 10)];
        await ctx.kv.remove(0, 8, -1);
        expect(Array.from(ctx.kv.tokens(0)!)).toEqual(all.slice(0, 8));
        await ctx.kv.copy(0, 1);
        expect(Array.from(ctx.kv.tokens(1)!)).toEqual(all.slice(0, 8));
        await ctx.kv.remove(1, 2, 4); // a hole
        expect(ctx.kv.tokens(1)).toBeNull();
        // Unknown: the next prompt starts the sequence over (nothing reused), and is still right.
        const r = await run(prompt, { temperature: 0, maxTokens: 5, sequence: 1 });
        expect(r.summary).toMatchObject({ reusedTokens: 0, evaluatedTokens: prompt.length });
        expect(r.tokens).toEqual(reference.slice(0, 5));
        expect((await ctx.kv.positions(1)).min).toBe(0);
        if (ctx.canShift) {
            await ctx.kv.shift(0, 0, -1, 2);
            expect(ctx.kv.tokens(0)).toBeNull();
        }
        await ctx.kv.keepOnly(1);
        expect(Array.from(ctx.kv.tokens(0)!)).toEqual([]);
        await ctx.kv.clear();
        expect(Array.from(ctx.kv.tokens(1)!)).toEqual([]);
    });

    it("forward appends to the token list", async () => {
        await ctx.forward({ sequence: 0, tokens: prompt });
        expect(Array.from(ctx.kv.tokens(0)!)).toEqual(Array.from(prompt));
        const r = await run(prompt, { temperature: 0, maxTokens: 5 });
        expect(r.summary).toMatchObject({ reusedTokens: prompt.length - 1, evaluatedTokens: 1 });
        expect(r.tokens).toEqual(reference.slice(0, 5));
        await ctx.kv.clear();
    });
});

describe("logProbs: the model's own log-probabilities, from the native loop", () => {
    // The reference: the same tokens through ctx.forward on a fresh context (the prompt in one
    // call, then each generated token alone, as the loop decodes them), float64 log-softmax here.
    async function reference(model: Model, prompt: ArrayLike<number>, tokens: number[]): Promise<Float64Array[]> {
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        const rows: Float64Array[] = [];
        let r = await ctx.forward({ sequence: 0, tokens: prompt });
        for (const t of tokens) {
            rows.push(logSoftmax64(r.logits(0)));
            r = await ctx.forward({ sequence: 0, tokens: [t] });
        }
        await ctx.dispose();
        return rows;
    }

    for (const [what, sampling] of [
        ["greedy", { temperature: 0 }],
        // Temperature, top-k and a penalty change what is drawn, never the reported distribution.
        ["sampled (temperature 1.5, topK 3, repeatPenalty 1.3)", { temperature: 1.5, topK: 3, repeatPenalty: 1.3, seed: 7 }],
    ] as const) {
        it(`${what}: logProb and top equal a float64 log-softmax of ctx.forward's logits`, async () => {
            const model = await loadModel(MODELS.stories260K);
            const ctx = await model.createContext({ contextSize: 256, threads: 1 });
            const prompt = await model.tokenize(PROMPTS[2]!);
            const steps: GenerateStep[] = [];
            for await (const s of ctx.generate(prompt, { ...sampling, maxTokens: 40, logProbs: 5 })) steps.push(s);
            expect(steps.length).toBe(40);
            const rows = await reference(model, prompt, steps.map((s) => s.token));
            let worst = 0;
            for (let i = 0; i < steps.length; i++) {
                const s = steps[i]!;
                const lp = rows[i]!;
                worst = Math.max(worst, Math.abs(s.logProb! - lp[s.token]!));
                const want = topK(lp, 5);
                expect(s.top!.map((c) => c.token), `step ${i}`).toEqual(want.map((c) => c.token));
                s.top!.forEach((c, k) => (worst = Math.max(worst, Math.abs(c.logProb - want[k]!.logProb))));
                for (let k = 1; k < 5; k++) expect(s.top![k]!.logProb).toBeLessThanOrEqual(s.top![k - 1]!.logProb);
                if (what === "greedy") expect(s.top![0]).toEqual({ token: s.token, logProb: s.logProb });
            }
            // Same logits (same decode shapes), float64 on both sides: only exp/log rounding differs.
            expect(worst).toBeLessThan(1e-9);
            await ctx.dispose();
            await model.dispose();
        });
    }

    it("logProbs: 0 gives logProb without top; without the option steps carry neither", async () => {
        const model = await loadModel(MODELS.stories260K);
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        const a: GenerateStep[] = [];
        for await (const s of ctx.generate(PROMPTS[0]!, { temperature: 0, maxTokens: 5, logProbs: 0 })) a.push(s);
        expect(a.every((s) => typeof s.logProb === "number" && s.logProb <= 0 && s.top === undefined)).toBe(true);
        for await (const s of ctx.generate(PROMPTS[0]!, { temperature: 0, maxTokens: 5 })) expect("logProb" in s || "top" in s).toBe(false);
        expect(() => ctx.generate("x", { logProbs: -2 })).toThrow(expect.objectContaining({ code: "ERR_INVALID_OPTION" }));
        await ctx.dispose();
        await model.dispose();
    });

    it("with a stop string, the tokens released keep their own log-probabilities", async () => {
        const model = await loadModel(MODELS.stories260K);
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        const free: GenerateStep[] = [];
        for await (const s of ctx.generate(PROMPTS[1]!, { temperature: 0, maxTokens: 30, logProbs: 2 })) free.push(s);
        const text = free.map((s) => s.text).join("");
        const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 3);
        await ctx.kv.clear(); // the same decode shapes as the first run (no prompt cache)
        const cut: GenerateStep[] = [];
        for await (const s of ctx.generate(PROMPTS[1]!, { temperature: 0, maxTokens: 30, logProbs: 2, stop })) cut.push(s);
        expect(cut.length).toBeGreaterThan(0);
        expect(cut.length).toBeLessThan(free.length);
        cut.forEach((s, i) => {
            expect(s.token).toBe(free[i]!.token);
            expect(s.logProb).toBe(free[i]!.logProb);
            expect(s.top).toEqual(free[i]!.top);
        });
        await ctx.dispose();
        await model.dispose();
    });
});
