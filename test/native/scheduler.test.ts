// The per-context scheduler: concurrent generations advance together (one llama_decode per
// step), each equal to the same generation run alone; a consumer that stops reading pauses
// only its own sequence; break, abort and dispose end work within a step; a second
// generation on a busy sequence gets ERR_BUSY; other calls run between steps.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Context, type GenerateOptions, type Model } from "../../src/index.js";
import { MODELS } from "../helpers/models.js";

const PROMPTS = ["Once upon a time", "The little dog", "Tom and his friend went to the", "One day, a girl named Sue"];

async function collect(it: AsyncIterable<{ token: number; text: string }>, onToken?: () => void) {
    const tokens: number[] = [];
    let text = "";
    for await (const s of it) {
        tokens.push(s.token);
        text += s.text;
        onToken?.();
    }
    return { tokens, text };
}

/**
 * Checks that `got` equals `want`, or that where they first differ the model's two
 * candidates are a near-tie (batch composition changes the last bits of the logits).
 */
async function expectSameOrNearTie(ctx: Context, seq: number, prompt: ArrayLike<number>, want: number[], got: number[]) {
    const i = want.findIndex((t, k) => got[k] !== t);
    if (i < 0 && got.length === want.length) return;
    expect(i, `streams differ in length only (${got.length} vs ${want.length})`).toBeGreaterThanOrEqual(0);
    await ctx.kv.remove(seq);
    const out = await ctx.forward({ sequence: seq, tokens: [...Array.from(prompt), ...want.slice(0, i)] });
    const l = out.logits(seq);
    const gap = Math.abs(l[want[i]!]! - l[got[i]!]!);
    expect(gap, `streams diverge at token ${i} (${want[i]} vs ${got[i]}) with a logit gap of ${gap}`).toBeLessThan(1e-3);
    await ctx.kv.remove(seq);
}

describe("concurrent generations", () => {
    let model: Model;
    let ctx: Context;
    let prompts: Int32Array[];
    const alone: number[][] = [];
    const N = 100;
    beforeAll(async () => {
        model = await loadModel(MODELS.stories260K);
        ctx = await model.createContext({ contextSize: 1024, threads: 1, sequences: 4, attention: "ggml" });
        prompts = await Promise.all(PROMPTS.map((p) => model.tokenize(p)));
        for (const p of prompts) {
            alone.push((await collect(ctx.generate(p, { temperature: 0, maxTokens: N, stopOnEog: false }))).tokens);
            await ctx.kv.clear();
        }
    });
    afterAll(async () => {
        await ctx.dispose();
        await model.dispose();
    });

    it("four greedy streams at once give the tokens each gives alone, and share decode steps", async () => {
        const before = ctx.schedulerStats()!;
        const got = await Promise.all(prompts.map((p, s) => collect(ctx.generate(p, { temperature: 0, maxTokens: N, stopOnEog: false, sequence: s }))));
        const after = ctx.schedulerStats()!;
        for (let s = 0; s < 4; s++) await expectSameOrNearTie(ctx, s, prompts[s]!, alone[s]!, got[s]!.tokens);
        // 4 × N generated tokens plus the prompts, in about N steps (run one after another
        // they would take 4 × N): the streams share each llama_decode.
        const steps = after.steps - before.steps;
        const tokens = after.decodedTokens - before.decodedTokens;
        expect(tokens).toBe(4 * N + prompts.reduce((n, p) => n + p.length, 0));
        expect(steps).toBeLessThan(1.3 * N);
        expect(tokens / steps).toBeGreaterThan(3);
        await ctx.kv.clear();
    });

    it("both streams progress before either ends (interleaving)", async () => {
        const order: number[] = [];
        await Promise.all([0, 1].map((s) => collect(ctx.generate(prompts[s]!, { temperature: 0, maxTokens: N, stopOnEog: false, sequence: s }), () => order.push(s))));
        const lastA = order.lastIndexOf(0), lastB = order.lastIndexOf(1);
        expect(order.indexOf(1)).toBeLessThan(lastA);
        expect(order.indexOf(0)).toBeLessThan(lastB);
        // Not one after the other: each stream's tokens are spread across the other's.
        const firstEnd = Math.min(lastA, lastB);
        const countBefore = (s: number) => order.slice(0, firstEnd).filter((x) => x === s).length;
        expect(countBefore(0)).toBeGreaterThan(N / 2);
        expect(countBefore(1)).toBeGreaterThan(N / 2);
        await ctx.kv.clear();
    });

    it("a stream nobody reads pauses at its buffer while another keeps going; reading resumes it, unchanged", async () => {
        const buffer = 8;
        const unread = ctx.generate(prompts[0]!, { temperature: 0, maxTokens: N, stopOnEog: false, sequence: 0, bufferTokens: buffer });
        const first = await unread.next(); // starts it, then nobody reads
        const other = await collect(ctx.generate(prompts[1]!, { temperature: 0, maxTokens: N, stopOnEog: false, sequence: 1 }));
        expect(other.tokens.length).toBe(N);
        // Sequence 0 holds its prompt and at most one token taken plus a buffer's worth.
        const held = (await ctx.kv.positions(0)).max + 1 - prompts[0]!.length;
        expect(held).toBeLessThanOrEqual(1 + buffer + 1);
        expect(held).toBeGreaterThanOrEqual(1);
        const rest = await collect({ [Symbol.asyncIterator]: () => unread });
        await expectSameOrNearTie(ctx, 2, prompts[0]!, alone[0]!, [first.value!.token, ...rest.tokens] as number[]);
        await expectSameOrNearTie(ctx, 2, prompts[1]!, alone[1]!, other.tokens);
        await ctx.kv.clear();
    });

    it("a prompt arriving mid-stream is evaluated in chunks while the running stream goes on", async () => {
        const c = await model.createContext({ contextSize: 2048, threads: 1, sequences: 2, prefillChunk: 32, attention: "ggml" });
        const long = Array.from({ length: 640 }, (_, i) => prompts[2]![1 + (i % (prompts[2]!.length - 1))]!);
        long.unshift(model.info.bos);
        let aCount = 0;
        let aAtSubmit = -1, aAtFirstB = -1;
        const a = collect(c.generate(prompts[0]!, { temperature: 0, maxTokens: 400, stopOnEog: false, sequence: 0 }), () => {
            aCount++;
            if (aCount === 20) {
                aAtSubmit = aCount;
                void (async () => {
                    for await (const _ of c.generate(long, { temperature: 0, maxTokens: 2, stopOnEog: false, sequence: 1 })) {
                        if (aAtFirstB < 0) aAtFirstB = aCount;
                    }
                })();
            }
        });
        await a;
        // 640 prompt tokens in chunks of 32: about 20 steps, each also holding a token of stream 0.
        expect(aAtFirstB - aAtSubmit).toBeGreaterThanOrEqual(10);
        await c.dispose();
    });

    it("prompts that arrive together are evaluated one chunk a step for each prompt still waiting", async () => {
        // 4 prompts of 301 tokens, chunk 32, nothing generating: the first step holds 4 chunks
        // (128 tokens), so the first prompt is done in its third step (one chunk a step, as
        // for a prompt alone: ceil(301 / 32) = 10 steps).
        const c = await model.createContext({ contextSize: 4096, threads: 1, sequences: 4, batchSize: 512, prefillChunk: 32, attention: "ggml" });
        try {
            const long = (s: number) => [model.info.bos, ...Array.from({ length: 300 }, (_, i) => prompts[s]![1 + ((i * 7) % (prompts[s]!.length - 1))]!)];
            const s0 = c.schedulerStats()?.steps ?? 0; // null until the first generation starts the loop
            let firstAt = -1;
            await Promise.all([0, 1, 2, 3].map((s) => collect(c.generate(long(s), { temperature: 0, maxTokens: 4, stopOnEog: false, sequence: s }), () => {
                if (firstAt < 0) firstAt = c.schedulerStats()!.steps - s0;
            })));
            expect(firstAt).toBeGreaterThanOrEqual(3);
            expect(firstAt).toBeLessThanOrEqual(4); // a token may reach JS a step after its own
        } finally {
            await c.dispose();
        }
    });

    it("while streams generate, a long prompt's steps are bounded by time, not by the chunk; alone it takes whole chunks", async () => {
        // Chunk 512: without the time bound each step would hold 512 prompt tokens beside the
        // 4 streams' tokens. On stories260K at 1 thread, 512 prompt tokens at up to 2K depth
        // cost tens of decode-only steps; the budget (about one decode-only step's worth of
        // prompt tokens, at least 16) keeps every mixed step far below the chunk.
        const chunk = 512;
        const c = await model.createContext({ contextSize: 4096, threads: 1, sequences: 5, batchSize: chunk, prefillChunk: chunk });
        try {
            const long = Array.from({ length: 2000 }, (_, i) => prompts[2]![1 + (i % (prompts[2]!.length - 1))]!);
            long.unshift(model.info.bos);
            let intruder: Promise<{ tokens: number[] }> | null = null;
            let before: ReturnType<Context["schedulerStats"]> = null;
            const streams = await Promise.all(prompts.map((p, s) => collect(c.generate(p, { temperature: 0, maxTokens: 300, stopOnEog: false, sequence: s }), () => {
                if (s === 0 && intruder === null && c.schedulerStats()!.steps > 30) {
                    before = c.schedulerStats();
                    intruder = collect(c.generate(long, { temperature: 0, maxTokens: 1, stopOnEog: false, sequence: 4 }));
                }
            })));
            expect(intruder).not.toBeNull();
            const mid = await intruder!;
            const after = c.schedulerStats()!;
            for (const s of streams) expect(s.tokens.length).toBe(300);
            const mixed = after.mixedSteps - before!.mixedSteps;
            const midTokens = after.mixedPromptTokens - before!.mixedPromptTokens;
            console.log(`2001-token prompt beside 4 streams: ${mixed} mixed steps, ${midTokens} prompt tokens in them, at most ${after.mixedPromptTokensMax} in one (chunk ${chunk}), last budget ${after.prefillBudget}`);
            expect(after.mixedPromptTokensMax).toBeLessThan(chunk / 4);
            expect(after.mixedPromptTokensMax).toBeGreaterThanOrEqual(16); // the floor: the prompt progressed
            expect(after.prefillBudget).toBeGreaterThanOrEqual(16);
            expect(mixed).toBeGreaterThan(Math.ceil(long.length / chunk) * 4);

            // Alone, the same prompt goes in whole chunks: ceil(2001 / 512) = 4 prompt steps,
            // then one step decoding the sampled token.
            await c.kv.clear();
            const s0 = c.schedulerStats()!;
            const alone = await collect(c.generate(long, { temperature: 0, maxTokens: 1, stopOnEog: false, sequence: 4 }));
            const s1 = c.schedulerStats()!;
            expect(s1.steps - s0.steps).toBeLessThanOrEqual(Math.ceil(long.length / chunk) + 1);
            expect(s1.mixedSteps).toBe(s0.mixedSteps);
            // Split finely or not, the prompt gives the same next token (or a near-tie).
            await expectSameOrNearTie(c, 4, long, alone.tokens, mid.tokens);
        } finally {
            await c.dispose();
        }
    });
});

describe("sequence ownership, cancellation and dispose", () => {
    let model: Model;
    let ctx: Context;
    let prompt: Int32Array;
    beforeAll(async () => {
        model = await loadModel(MODELS.stories260K);
        ctx = await model.createContext({ contextSize: 4096, threads: 1, sequences: 2 });
        prompt = await model.tokenize(PROMPTS[0]!);
    });
    afterAll(async () => {
        await ctx.dispose();
        await model.dispose();
    });
    const long: GenerateOptions = { temperature: 0, maxTokens: 3000, stopOnEog: false };

    it("a second generation on a generating sequence gets ERR_BUSY; the first goes on", async () => {
        const a = ctx.generate(prompt, { ...long, maxTokens: 50 });
        await a.next();
        const b = ctx.generate(prompt, { maxTokens: 5 });
        await expect(b.next()).rejects.toMatchObject({ code: "ERR_BUSY" });
        await expect(ctx.forward({ sequence: 0, tokens: [1] })).rejects.toMatchObject({ code: "ERR_BUSY" });
        await expect(ctx.kv.remove(0)).rejects.toMatchObject({ code: "ERR_BUSY" });
        await expect(ctx.kv.clear()).rejects.toMatchObject({ code: "ERR_BUSY" });
        await expect(ctx.sample(0)).rejects.toMatchObject({ code: "ERR_BUSY" });
        const rest = await collect({ [Symbol.asyncIterator]: () => a });
        expect(rest.tokens.length).toBe(49);
        // Once it ended, the sequence is free again.
        expect((await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 3 }))).tokens.length).toBe(3);
        await ctx.kv.clear();
    });

    it("other calls run between steps, without waiting for the generation", async () => {
        let n = 0;
        let during = -1;
        let elapsed = Infinity;
        for await (const _ of ctx.generate(prompt, { ...long, maxTokens: 1500 })) {
            if (++n === 10) {
                const t0 = performance.now();
                await ctx.kv.positions(1);
                await ctx.forward({ sequence: 1, tokens: prompt });
                elapsed = performance.now() - t0;
                during = n;
            }
        }
        expect(during).toBe(10);
        expect(elapsed).toBeLessThan(200); // the whole generation takes seconds here
        await ctx.kv.clear();
    });

    it("break stops the sequence at once and keeps exactly the tokens taken", async () => {
        const reference = (await collect(ctx.generate(prompt, { temperature: 0, maxTokens: 20 }))).tokens;
        const taken: number[] = [];
        const t0 = performance.now();
        for await (const s of ctx.generate(prompt, { ...long })) {
            taken.push(s.token);
            if (taken.length === 7) break;
        }
        expect(performance.now() - t0).toBeLessThan(1000); // 3000 tokens would take seconds
        expect(taken).toEqual(reference.slice(0, 7));
        expect((await ctx.kv.positions(0)).max).toBe(prompt.length + 7 - 1);
        const more = await collect(ctx.generate([], { temperature: 0, maxTokens: 5 }));
        expect(more.tokens).toEqual(reference.slice(7, 12));
        await ctx.kv.clear();
    });

    it("ctx.dispose() ends a long generation within moments; its iterator rejects with ERR_DISPOSED", async () => {
        const c = await model.createContext({ contextSize: 4096, threads: 1 });
        let n = 0;
        let disposed = 0;
        const run = (async () => {
            for await (const _ of c.generate(prompt, long)) {
                if (++n === 20) {
                    const t0 = performance.now();
                    void c.dispose().then(() => (disposed = performance.now() - t0));
                }
            }
        })();
        await expect(run).rejects.toMatchObject({ code: "ERR_DISPOSED" });
        await c.dispose();
        expect(n).toBeLessThan(200);
        expect(disposed).toBeGreaterThan(0);
        expect(disposed).toBeLessThan(500);
    });

    it("model.dispose() ends generations on every context and rejects their iterators", async () => {
        const m = await loadModel(MODELS.stories260K);
        const c = await m.createContext({ contextSize: 4096, threads: 1, sequences: 2 });
        const runs = [0, 1].map((s) => collect(c.generate(prompt, { ...long, sequence: s })).then(() => null, (err: unknown) => err));
        await new Promise((r) => setTimeout(r, 50));
        const t0 = performance.now();
        await m.dispose();
        expect(performance.now() - t0).toBeLessThan(500);
        for (const r of runs) expect(await r).toMatchObject({ code: "ERR_DISPOSED" });
        expect(c.disposed).toBe(true);
    });

    it("stop strings are matched inside the loop: decoding ends at the completing token, with no overshoot to trim", async () => {
        // The reference runs with the same batch composition as the run under test (two streams
        // in every step up to the stop), so its tokens are the same bits, not just near ties.
        const [reference] = await Promise.all([0, 1].map((s) => collect(ctx.generate(prompt, { temperature: 0, maxTokens: 60, stopOnEog: false, sequence: s }))));
        const alone = reference!;
        await ctx.kv.clear();
        const stop = alone.text.slice(40, 47); // starts and ends inside tokens, most likely
        const at = alone.text.indexOf(stop);
        const pieces = model.tokenPieces(alone.tokens).map((p) => new TextDecoder().decode(p));
        let len = 0, k = 0;
        while (len < at + stop.length) len += pieces[k++]!.length; // tokens through the one completing the stop
        await ctx.kv.clear();
        const before = ctx.schedulerStats()!;
        const [stopped, other] = await Promise.all([
            collect(ctx.generate(prompt, { temperature: 0, maxTokens: 60, stopOnEog: false, stop, sequence: 0 })),
            collect(ctx.generate(prompt, { temperature: 0, maxTokens: 60, stopOnEog: false, sequence: 1 })),
        ]);
        const after = ctx.schedulerStats()!;
        expect(stopped.text).toBe(alone.text.slice(0, at));
        expect(other.tokens.length).toBe(60); // the other stream is not affected (its later steps hold one token: near ties allowed)
        await expectSameOrNearTie(ctx, 1, prompt, alone.tokens, other.tokens);
        // Every decode: both prompts, k tokens of the stopped stream, 60 of the other. Nothing more.
        expect(after.decodedTokens - before.decodedTokens).toBe(2 * prompt.length + k + 60);
        expect((await ctx.kv.positions(0)).max).toBe(prompt.length + k - 1);
        expect(Array.from(ctx.kv.tokens(0)!)).toEqual([...prompt, ...alone.tokens.slice(0, k)]);
        await ctx.kv.clear();
    });

    it("contexts disposed mid-generation leave nothing behind (40 cycles, resident memory flat)", async () => {
        const cycle = async () => {
            const c = await model.createContext({ contextSize: 1024, threads: 1, sequences: 2 });
            const runs = [0, 1].map((s) => collect(c.generate(prompt, { ...long, maxTokens: 400, sequence: s })).then(() => null, (err: unknown) => err));
            await new Promise((r) => setTimeout(r, 5));
            await c.dispose();
            for (const r of runs) {
                const err = await r;
                if (err !== null) expect(err).toMatchObject({ code: "ERR_DISPOSED" });
            }
        };
        for (let i = 0; i < 5; i++) await cycle();
        const rss0 = process.memoryUsage().rss;
        for (let i = 0; i < 40; i++) await cycle();
        const growth = (process.memoryUsage().rss - rss0) / 2 ** 20;
        console.log(`resident growth over 40 create/generate/dispose cycles: ${growth.toFixed(1)} MiB`);
        expect(growth).toBeLessThan(40); // a leaked context (compute buffers, KV) per cycle would be far more
    });

    it("abort ends only its own stream", async () => {
        const ac = new AbortController();
        let n = 0;
        const a = (async () => {
            for await (const _ of ctx.generate(prompt, { ...long, sequence: 0, signal: ac.signal })) if (++n === 5) ac.abort();
        })();
        const b = collect(ctx.generate(prompt, { temperature: 0, maxTokens: 60, stopOnEog: false, sequence: 1 }));
        await expect(a).rejects.toMatchObject({ code: "ERR_ABORTED" });
        expect((await b).tokens.length).toBe(60);
        expect((await ctx.kv.positions(0)).max).toBe(prompt.length + 5 - 1);
        await ctx.kv.clear();
    });
});
