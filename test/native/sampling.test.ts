// Sampling: each stage does what it says, checked on known distributions (synthetic logits
// through the same native chain) and on real logits; reproducibility by seed; log-probs
// against an independent log-softmax; grammars; and bad input.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { contextSampler, resolveSampling } from "../../src/sampling.js";
import { createSampler, loadModel, resetSampling, type Model, type SamplingOptions } from "../../src/index.js";
import { MODELS } from "../helpers/models.js";

let model: Model;
let V: number;
beforeAll(async () => {
    model = await loadModel(MODELS.stories260K);
    V = model.info.vocabSize;
});
afterAll(async () => {
    await model.dispose();
});

/** A fixed random permutation, so that probability rank is unrelated to token id. */
function permutation(n: number, seed: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    let s = seed;
    for (let i = n - 1; i > 0; i--) {
        s = (s * 1103515245 + 12345) >>> 0;
        const j = s % (i + 1);
        [p[i], p[j]] = [p[j]!, p[i]!];
    }
    return p;
}

/** Logits whose softmax is p_rank ∝ exp(-rank / scale), ranks spread over the vocabulary. */
function knownLogits(scale = 4, seed = 7): { logits: Float32Array; probs: Float64Array; byRank: number[] } {
    const byRank = permutation(V, seed);
    const logits = new Float32Array(V);
    byRank.forEach((tok, rank) => (logits[tok] = -rank / scale));
    return { logits, probs: softmax(logits), byRank };
}

function softmax(l: Float32Array): Float64Array {
    let max = -Infinity;
    for (const v of l) max = Math.max(max, v);
    const out = new Float64Array(l.length);
    let sum = 0;
    l.forEach((v, i) => (sum += out[i] = Math.exp(v - max)));
    return out.map((v) => v / sum);
}

function logSoftmax(l: Float32Array): Float64Array {
    return softmax(l).map(Math.log);
}

async function draw(options: SamplingOptions, logits: Float32Array, n: number): Promise<number[]> {
    const s = await createSampler(model, options);
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push((await s.sample(logits)).token);
    await s.dispose();
    return out;
}

const counts = (xs: number[]) => xs.reduce((m, x) => m.set(x, (m.get(x) ?? 0) + 1), new Map<number, number>());
const PLAIN = { topK: 0, topP: 1, minP: 0, temperature: 1 } as const;

describe("stages on a known distribution", () => {
    it("temperature 0 always picks the argmax", async () => {
        const s = await createSampler(model, { temperature: 0 });
        for (let t = 0; t < 100; t++) {
            const l = new Float32Array(V).map(() => Math.random() * 10);
            let arg = 0;
            for (let i = 1; i < V; i++) if (l[i]! > l[arg]!) arg = i;
            expect((await s.sample(l)).token).toBe(arg);
        }
        await s.dispose();
    });

    it("no truncation, temperature 1: frequencies follow the softmax", async () => {
        const { logits, probs } = knownLogits(6);
        const n = 4000;
        const c = counts(await draw({ ...PLAIN, seed: 1 }, logits, n));
        let tv = 0;
        for (let t = 0; t < V; t++) tv += Math.abs((c.get(t) ?? 0) / n - probs[t]!);
        expect(tv / 2).toBeLessThan(0.06); // total variation; ~0.03 expected from noise
    });

    it("temperature 2 flattens: frequencies follow softmax(logits / 2)", async () => {
        const { logits } = knownLogits(2);
        const probs = softmax(logits.map((v) => v / 2));
        const n = 4000;
        const c = counts(await draw({ ...PLAIN, temperature: 2, seed: 2 }, logits, n));
        let tv = 0;
        for (let t = 0; t < V; t++) tv += Math.abs((c.get(t) ?? 0) / n - probs[t]!);
        expect(tv / 2).toBeLessThan(0.06);
    });

    it("top-k never picks outside the k best, and picks within them by renormalized probability", async () => {
        const { logits, probs, byRank } = knownLogits(3);
        const k = 5;
        const n = 3000;
        const c = counts(await draw({ ...PLAIN, topK: k, seed: 3 }, logits, n));
        const best = new Set(byRank.slice(0, k));
        for (const t of c.keys()) expect(best.has(t)).toBe(true);
        const z = byRank.slice(0, k).reduce((a, t) => a + probs[t]!, 0);
        for (const t of best) expect(Math.abs((c.get(t) ?? 0) / n - probs[t]! / z)).toBeLessThan(0.04);
    });

    it("top-p keeps the smallest set reaching p", async () => {
        const { logits, probs, byRank } = knownLogits(3);
        const p = 0.6;
        let mass = 0, m = 0;
        while (mass < p) mass += probs[byRank[m++]!]!;
        const allowed = new Set(byRank.slice(0, m));
        const c = counts(await draw({ ...PLAIN, topP: p, seed: 4 }, logits, 2000));
        for (const t of c.keys()) expect(allowed.has(t)).toBe(true);
        expect(c.size).toBe(m); // and every member shows up
    });

    it("min-p never picks a token below minP × the top probability", async () => {
        const { logits, probs, byRank } = knownLogits(3);
        const minP = 0.2;
        const floor = minP * probs[byRank[0]!]!;
        const c = counts(await draw({ ...PLAIN, minP, seed: 5 }, logits, 2000));
        for (const t of c.keys()) expect(probs[t]!).toBeGreaterThanOrEqual(floor);
        expect(c.size).toBe(byRank.filter((t) => probs[t]! >= floor).length);
    });

    it("top-n-sigma never picks a logit below max - n·σ", async () => {
        const { logits } = knownLogits(20);
        const xs = Array.from(logits);
        const mean = xs.reduce((a, b) => a + b, 0) / V;
        const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / V);
        const floor = Math.max(...xs) - 1 * sd;
        const c = counts(await draw({ ...PLAIN, topNSigma: 1, seed: 6 }, logits, 2000));
        for (const t of c.keys()) expect(logits[t]!).toBeGreaterThanOrEqual(floor - 1e-5);
    });

    it("XTC with probability 1 removes every above-threshold token but the least likely of them", async () => {
        const logits = new Float32Array(V).fill(-20);
        [logits[10], logits[20], logits[30], logits[40]] = [Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)];
        const c = counts(await draw({ ...PLAIN, xtcProbability: 1, xtcThreshold: 0.1, seed: 7 }, logits, 500));
        expect(c.has(10)).toBe(false);
        expect(c.has(20)).toBe(false);
        expect(c.get(30)).toBeGreaterThan(300);
    });

    it("a logit bias of -Infinity is never picked; a positive bias wins", async () => {
        const { logits, byRank } = knownLogits(1);
        const top = byRank[0]!;
        const c = counts(await draw({ ...PLAIN, logitBias: { [top]: -Infinity }, seed: 8 }, logits, 2000));
        expect(c.has(top)).toBe(false);
        expect((await draw({ temperature: 0, logitBias: new Map([[top, -Infinity]]) }, logits, 1))[0]).toBe(byRank[1]);
        expect((await draw({ temperature: 0, logitBias: { [byRank[100]!]: 1000 } }, logits, 1))[0]).toBe(byRank[100]);
    });

    it("repeat, frequency and presence penalties push down what was already chosen", async () => {
        // Reference: llama.cpp's penalty definition, applied by hand to a greedy pick over the
        // last `lastN` chosen tokens: positive logits are divided by `repeat`, negative ones
        // multiplied; then count × frequency + (count > 0) × presence is subtracted.
        const reference = (l: Float32Array, n: number, p: { repeat?: number; freq?: number; presence?: number; lastN?: number }) => {
            const hist: number[] = [];
            const out: number[] = [];
            for (let step = 0; step < n; step++) {
                const recent = hist.slice(-(p.lastN ?? 64));
                let best = -1, bestV = -Infinity;
                for (let t = 0; t < l.length; t++) {
                    const count = recent.filter((x) => x === t).length;
                    let v = l[t]!;
                    if (count > 0) v = v > 0 ? v / (p.repeat ?? 1) : v * (p.repeat ?? 1);
                    v -= count * (p.freq ?? 0) + (count > 0 ? p.presence ?? 0 : 0);
                    if (v > bestV) [best, bestV] = [t, v];
                }
                out.push(best);
                hist.push(best);
            }
            return out;
        };
        const logits = new Float32Array(V).fill(-10);
        logits[5] = 2.0;
        logits[6] = 1.8;
        logits[7] = 1.0;
        logits[8] = -0.5;
        expect(await draw({ temperature: 0 }, logits, 3)).toEqual([5, 5, 5]); // no penalty: greedy repeats
        const cases: [SamplingOptions, Parameters<typeof reference>[2]][] = [
            [{ repeatPenalty: 1.5 }, { repeat: 1.5 }],
            [{ repeatPenalty: 3 }, { repeat: 3 }],
            [{ presencePenalty: 0.5 }, { presence: 0.5 }],
            [{ frequencyPenalty: 0.3 }, { freq: 0.3 }],
            [{ presencePenalty: 0.5, penaltyLastN: 1 }, { presence: 0.5, lastN: 1 }],
            [{ presencePenalty: 5, penaltyLastN: 2 }, { presence: 5, lastN: 2 }],
            [{ repeatPenalty: 1.3, frequencyPenalty: 0.2, presencePenalty: 0.1, penaltyLastN: 4 }, { repeat: 1.3, freq: 0.2, presence: 0.1, lastN: 4 }],
        ];
        for (const [opts, ref] of cases) {
            const want = reference(logits, 10, ref);
            expect(new Set(want).size, JSON.stringify(opts)).toBeGreaterThan(1); // the case does penalise
            expect(await draw({ temperature: 0, ...opts }, logits, 10), JSON.stringify(opts)).toEqual(want);
        }
    });

    it("mirostat 1 and 2, typical, dynamic temperature and DRY build and sample valid tokens", async () => {
        const { logits } = knownLogits(3);
        for (const o of [
            { mirostat: 1 }, { mirostat: 2, mirostatTau: 3 }, { typicalP: 0.5 }, { dynatempRange: 0.5 },
            { dryMultiplier: 0.8 }, { dryMultiplier: 0.8, drySequenceBreakers: ["."] },
        ] as SamplingOptions[]) {
            const xs = await draw({ ...o, seed: 9 }, logits, 20);
            for (const t of xs) expect(t >= 0 && t < V).toBe(true);
        }
    });
});

describe("seeds", () => {
    it("same seed, same logits → same tokens; different seeds differ", async () => {
        const { logits } = knownLogits(8);
        const a = await draw({ ...PLAIN, seed: 42 }, logits, 50);
        const b = await draw({ ...PLAIN, seed: 42 }, logits, 50);
        const c = await draw({ ...PLAIN, seed: 43 }, logits, 50);
        expect(b).toEqual(a);
        expect(c).not.toEqual(a);
    });

    it("the token depends on the sequence's logits and the seed only, not on the batch around it", async () => {
        const prompt = await model.tokenize("Once upon a time");
        const other = await model.tokenize("The little dog ran to the park and");
        const opts = { temperature: 1.5, topK: 0, topP: 1, minP: 0 } as const;
        for (const seed of [1, 2, 3, 4, 5]) {
            // Alone, and batched with another sequence (logits may then differ in the last bits).
            const alone = await model.createContext({ contextSize: 256, threads: 1, sequences: 2 });
            const batched = await model.createContext({ contextSize: 256, threads: 1, sequences: 2 });
            const la = (await alone.forward({ sequence: 0, tokens: prompt })).logits(0);
            const lb = (await batched.forward([{ sequence: 1, tokens: other }, { sequence: 0, tokens: prompt }])).logits(0);
            const ta = (await alone.sample(0, { ...opts, seed })).token;
            const tb = (await batched.sample(0, { ...opts, seed })).token;
            // Each equals a fresh chain's pick from exactly those logits with that seed.
            expect(ta).toBe((await draw({ ...opts, seed }, la, 1))[0]);
            expect(tb).toBe((await draw({ ...opts, seed }, lb, 1))[0]);
            if (la.every((v, i) => v === lb[i])) expect(tb).toBe(ta);
            await alone.dispose();
            await batched.dispose();
        }
    });
});

describe("ctx.sample on real logits", () => {
    it("log-probs agree with the log-softmax of a separate forward's logits", async () => {
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        const tokens = await model.tokenize("Once upon a time, there was a");
        const ref = await model.createContext({ contextSize: 256, threads: 1 });
        const logits = (await ref.forward({ sequence: 0, tokens, logits: "all" })).logits(0);
        const expected = logSoftmax(logits);
        await ctx.forward({ sequence: 0, tokens });
        const r = await ctx.sample(0, { temperature: 0, logProbs: 5 });
        const order = Array.from(expected.keys()).sort((a, b) => expected[b]! - expected[a]!);
        expect(r.token).toBe(order[0]);
        expect(r.logProb!).toBeCloseTo(expected[r.token]!, 3);
        expect(r.top!.map((x) => x.token)).toEqual(order.slice(0, 5));
        r.top!.forEach((x) => expect(x.logProb).toBeCloseTo(expected[x.token]!, 3));
        // With truncation, log-probs are of the truncated, renormalized distribution.
        const k = await ctx.sample(0, { temperature: 1, topK: 3, topP: 1, minP: 0, seed: 1, logProbs: 10 });
        expect(k.top!.length).toBe(3);
        const z = Math.log(order.slice(0, 3).reduce((a, t) => a + Math.exp(expected[t]!), 0));
        k.top!.forEach((x) => expect(x.logProb).toBeCloseTo(expected[x.token]! - z, 3));
        await ctx.dispose();
        await ref.dispose();
    });

    it("a chain is reused across calls with the same options: penalty history carries over", async () => {
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        await ctx.forward({ sequence: 0, tokens: await model.tokenize("Once upon a time") });
        const plain = [], penalized = [];
        for (let i = 0; i < 3; i++) plain.push((await ctx.sample(0, { temperature: 0 })).token);
        for (let i = 0; i < 3; i++) penalized.push((await ctx.sample(0, { temperature: 0, presencePenalty: 100 })).token);
        expect(new Set(plain).size).toBe(1); // same logits, greedy: same token
        expect(new Set(penalized).size).toBe(3); // each pick is banned for the next
        // resetSampling forgets the history: the first pick comes back.
        await resetSampling(ctx, 0);
        expect((await ctx.sample(0, { temperature: 0, presencePenalty: 100 })).token).toBe(penalized[0]);
        await ctx.dispose();
    });

    it("the native chain is built once per (sequence, option set), not per token", async () => {
        const ctx = await model.createContext({ contextSize: 256, threads: 1, sequences: 2 });
        const chain = (seq: number, o: SamplingOptions) => contextSampler(ctx, seq, resolveSampling(o, V, ctx.contextSize));
        const a = await chain(0, { temperature: 0.7, seed: 3 });
        expect(await chain(0, { seed: 3, temperature: 0.7 })).toBe(a); // same set, other key order
        expect(await chain(1, { temperature: 0.7, seed: 3 })).not.toBe(a); // another sequence: its own chain
        expect(await chain(0, { temperature: 0.5, seed: 3 })).not.toBe(a); // another option set
        // ctx.sample uses that cached object: resetting it directly resets what ctx.sample sees.
        const opts = { temperature: 0, presencePenalty: 100 };
        const p = await chain(0, opts);
        await ctx.forward({ sequence: 0, tokens: [1, 403] });
        const t1 = (await ctx.sample(0, opts)).token;
        expect((await ctx.sample(0, opts)).token).not.toBe(t1); // history in the cached chain
        p.reset();
        expect((await ctx.sample(0, opts)).token).toBe(t1);
        await ctx.dispose();
    });

    it("no logits yet: ERR_NO_LOGITS", async () => {
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        await expect(ctx.sample(0, {})).rejects.toMatchObject({ code: "ERR_NO_LOGITS" });
        await ctx.forward({ sequence: 0, tokens: [1, 403], logits: "none" });
        await expect(ctx.sample(0, {})).rejects.toMatchObject({ code: "ERR_NO_LOGITS" });
        await ctx.dispose();
        await expect(ctx.sample(0, {})).rejects.toMatchObject({ code: "ERR_DISPOSED" });
    });

    it("every candidate banned: ERR_NO_CANDIDATES, and the context stays usable", async () => {
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        await ctx.forward({ sequence: 0, tokens: [1, 403] });
        const ban = Object.fromEntries(Array.from({ length: V }, (_, i) => [i, -Infinity]));
        await expect(ctx.sample(0, { logitBias: ban })).rejects.toMatchObject({ code: "ERR_NO_CANDIDATES" });
        await expect(ctx.sample(0, { temperature: 0, logitBias: ban })).rejects.toMatchObject({ code: "ERR_NO_CANDIDATES" });
        expect((await ctx.sample(0, { temperature: 0 })).token).toBeGreaterThanOrEqual(0);
        await ctx.dispose();
    });
});

describe("a standalone Sampler", () => {
    it("model.dispose() waits for its calls; afterwards it rejects with ERR_DISPOSED", async () => {
        const m = await loadModel(MODELS.stories260K);
        const s = await createSampler(m, { grammar: 'root ::= "a"+', seed: 1 });
        const logits = new Float32Array(m.info.vocabSize);
        const inFlight = s.sample(logits);
        await m.dispose();
        expect((await inFlight).token).toBeGreaterThanOrEqual(0);
        await expect(s.sample(logits)).rejects.toMatchObject({ code: "ERR_DISPOSED" });
        await expect(s.sample(new Float32Array(3))).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
    });
});

describe("grammars", () => {
    it("invalid GBNF: ERR_INVALID_GRAMMAR (never an abort)", async () => {
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        await ctx.forward({ sequence: 0, tokens: [1, 403] });
        const bad = [
            "root ::= foo", "root ::= [a-", 'root ::= "unterminated', 'root ::= root "a"', "nonsense", 'root ::= ("a"',
            'x ::= "a"', 'root ::= "a"{99999999}', "root ::= [\\x]", 'root ::= "\\u12"',
            'root ::= "a"{5,2}', // llama.cpp would loop for ever on this one: caught in TypeScript
        ];
        for (const g of bad) {
            await expect(ctx.sample(0, { grammar: g }), g).rejects.toMatchObject({ code: "ERR_INVALID_GRAMMAR" });
        }
        expect((await ctx.sample(0, { temperature: 0 })).token).toBeGreaterThanOrEqual(0);
        await ctx.dispose();
    });

    it("a grammar constrains generation", async () => {
        const ctx = await model.createContext({ contextSize: 256, threads: 1 });
        for (const seed of [1, 2, 3, 4]) {
            let text = "";
            for await (const s of ctx.generate("Once upon a time", { grammar: 'root ::= " " ("yes" | "no" | "maybe") "."', seed, maxTokens: 20 })) text += s.text;
            expect([" yes.", " no.", " maybe."]).toContain(text);
            await ctx.kv.clear();
        }
        await ctx.dispose();
    });
});

describe("JSON schema output parses and validates", () => {
    const schema = {
        type: "object",
        properties: {
            name: { type: "string", maxLength: 12 },
            age: { type: "integer" },
            pet: { enum: ["cat", "dog", null] },
            happy: { type: "boolean" },
            tags: { type: "array", items: { type: "string", maxLength: 6 }, maxItems: 3 },
            score: { type: "number" },
        },
        required: ["name", "age", "pet", "happy"],
        additionalProperties: false,
    };

    /** A checker for exactly the keywords used above (independent of the converter). */
    function validate(v: unknown): string[] {
        const errs: string[] = [];
        if (typeof v !== "object" || v === null || Array.isArray(v)) return ["not an object"];
        const o = v as Record<string, unknown>;
        for (const k of schema.required) if (!(k in o)) errs.push(`missing ${k}`);
        for (const k of Object.keys(o)) if (!(k in schema.properties)) errs.push(`extra ${k}`);
        if ("name" in o && (typeof o.name !== "string" || o.name.length > 12)) errs.push("name");
        if ("age" in o && !Number.isInteger(o.age)) errs.push("age");
        if ("pet" in o && !["cat", "dog", null].includes(o.pet as never)) errs.push("pet");
        if ("happy" in o && typeof o.happy !== "boolean") errs.push("happy");
        if ("tags" in o && (!Array.isArray(o.tags) || o.tags.length > 3 || o.tags.some((t) => typeof t !== "string" || t.length > 6))) errs.push("tags");
        if ("score" in o && typeof o.score !== "number") errs.push("score");
        return errs;
    }

    it("stories260K, sampled with several seeds and greedy", async () => {
        const ctx = await model.createContext({ contextSize: 512, threads: 1 });
        for (const opts of [{ seed: 1 }, { seed: 2 }, { seed: 3 }, { temperature: 0 }] as SamplingOptions[]) {
            let text = "";
            let reason = "";
            const it = ctx.generate("Once upon a time", { ...opts, jsonSchema: schema, maxTokens: 300 });
            for (;;) {
                const r = await it.next();
                if (r.done) {
                    reason = r.value.reason;
                    break;
                }
                text += r.value.text;
            }
            expect(reason, text).toBe("eog"); // the grammar ended it, not maxTokens
            const value = JSON.parse(text);
            expect(validate(value), text).toEqual([]);
            await ctx.kv.clear();
        }
        await ctx.dispose();
    });
});
