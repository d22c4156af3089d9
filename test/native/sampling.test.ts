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

/**
 * The temperature that best explains draws from knownLogits(scale): at temperature T the
 * token of rank r has p ∝ q^r with q = exp(-1 / (scale·T)), whose mean rank is q / (1 - q)
 * (the vocabulary's cut at 512 is negligible for scale·T ≤ 8). Its noise at 4000-8000 draws
 * is about 1.5% of T, so a 5% bound catches a 10% temperature error at ~6σ.
 */
function fittedTemperature(draws: number[], byRank: number[], scale: number): number {
    const rank = new Map(byRank.map((t, r) => [t, r]));
    const m = draws.reduce((a, t) => a + rank.get(t)!, 0) / draws.length;
    const q = m / (1 + m);
    return -1 / (scale * Math.log(q));
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

    // Greedy alone takes a direct argmax (native/sampling.cpp); with any stage before it the
    // candidates go through llama.cpp's own greedy stage. A zero logit bias changes no logit,
    // so both must pick the same token: the first of tied maxima, and never a NaN or -Infinity.
    it("temperature 0 alone picks what llama.cpp's greedy stage picks, ties and non-finite logits included", async () => {
        // The comparison means something only if the bias really puts a stage before greedy.
        expect(resolveSampling({ temperature: 0 }, V).native.stages.map((s) => s.kind)).toEqual(["greedy"]);
        expect(resolveSampling({ temperature: 0, logitBias: { 0: 0 } }, V).native.stages.map((s) => s.kind)).toEqual(["logit_bias", "greedy"]);
        const direct = await createSampler(model, { temperature: 0 });
        const viaChain = await createSampler(model, { temperature: 0, logitBias: { 0: 0 } });
        for (let t = 0; t < 200; t++) {
            const l = new Float32Array(V).map(() => Math.floor(Math.random() * 4)); // many ties
            if (t % 3 === 0) l[Math.floor(Math.random() * V)] = NaN;
            if (t % 5 === 0) l[0] = -Infinity;
            // A NaN that lands first stays the pick in llama.cpp's stage (nothing compares above
            // it) and is refused; both paths must agree on that too.
            const outcome = (s: typeof direct) => s.sample(l).then((r) => r.token, (e: { code: string }) => e.code);
            expect(await outcome(direct)).toBe(await outcome(viaChain));
        }
        // signed zeros tie (-0 == +0): the first of them either way
        for (let t = 0; t < 20; t++) {
            const l = new Float32Array(V).fill(-Infinity);
            for (let k = 0; k < 5; k++) l[Math.floor(Math.random() * V)] = k % 2 === 0 ? -0 : 0;
            expect((await direct.sample(l)).token).toBe(await viaChain.sample(l).then((r) => r.token));
        }
        const dead = new Float32Array(V).fill(-Infinity);
        await expect(direct.sample(dead)).rejects.toMatchObject({ code: "ERR_NO_CANDIDATES" });
        await expect(viaChain.sample(dead)).rejects.toMatchObject({ code: "ERR_NO_CANDIDATES" });
        await direct.dispose();
        await viaChain.dispose();
    });

    it("no truncation, temperature 1: frequencies follow the softmax", async () => {
        const { logits, probs } = knownLogits(6);
        const n = 4000;
        const draws = await draw({ ...PLAIN, seed: 1 }, logits, n);
        const c = counts(draws);
        let tv = 0;
        for (let t = 0; t < V; t++) tv += Math.abs((c.get(t) ?? 0) / n - probs[t]!);
        expect(tv / 2).toBeLessThan(0.06); // total variation; ~0.03 expected from noise
        // TV alone lets a 10% temperature error through; the fitted temperature does not.
        expect(Math.abs(fittedTemperature(draws, knownLogits(6).byRank, 6) - 1)).toBeLessThan(0.05);
    });

    it("temperature 2 flattens: frequencies follow softmax(logits / 2)", async () => {
        const { logits, byRank } = knownLogits(2);
        const probs = softmax(logits.map((v) => v / 2));
        const n = 8000;
        const draws = await draw({ ...PLAIN, temperature: 2, seed: 2 }, logits, n);
        const c = counts(draws);
        let tv = 0;
        for (let t = 0; t < V; t++) tv += Math.abs((c.get(t) ?? 0) / n - probs[t]!);
        expect(tv / 2).toBeLessThan(0.06);
        expect(Math.abs(fittedTemperature(draws, byRank, 2) / 2 - 1)).toBeLessThan(0.05);
        // and 0.5 sharpens by the same law
        const sharp = await draw({ ...PLAIN, temperature: 0.5, seed: 12 }, logits, 4000);
        expect(Math.abs(fittedTemperature(sharp, byRank, 2) / 0.5 - 1)).toBeLessThan(0.05);
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

    it("top-n-sigma keeps exactly the logits within n·σ of the max, sampled by renormalized probability", async () => {
        // Five levels; most of the mass (about 60%) is in the 490 tokens at -3, which n = 1 cuts
        // away and n = 8 keeps: without the stage most draws would fall outside.
        const perm = permutation(V, 3);
        const logits = new Float32Array(V).fill(-3);
        [0, -0.2, -0.4, -0.6, -0.8].forEach((level, g) => perm.slice(4 * g, 4 * g + 4).forEach((t) => (logits[t] = level)));
        const xs = Array.from(logits);
        const mean = xs.reduce((a, b) => a + b, 0) / V;
        const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / V);
        for (const n of [0.5, 1, 8]) {
            const floor = -n * sd;
            // no logit sits near the floor, so float32 rounding cannot move a token across it
            for (const x of xs) expect(Math.abs(x - floor), `n = ${n}`).toBeGreaterThan(0.02);
            const kept = xs.map((x, t) => [x, t] as const).filter(([x]) => x >= floor).map(([, t]) => t);
            const draws = await draw({ ...PLAIN, topNSigma: n, seed: 6 }, logits, 4000);
            const c = counts(draws);
            const keptSet = new Set(kept);
            for (const t of c.keys()) expect(keptSet.has(t), `n = ${n}: token ${t} (logit ${logits[t]}) is below the floor ${floor}`).toBe(true);
            for (const t of kept) if (logits[t]! > -3) expect(c.has(t), `n = ${n}: kept token ${t} never drawn`).toBe(true);
            // frequencies: the softmax over the kept tokens
            const z = kept.reduce((a, t) => a + Math.exp(logits[t]!), 0);
            const lowMass = kept.filter((t) => logits[t] === -3).reduce((a, t) => a + Math.exp(-3) / z, 0);
            const seenLow = draws.filter((t) => logits[t] === -3).length / draws.length;
            expect(Math.abs(seenLow - lowMass), `n = ${n}: mass at -3`).toBeLessThan(0.03);
            for (const t of kept.filter((t) => logits[t]! > -3)) {
                expect(Math.abs((c.get(t) ?? 0) / draws.length - Math.exp(logits[t]!) / z), `n = ${n}, token ${t}`).toBeLessThan(0.02);
            }
        }
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

    it("typical-p draws only from the locally typical set, computed by hand (which here excludes the argmax)", async () => {
        // llama.cpp's definition: sort by |−ln p − H|, keep the shortest prefix whose mass exceeds p.
        // (Scale 8 keeps every float32 probability above 0: llama.cpp's entropy sum turns NaN
        // when one underflows, as p·log p does at p = 0, and the stage then keeps nonsense.)
        const { logits, probs, byRank } = knownLogits(8);
        const H = -probs.reduce((a, p) => a + (p > 0 ? p * Math.log(p) : 0), 0);
        const order = Array.from(probs.keys()).sort((a, b) => Math.abs(-Math.log(probs[a]!) - H) - Math.abs(-Math.log(probs[b]!) - H));
        for (const typicalP of [0.5, 0.9]) {
            let mass = 0;
            const set: number[] = [];
            for (const t of order) {
                set.push(t);
                mass += probs[t]!;
                if (mass > typicalP) break;
            }
            // the cut is not a near tie in float32 (errors there are ~1e-6)
            expect(mass - typicalP).toBeGreaterThan(1e-3);
            expect(mass - probs[set.at(-1)!]! - typicalP).toBeLessThan(-1e-3);
            if (typicalP === 0.5) expect(set).not.toContain(byRank[0]); // the most likely token is atypical here
            const draws = await draw({ ...PLAIN, typicalP, seed: 10 }, logits, 3000);
            const c = counts(draws);
            const inSet = new Set(set);
            for (const t of c.keys()) expect(inSet.has(t), `typicalP ${typicalP}: token of rank ${byRank.indexOf(t)} is outside the typical set`).toBe(true);
            for (const t of set.slice(0, 4)) expect(Math.abs((c.get(t) ?? 0) / draws.length - probs[t]! / mass)).toBeLessThan(0.03);
        }
    });

    it("dynamic temperature: frequencies follow the temperature derived from the entropy (dynatempRange, dynatempExponent)", async () => {
        // llama.cpp: T = (t − δ) + 2δ · (H / ln n)^exponent over the n candidates left; no truncation here, so n = V.
        const scale = 2;
        const { logits, probs, byRank } = knownLogits(scale);
        const H = -probs.reduce((a, p) => a + (p > 0 ? p * Math.log(p) : 0), 0);
        const fitted: number[] = [];
        for (const [range, exponent] of [[0.5, 1], [0.5, 2], [0.9, 0.5]] as const) {
            const want = 1 - range + 2 * range * (H / Math.log(V)) ** exponent;
            const draws = await draw({ ...PLAIN, dynatempRange: range, dynatempExponent: exponent, seed: 11 }, logits, 6000);
            const got = fittedTemperature(draws, byRank, scale);
            fitted.push(got);
            expect(Math.abs(got / want - 1), `range ${range}, exponent ${exponent}: want T ${want.toFixed(3)}, fitted ${got.toFixed(3)}`).toBeLessThan(0.05);
        }
        // the settings give T = 0.77, 0.57 and 1.04: the first two far from T = 1 (the fit would see a missing stage)
        expect(Math.max(...fitted.slice(0, 2))).toBeLessThan(0.85);
    });

    /**
     * Mirostat replayed from the picks, in float32 as llama.cpp computes it (every operation
     * rounded with Math.fround): the state μ feeds back on itself, so a float64 replay drifts
     * away from the sampler's float32 one within a few thousand steps. Starting from μ = 2τ,
     * each step keeps a set of the most likely tokens (v2: surprise −log2 p ≤ μ; v1: the top k
     * that a Zipf fit of the top 100 gives for μ), renormalizes, and moves μ by η(τ − s), s the
     * pick's surprise under the kept distribution. Returns, per step, whether the pick was in
     * the kept set, and s.
     */
    function replayMirostat(version: 1 | 2, draws: number[], logits: Float32Array, tauIn: number, etaIn: number) {
        const f = Math.fround;
        const tau = f(tauIn), eta = f(etaIn);
        const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!);
        const rankOf = new Map(order.map((t, r) => [t, r]));
        const softmax = (n: number) => {
            const max = logits[order[0]!]!;
            const p = new Float32Array(n);
            let sum = 0;
            for (let i = 0; i < n; i++) sum = f(sum + (p[i] = f(Math.exp(f(logits[order[i]!]! - max)))));
            for (let i = 0; i < n; i++) p[i] = f(p[i]! / sum);
            return p;
        };
        const all = softmax(order.length);
        let sHat = 0;
        if (version === 1) {
            let sumTB = 0, sumTT = 0;
            for (let i = 0; i < 99 && i < all.length - 1; i++) {
                const t = f(Math.log(f(f(i + 2) / f(i + 1))));
                const b = f(Math.log(f(all[i]! / all[i + 1]!)));
                sumTB = f(sumTB + f(t * b));
                sumTT = f(sumTT + f(t * t));
            }
            sHat = f(sumTB / sumTT);
        }
        let mu = f(2 * tau);
        const inSet: boolean[] = [];
        const observed: number[] = [];
        for (const tok of draws) {
            let kept: number;
            if (version === 2) {
                kept = 0;
                while (kept < all.length && !(f(-Math.log2(all[kept]!)) > mu)) kept++;
                kept = Math.max(kept, 1);
            } else {
                const eps = f(sHat - 1);
                const k = f(Math.pow(f(f(eps * f(Math.pow(2, mu))) / f(1 - f(Math.pow(order.length, -eps)))), f(1 / sHat)));
                kept = Math.min(Math.max(Math.trunc(k), 1), order.length);
            }
            const rank = rankOf.get(tok)!;
            inSet.push(rank < kept);
            const p = softmax(kept);
            const s = f(-Math.log2(rank < kept ? p[rank]! : all[rank]!));
            observed.push(s);
            mu = f(mu - f(eta * f(s - tau)));
        }
        return { inSet, observed };
    }

    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

    it("mirostat 2: every pick is within the surprise bound μ, and the mean surprise settles at τ (mirostatTau, mirostatEta)", async () => {
        const { logits, probs } = knownLogits(8); // entropy 4.4 bits: plain sampling would average ~4.4
        const plainBits = mean((await draw(PLAIN, logits, 2000)).map((t) => -Math.log2(probs[t]!)));
        expect(plainBits).toBeGreaterThan(4);
        for (const [tau, eta] of [[3, 0.1], [2, 0.3], [3, 0]] as const) {
            const draws = await draw({ ...PLAIN, mirostat: 2, mirostatTau: tau, mirostatEta: eta, seed: 13 }, logits, 3000);
            const { inSet, observed } = replayMirostat(2, draws, logits, tau, eta);
            const outside = inSet.indexOf(false);
            expect(outside, `τ ${tau}, η ${eta}: pick ${outside} has surprise above μ`).toBe(-1);
            if (eta > 0) expect(Math.abs(mean(observed.slice(500)) - tau), `τ ${tau}, η ${eta}`).toBeLessThan(0.1);
            // η = 0: μ stays 2τ, so no pick is ever more surprising than that
            else expect(Math.max(...draws.map((t) => -Math.log2(probs[t]!)))).toBeLessThanOrEqual(2 * tau + 1e-4);
        }
    });

    it("mirostat 1: every pick is within the top k its Zipf estimate gives, and the mean surprise settles at τ", async () => {
        const { logits, probs } = knownLogits(8);
        for (const [tau, eta] of [[2, 0.1], [3, 0.2]] as const) {
            const draws = await draw({ ...PLAIN, mirostat: 1, mirostatTau: tau, mirostatEta: eta, seed: 14 }, logits, 3000);
            const { inSet, observed } = replayMirostat(1, draws, logits, tau, eta);
            const outside = inSet.indexOf(false);
            expect(outside, `τ ${tau}: pick ${outside} is outside the top k`).toBe(-1);
            expect(Math.abs(mean(observed.slice(500)) - tau), `τ ${tau}`).toBeLessThan(0.1);
            // and far below what plain sampling's picks carry (4.4 bits)
            expect(mean(draws.map((t) => -Math.log2(probs[t]!)))).toBeLessThan(tau + 1.5);
        }
    });

    describe("DRY", () => {
        let A: number, B: number, C: number, DOT: number;
        beforeAll(() => {
            // three ordinary tokens (" ha", " S", "an": no sequence breaker in them) and "."
            const pieces = model.tokenPieces(Array.from({ length: V }, (_, i) => i)).map((p) => new TextDecoder().decode(p));
            [A, B, C] = [300, 301, 303];
            for (const t of [A, B, C]) expect(pieces[t]).toMatch(/^[ a-zA-Z]+$/);
            DOT = pieces.indexOf(".");
            expect(DOT).toBeGreaterThan(0);
        });

        /**
         * Greedy with DRY: `history` is forced first (its token gets logit 20, far above any
         * penalty here), then one free pick from logits A = a, C = c, everything else -30.
         */
        async function freePick(history: () => number[], a: number, c: number, o: SamplingOptions): Promise<number> {
            const s = await createSampler(model, { temperature: 0, ...o });
            try {
                for (const t of history()) {
                    const l = new Float32Array(V).fill(-30);
                    l[t] = 20;
                    expect((await s.sample(l)).token).toBe(t);
                }
                const l = new Float32Array(V).fill(-30);
                l[A] = a;
                l[C] = c;
                return (await s.sample(l)).token;
            } finally {
                await s.dispose();
            }
        }
        const DRY = { dryMultiplier: 0.8, dryBase: 1.75, dryAllowedLength: 2 };

        it("greedy breaks an A B A B repetition: A would repeat a length-2 sequence, penalized by 0.8", async () => {
            const abab = () => [A, B, A, B];
            expect(await freePick(abab, 1, 0.5, {})).toBe(A); // without DRY: A
            expect(await freePick(abab, 1, 0.5, DRY)).toBe(C); // 1 − 0.8 < 0.5
            expect(await freePick(abab, 1, 0.15, DRY)).toBe(A); // 1 − 0.8 > 0.15: the penalty is 0.8, not more
            expect(await freePick(abab, 1, 0.5, { ...DRY, dryAllowedLength: 3 })).toBe(A); // length 2 is allowed
        });

        it("the penalty grows as multiplier · base^(length − allowed) (dryBase)", async () => {
            const ab3 = () => [A, B, A, B, A, B]; // A would continue a repeat of length 4: penalty 0.8 · base²
            expect(await freePick(ab3, 3, 1, DRY)).toBe(C); // 3 − 2.45 < 1
            expect(await freePick(ab3, 3, 1, { ...DRY, dryBase: 1.1 })).toBe(A); // 3 − 0.968 > 1
            expect(await freePick(ab3, 3, 0.5, DRY)).toBe(A); // 3 − 2.45 > 0.5
        });

        it("dryPenaltyLastN limits the history scanned; drySequenceBreakers end a repeat", async () => {
            expect(await freePick(() => [A, B, A, B], 1, 0.5, { ...DRY, dryPenaltyLastN: 3 })).toBe(A); // B A B: no earlier "A B"
            expect(await freePick(() => [A, B, A, B], 1, 0.5, { ...DRY, dryPenaltyLastN: 4 })).toBe(C);
            const adad = () => [A, DOT, A, DOT];
            expect(await freePick(adad, 1, 0.5, { ...DRY, drySequenceBreakers: [] })).toBe(C);
            expect(await freePick(adad, 1, 0.5, { ...DRY, drySequenceBreakers: ["."] })).toBe(A); // "." breaks it
            expect(await freePick(adad, 1, 0.5, DRY)).toBe(C); // the default breakers do not include "."
        });
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
            // Batched logits differ from the lone ones in the last bits at most, and the same seed
            // draws the same uniform: the pick is the same unless that uniform lands within ~1e-6
            // of a boundary of the cumulative distribution (never, for these five seeds).
            let diff = 0;
            la.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - lb[i]!))));
            expect(diff).toBeLessThan(1e-3);
            expect(tb).toBe(ta);
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
