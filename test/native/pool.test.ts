// model.createPool(): greedy text on a slot equals a fresh context's (with and without a
// reused prefix), a prompt goes to the slot that caches its prefix, the queue is bounded
// (ERR_BUSY past it) and abortable, idle slots save and restore, and dispose rejects waiters.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, LlamaError, type Model, type Pool } from "../../src/index.js";
import { MODELS } from "../helpers/models.js";

const THREADS = 1;
let model: Model;

async function collect(it: AsyncGenerator<{ token: number; text: string }, unknown>) {
    const tokens: number[] = [];
    let text = "";
    let r = await it.next();
    while (!r.done) {
        tokens.push(r.value.token);
        text += r.value.text;
        r = await it.next();
    }
    return { tokens, text, summary: r.value as { slot: number; cachedTokens: number; promptTokens: number; tokens: number; reason: string } };
}

/** Greedy tokens of `prompt` on a fresh one-sequence context (the reference). */
async function alone(prompt: string, maxTokens: number): Promise<number[]> {
    const ctx = await model.createContext({ contextSize: 512, threads: THREADS });
    try {
        const got: number[] = [];
        for await (const s of ctx.generate(prompt, { temperature: 0, maxTokens })) got.push(s.token);
        return got;
    } finally {
        await ctx.dispose();
    }
}

async function expectCode(p: Promise<unknown>, code: string) {
    const err = await p.then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(LlamaError);
    expect((err as LlamaError).code).toBe(code);
}

beforeAll(async () => {
    model = await loadModel(MODELS.stories260K);
});
afterAll(async () => {
    await model?.dispose();
});

describe("createPool options", () => {
    it("refuses bad values, naming them", async () => {
        await expect(model.createPool({ slots: 0 })).rejects.toThrow(/slots/);
        await expect(model.createPool({ contextSize: 1.5 })).rejects.toThrow(/contextSize/);
        await expect(model.createPool({ queueLimit: -1 })).rejects.toThrow(/queueLimit/);
        await expect(model.createPool({ sequences: 2 } as never)).rejects.toThrow(/sequences/);
        await expect(model.createPool({ treads: 2 } as never)).rejects.toThrow(/did you mean "threads"/);
    });
});

describe("generation on slots", () => {
    let pool: Pool;
    beforeAll(async () => {
        pool = await model.createPool({ slots: 3, contextSize: 256, threads: THREADS });
    });
    afterAll(async () => {
        await pool?.dispose();
    });

    it("greedy text equals a fresh context's, and a returning prompt reuses its slot's prefix with the same output", async () => {
        const a = "Once upon a time, there was a little girl named Lily.";
        const b = "The big dog ran to the park";
        const refA = await alone(a, 40);
        const refB = await alone(b, 40);
        const first = await collect(pool.generate(a, { temperature: 0, maxTokens: 40 }));
        expect(first.tokens).toEqual(refA);
        expect(first.summary.cachedTokens).toBe(0);
        const other = await collect(pool.generate(b, { temperature: 0, maxTokens: 40 }));
        expect(other.tokens).toEqual(refB);
        expect(other.summary.slot).not.toBe(first.summary.slot);

        // The same prompt again: its slot holds it (and 40 tokens after it), so all of it but
        // the last token (evaluated again for fresh logits) comes from the cache.
        const again = await collect(pool.generate(a, { temperature: 0, maxTokens: 40 }));
        expect(again.summary.slot).toBe(first.summary.slot);
        expect(again.summary.cachedTokens).toBe(again.summary.promptTokens - 1);
        expect(again.tokens).toEqual(refA);

        // A longer prompt that starts with A's prompt and output: the whole prefix is reused.
        const longer = a + first.text + " She";
        const ext = await collect(pool.generate(longer, { temperature: 0, maxTokens: 20 }));
        expect(ext.summary.slot).toBe(first.summary.slot);
        expect(ext.summary.cachedTokens).toBeGreaterThan(first.summary.promptTokens);
        expect(ext.tokens).toEqual(await alone(longer, 20));
        expect(pool.stats().cachedTokens).toBeGreaterThan(0);
    });

    it("concurrent greedy streams give each one's text alone", async () => {
        const prompts = ["Tom had a red ball", "One day, a cat", "The sun was hot and"];
        const refs = await Promise.all(prompts.map((p) => alone(p, 30)));
        const got = await Promise.all(prompts.map((p) => collect(pool.generate(p, { temperature: 0, maxTokens: 30 }))));
        expect(new Set(got.map((g) => g.summary.slot)).size).toBe(3);
        got.forEach((g, i) => expect(g.tokens).toEqual(refs[i]));
    });

    it("caps maxTokens to what fits the slot, and refuses a prompt that does not fit", async () => {
        const long = Array.from({ length: 250 }, () => 300);
        const r = await collect(pool.generate([1, ...long], { temperature: 0, maxTokens: 100, stopOnEog: false }));
        expect(r.tokens.length).toBe(256 - 251);
        expect(r.summary.reason).toBe("maxTokens");
        await expectCode(collect(pool.generate([1, ...long, ...long], { maxTokens: 1 })), "ERR_CONTEXT_FULL");
        expect(() => pool.generate("x", { sequence: 1 } as never)).toThrow(/sequence/);
        expect(() => pool.generate([], {})).toThrow(/at least one token/);
        expect(() => pool.generate([model.info.vocabSize], {})).toThrow(LlamaError);
    });

    it("a consumer that leaves early frees its slot with the taken tokens cached", async () => {
        const p = "Lily wanted to play with her friend";
        const it = pool.generate(p, { temperature: 0, maxTokens: 100 });
        const taken: number[] = [];
        for await (const s of it) {
            taken.push(s.token);
            expect(pool.busy).toBe(true);
            if (taken.length === 5) break;
        }
        await new Promise((r) => setTimeout(r, 50));
        expect(pool.stats().slots.every((s) => !s.busy)).toBe(true);
        expect(pool.busy).toBe(false);
        const ref = await alone(p, 30);
        expect(taken).toEqual(ref.slice(0, 5));
        const again = await collect(pool.generate(p, { temperature: 0, maxTokens: 30 }));
        expect(again.tokens).toEqual(ref);
    });
});

/** Polls `cond` until it holds (the pool's queue is filled by requests that tokenize first). */
async function until(cond: () => boolean, ms = 10_000) {
    const t0 = Date.now();
    while (!cond()) {
        if (Date.now() - t0 > ms) throw new Error("condition not reached");
        await new Promise((r) => setTimeout(r, 1));
    }
}

describe("a burst of requests", () => {
    it("requests made together start in one step, all prompts in one batch (twice: with and without a running scheduler)", async () => {
        // 6 prompts of 20 tokens: 120 prompt tokens, more than the pool's 64-token chunk, each
        // within it. Nothing generates yet, so they all go into the first step, and every
        // later step is a decode of the 6 streams (the last one decodes each stream's last
        // token into its cache): maxTokens + 1 steps, none mixing prompt tokens with
        // generated ones. (Before, each request's submission let a step start, and they
        // joined one or two per step.)
        const pool = await model.createPool({ slots: 6, contextSize: 128, threads: THREADS });
        try {
            const maxTokens = 8;
            for (let round = 0; round < 2; round++) {
                const before = pool.context.schedulerStats() ?? { steps: 0, mixedSteps: 0 };
                const prompts = Array.from({ length: 6 }, (_, s) => Int32Array.from({ length: 20 }, (_, i) => 30 + ((round * 97 + s * 31 + i * 7) % 400)));
                const got = await Promise.all(prompts.map((p) => collect(pool.generate(p, { temperature: 0, maxTokens, stopOnEog: false }))));
                got.forEach((g) => expect(g.tokens).toHaveLength(maxTokens));
                const after = pool.context.schedulerStats()!;
                expect({ steps: after.steps - before.steps, mixedSteps: after.mixedSteps - before.mixedSteps }).toEqual({ steps: maxTokens + 1, mixedSteps: 0 });
            }
        } finally {
            await pool.dispose();
        }
    });
});

describe("the queue", () => {
    it("waits past the slot count, refuses past queueLimit with ERR_BUSY, and an aborted waiter leaves it", async () => {
        const pool = await model.createPool({ slots: 1, queueLimit: 2, contextSize: 256, threads: THREADS });
        try {
            // The slot stays taken while its consumer has not finished reading.
            const running = pool.generate("Once upon a time", { temperature: 0, maxTokens: 60, stopOnEog: false });
            const head = await running.next();
            expect(head.done).toBe(false);
            const ac = new AbortController();
            const waiting1 = collect(pool.generate("The dog", { temperature: 0, maxTokens: 5, signal: ac.signal }));
            const waiting2 = collect(pool.generate("The cat", { temperature: 0, maxTokens: 5 }));
            await until(() => pool.stats().queued === 2);
            await expectCode(collect(pool.generate("The bird", { maxTokens: 5 })), "ERR_BUSY");
            ac.abort();
            await expectCode(waiting1, "ERR_ABORTED");
            expect(pool.stats().queued).toBe(1);
            expect((await collect(running)).tokens.length).toBe(59);
            expect((await waiting2).tokens).toEqual(await alone("The cat", 5));
            expect(pool.stats().rejected).toBe(1);
        } finally {
            await pool.dispose();
        }
    });

    it("dispose rejects waiting requests with ERR_DISPOSED", async () => {
        const pool = await model.createPool({ slots: 1, contextSize: 256, threads: THREADS });
        const running = pool.generate("Once upon a time", { temperature: 0, maxTokens: 30 });
        await running.next();
        const waiting = collect(pool.generate("The dog", { maxTokens: 5 }));
        await until(() => pool.stats().queued === 1);
        const disposed = pool.dispose();
        await expectCode(waiting, "ERR_DISPOSED");
        await collect(running).catch(() => {});
        await disposed;
        expect(() => pool.generate("x")).toThrow(/disposed/);
    });
});

describe("slot state", () => {
    it("saves an idle slot and restores it into another, which then serves the prompt from cache", async () => {
        const pool = await model.createPool({ slots: 2, contextSize: 256, threads: THREADS });
        try {
            const p = "Once upon a time, there was a big tree in the park.";
            const first = await collect(pool.generate(p, { temperature: 0, maxTokens: 20 }));
            const saved = (await pool.saveSlot(first.summary.slot))!;
            expect(saved.length).toBeGreaterThan(100);
            await pool.eraseSlot(first.summary.slot);
            expect(pool.stats().slots[first.summary.slot]!.cachedTokens).toBe(0);
            const target = 1 - first.summary.slot;
            await pool.restoreSlot(target, saved);
            expect(pool.stats().slots[target]!.cachedTokens).toBe(first.summary.promptTokens + 20);
            const again = await collect(pool.generate(p, { temperature: 0, maxTokens: 20 }));
            expect(again.summary.slot).toBe(target);
            expect(again.summary.cachedTokens).toBe(again.summary.promptTokens - 1);
            expect(again.tokens).toEqual(first.tokens);
            await expectCode(pool.restoreSlot(0, Buffer.from("not a slot")), "ERR_STATE_MISMATCH");
            await expectCode(pool.saveSlot(5), "ERR_INVALID_OPTION");
        } finally {
            await pool.dispose();
        }
    });
});
