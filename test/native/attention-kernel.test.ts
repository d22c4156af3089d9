// The fused CPU attention kernels against a float64 reference that decodes the f16/q8_0 caches
// exactly, on a few hundred seeded random shapes run through a real ggml FLASH_ATTN_EXT node
// (hook on ggml's own threads). kernelStats() proves which path ran; ggml's own kernel on the
// same inputs must also land near the reference, so the reference is checked too.
import { readFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import {
    attentionForcePortable,
    attentionKernelInfo,
    type AttentionComputeSpec,
    type AttentionKvType,
    type AttentionOpShape,
    computeAttention,
    hasDevBindings,
    kernelStats,
    kernelStatsReset,
} from "../../src/attention.js";
import { attentionReference, decodeRows, HALF_NEG_INF, numberToHalf, randomRows, relL2, rng } from "../helpers/attention-ref.js";

// The fused kernels' worst error against float64 over these cases is 8.1e-7 (measured); 1e-5
// leaves headroom for other CPUs and still catches a dropped soft-cap tanh (1e-1 and more on
// the soft-cap cases below). ggml's own kernel rounds q to the cache type and accumulates in
// f16: GGML_TOL is per cache type, from its measured worst (see the log line at the end).
const TOL = 1e-5;
// Measured worst over these cases (soft-cap ones included): f16 6.3e-3, q8_0 5.6e-3, each held
// to 2.5x that; f32 (only the declined case: ggml in f32 throughout) 5.5e-7, held to TOL.
const GGML_TOL: Record<AttentionKvType, number> = { f16: 1.6e-2, q8_0: 1.4e-2, f32: TOL };

type MaskKind = "none" | "causal" | "multiseq" | "random" | "allmasked" | "steps";

interface Case extends AttentionOpShape {
    name: string;
    seed: number;
    threads: number;
    maskKind: MaskKind;
    portable: boolean;
}

// Causal over a cache whose first n_kv - pad cells hold the sequence (last nTokens of them
// being the batch), padded with -inf to nKv (llama.cpp pads n_kv to 256).
function buildMask(c: Case, rand: () => number): Uint16Array | undefined {
    if (c.maskRows === 0) return undefined;
    const { nKv, maskRows, maskHeads, nStream, nTokens } = c;
    const m = new Uint16Array(nKv * maskRows * maskHeads * nStream).fill(HALF_NEG_INF);
    const alibi = c.maxBias > 0;
    for (let s = 0; s < nStream; s++) {
        const used = Math.max(nTokens, nKv - Math.floor(rand() * Math.min(nKv, 300)));
        // multi-sequence: cells belong to one of up to 3 sequences, positions count per sequence.
        // steps: a decode step of nTokens sequences in one unified cache (token t is sequence
        // t's next token); cells of the sequences' prompts in runs, then their earlier steps'
        // cells interleaved, one per sequence per step.
        const steps = c.maskKind === "steps";
        const nSeq = c.maskKind === "multiseq" ? 1 + Math.floor(rand() * 3) : steps ? nTokens : 1;
        const cellSeq = new Int32Array(used);
        const cellPos = new Int32Array(used);
        const next = new Int32Array(nSeq);
        const promptRun = Math.max(1, Math.floor(used / (2 * nSeq)));
        for (let j = 0; j < used; j++) {
            const fromEnd = used - 1 - j;
            cellSeq[j] = !steps ? Math.floor(rand() * nSeq)
                : j < promptRun * nSeq && fromEnd >= nTokens ? Math.floor(j / promptRun)
                : nSeq - 1 - (fromEnd % nSeq);
            cellPos[j] = next[cellSeq[j]!]!++;
        }
        for (let mh = 0; mh < maskHeads; mh++) {
            for (let t = 0; t < maskRows; t++) {
                const row = ((s * maskHeads + mh) * maskRows + t) * nKv;
                if (t >= nTokens) continue; // padding rows: never read as tokens
                const cell = used - nTokens + t; // the token's own cell
                const allMasked = c.maskKind === "allmasked" && (t % 3 === 0 || rand() < 0.3);
                for (let j = 0; j < used; j++) {
                    let visible: boolean;
                    if (allMasked) visible = false;
                    else if (c.maskKind === "none") visible = true;
                    else if (c.maskKind === "random") visible = rand() < 0.6;
                    else if (c.maskKind === "multiseq" || steps) visible = cellSeq[j] === cellSeq[cell] && cellPos[j]! <= cellPos[cell]!;
                    else visible = j <= cell;
                    if (visible) m[row + j] = numberToHalf(alibi ? -Math.abs(cell - j) % 1000 : 0);
                }
            }
        }
    }
    return m;
}

function makeCase(i: number): Case {
    const r = rng(1000 + i);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const kvType: AttentionKvType = r() < 0.5 ? "f16" : "q8_0";
    // 64-256 as in real models; 8 and 16 as in ../shared/models' tiny ones
    let DK = pick([64, 80, 96, 128, 256, 64, 128, 8, 16] as const) as number;
    if (kvType === "q8_0" && DK % 32 !== 0) DK = pick([64, 96, 128, 256]);
    const G = pick([1, 2, 4, 8]);
    const nHeadKv = r() < 0.7 ? 1 : 2;
    const nStream = r() < 0.6 ? 1 : 2 + Math.floor(r() * 3);
    const decode = r() < 0.5;
    const nTokens = decode ? 1 : pick([2, 3, 7, 8, 9, 16, 31, 33]);
    let nKv = pick([1, 31, 32, 33, 255, 256, 257, 511, 512, 513, 1024, 1500, 2048]);
    nKv = Math.max(nKv, nTokens);
    // keep the float64 reference affordable (about 1e7 multiply-adds per case)
    const cost = () => nStream * nHeadKv * G * nTokens * nKv * 2 * DK;
    while (cost() > 1.5e7 && nKv > 64) nKv = Math.max(nTokens, Math.floor(nKv / 2) + 1);
    const maskKind: MaskKind = pick(["causal", "causal", "multiseq", "random", "allmasked", "none"] as const);
    const special = r();
    const maxBias = special < 0.12 && maskKind !== "none" ? 8 : 0;
    // Soft-cap 2 to 5 with scores reaching about ±10 (q scaled by 10 in inputs()): a cap of 20-50
    // on scores of ±0.7 barely bends them, and a kernel without tanh passed at 1e-4.
    const softcap = special >= 0.12 && special < 0.24 ? 2 + Math.floor(((special - 0.12) / 0.12) * 4) : 0;
    const sinks = r() < 0.2;
    const nHead = G * nHeadKv;
    return {
        name: `#${i} ${kvType} D${DK} G${G} hkv${nHeadKv} N${nTokens} kv${nKv} s${nStream} ${maskKind}` +
            `${maxBias ? " alibi" : ""}${softcap ? " softcap" : ""}${sinks ? " sinks" : ""}`,
        seed: 5000 + i,
        DK, DV: DK, nTokens, nHead, nHeadKv, nKv, nStream, kvType,
        maskRows: maskKind === "none" ? 0 : nTokens + Math.floor(r() * 3),
        maskHeads: r() < 0.15 ? nHead : 1,
        sinks, scale: 1 / Math.sqrt(DK), maxBias, softcap,
        threads: pick([1, 2, 3, 4]),
        maskKind,
        portable: false,
    };
}

function inputs(c: Case) {
    const r = rng(c.seed);
    const qScale = c.softcap ? 10 : 1;
    const q = new Float32Array(c.DK * c.nHead * c.nTokens * c.nStream).map(() => qScale * (2 * r() - 1));
    const k = randomRows(c.kvType, c.DK, c.nHeadKv * c.nKv * c.nStream, r);
    const v = randomRows(c.kvType, c.DV, c.nHeadKv * c.nKv * c.nStream, r);
    const mask = buildMask(c, r);
    const sinkValues = c.sinks ? new Float32Array(c.nHead).map(() => 4 * r() - 1) : undefined;
    return { q, k, v, mask, sinkValues };
}

function run(c: Case, x: ReturnType<typeof inputs>, mode: AttentionComputeSpec["mode"]): Float32Array {
    return computeAttention({ ...c, ...x, mode });
}

/** Indices of output rows whose every key is masked (reference row is exactly 0 there). */
function fullyMaskedRows(c: Case, mask: Uint16Array | undefined): number[] {
    if (!mask) return [];
    const rows: number[] = [];
    for (let s = 0; s < c.nStream; s++) {
        for (let t = 0; t < c.nTokens; t++) {
            for (let h = 0; h < c.nHead; h++) {
                const mo = ((s * c.maskHeads + (h % c.maskHeads)) * c.maskRows + t) * c.nKv;
                let all = true;
                for (let j = 0; j < c.nKv && all; j++) all = mask[mo + j] === HALF_NEG_INF;
                if (all) rows.push((s * c.nTokens + t) * c.nHead + h);
            }
        }
    }
    return rows;
}

// Decode steps of several sequences sharing one unified cache: each token sees only its own
// sequence's interleaved cells (the kernel walks these sparsely, one token's rows at a time).
function makeStepsCase(i: number): Case {
    const r = rng(9000 + i);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const kvType: AttentionKvType = i % 2 === 0 ? "f16" : "q8_0";
    const DK = pick([64, 128, 96]);
    const G = pick([1, 4, 8]);
    const nHeadKv = pick([1, 2]);
    const nTokens = pick([2, 3, 8, 16]);
    const nKv = pick([64, 300, 1024]);
    const special = r();
    const nHead = G * nHeadKv;
    const maxBias = special < 0.2 ? 8 : 0;
    const softcap = special > 0.8 ? 3 : 0;
    const sinks = r() < 0.3;
    return {
        name: `steps #${i} ${kvType} D${DK} G${G} hkv${nHeadKv} N${nTokens} kv${nKv}${maxBias ? " alibi" : ""}${softcap ? " softcap" : ""}${sinks ? " sinks" : ""}`,
        seed: 7000 + i,
        DK, DV: DK, nTokens, nHead, nHeadKv, nKv, nStream: 1, kvType,
        maskRows: nTokens + 1, maskHeads: r() < 0.2 ? nHead : 1,
        sinks, scale: 1 / Math.sqrt(DK), maxBias, softcap,
        threads: 1 + (i % 4),
        maskKind: "steps",
        portable: false,
    };
}

const N_CASES = 240;
const cases = [...Array.from({ length: N_CASES }, (_, i) => makeCase(i)), ...Array.from({ length: 16 }, (_, i) => makeStepsCase(i))];
// every 6th case again on the portable inner loops
const portableCases = cases.filter((_, i) => i % 6 === 0).map((c) => ({ ...c, name: `${c.name} portable`, portable: true }));

/** Whether this CPU has what the SIMD inner loops need (x86-64 with AVX2, FMA and F16C). */
function cpuHasAvx2Fma(): boolean {
    if (process.arch !== "x64") return false;
    const flags = new Set((/^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "").trim().split(/\s+/));
    return flags.has("avx2") && flags.has("fma") && flags.has("f16c");
}

// Worst relative L2 against the reference, per mode and cache type (logged at the end: the
// figures the bounds above come from).
const worst: Record<string, number> = {};
const note = (key: string, err: number) => (worst[key] = Math.max(worst[key] ?? 0, err));

// attentionCompute is a development-only binding (LLAMAFUSE_DEV_BINDINGS, on in a development
// checkout's build, off in published and prebuilt addons): without it these tests skip, visibly.
const devBindings = hasDevBindings();
if (!devBindings) console.warn("attention-kernel tests SKIPPED: this addon was built without LLAMAFUSE_DEV_BINDINGS");

afterAll(() => console.log(`worst relative L2 vs float64: ${Object.entries(worst).sort().map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", ")}`));

describe.runIf(devBindings)("fused CPU attention vs float64 reference", () => {
    afterAll(() => attentionForcePortable(false));

    it.runIf(process.platform === "linux")("uses the AVX2 inner loops exactly where the CPU has AVX2, FMA and F16C; the portable ones when forced", () => {
        expect(attentionKernelInfo().simd).toBe(cpuHasAvx2Fma());
        attentionForcePortable(true);
        expect(attentionKernelInfo().simd).toBe(false);
        attentionForcePortable(false);
        expect(attentionKernelInfo().simd).toBe(cpuHasAvx2Fma());
    });

    // A known answer, independent of attentionReference: DK 64 (scale 1/8), two keys, key 0
    // all 0.5 and key 1 all 0, values 1 and 0. Head 0's query is all 1.5 (score 6 against key
    // 0), head 1's all -1.5. Every output element of head 0 is σ(cap·tanh(6/cap)), of head 1
    // σ(-cap·tanh(6/cap)): 0.879755 / 0.120245 with cap 2, and σ(±6) = 0.997527 / 0.002473
    // without tanh.
    it.each([
        [2, false], [2, true], [5, false], [0, false],
    ] as const)("soft-cap known answer: cap %d, portable %s", (cap, portable) => {
        attentionForcePortable(portable);
        const DK = 64;
        const shape = { DK, DV: DK, nTokens: 1, nHead: 2, nHeadKv: 1, nKv: 2, nStream: 1, kvType: "f16" as const,
            maskRows: 0, maskHeads: 1, sinks: false, scale: 1 / 8, maxBias: 0, softcap: cap, threads: 1 };
        const q = new Float32Array(2 * DK).map((_, i) => (i < DK ? 1.5 : -1.5));
        const k = new Uint8Array(2 * 2 * DK);
        const v = new Uint8Array(2 * 2 * DK);
        const kd = new DataView(k.buffer), vd = new DataView(v.buffer);
        for (let d = 0; d < DK; d++) {
            kd.setUint16(2 * d, numberToHalf(0.5), true); // key 0; key 1 stays 0
            vd.setUint16(2 * d, numberToHalf(1), true);
        }
        const x = cap ? cap * Math.tanh(6 / cap) : 6;
        const want = [1 / (1 + Math.exp(-x)), 1 / (1 + Math.exp(x))];
        kernelStatsReset();
        const out = computeAttention({ ...shape, q, k, v, mode: "fused" });
        expect(kernelStats()).toEqual({ fused: 1, declined: 0 });
        for (let h = 0; h < 2; h++) {
            for (let d = 0; d < DK; d++) expect(Math.abs(out[h * DK + d]! - want[h]!), `head ${h} element ${d}`).toBeLessThanOrEqual(1e-6);
        }
        const ref = attentionReference(shape, { q, k: decodeRows("f16", DK, k), v: decodeRows("f16", DK, v) });
        for (let h = 0; h < 2; h++) expect(ref[h * DK]).toBeCloseTo(want[h]!, 12);
    });

    it.each([...cases, ...portableCases].map((c) => [c.name, c] as const))("%s", (_name, c) => {
        attentionForcePortable(c.portable);
        const x = inputs(c);
        const ref = attentionReference(c, { q: x.q, k: decodeRows(c.kvType, c.DK, x.k), v: decodeRows(c.kvType, c.DV, x.v), mask: x.mask, sinkValues: x.sinkValues });

        kernelStatsReset();
        const fused = run(c, x, "fused");
        expect(kernelStats()).toEqual({ fused: 1, declined: 0 });

        // every element written (output was NaN-poisoned) and finite
        for (let i = 0; i < fused.length; i++) {
            if (!Number.isFinite(fused[i])) throw new Error(`element ${i} is ${fused[i]}`);
        }
        for (const row of fullyMaskedRows(c, x.mask)) {
            for (let d = 0; d < c.DV; d++) expect(fused[row * c.DV + d]).toBe(0);
        }
        const err = relL2(fused, ref);
        note(`fused ${c.kvType}`, err);
        expect(err).toBeLessThanOrEqual(TOL);

        // ggml's kernel on the same node must agree with the reference too (it accumulates in
        // f16 and rounds q to the cache type, so less closely): guards the reference itself.
        const ggml = run(c, x, "ggml");
        expect(kernelStats()).toEqual({ fused: 1, declined: 0 });
        const ggmlErr = relL2(ggml, ref);
        note(`ggml ${c.kvType}${c.softcap ? " soft-cap" : ""}`, ggmlErr);
        expect(ggmlErr).toBeLessThanOrEqual(GGML_TOL[c.kvType]);
    });
});

describe.runIf(devBindings)("declined shapes run ggml's kernel unchanged", () => {
    const declined: Array<[string, Case]> = [
        ["f32 K/V", { ...makeCase(3), kvType: "f32", name: "f32" }],
        ["head dim 20 (not a multiple of 8)", { ...makeCase(4), kvType: "f16", DK: 20, DV: 20, scale: 0.2, name: "d20" }],
        ["head dim 20, decode", { ...makeCase(7), kvType: "f16", DK: 20, DV: 20, nTokens: 1, maskRows: 1, name: "d20-decode" }],
    ];
    it.each(declined)("%s", (_name, c) => {
        const x = inputs(c);
        kernelStatsReset();
        const ggml = run(c, x, "ggml");
        expect(kernelStats()).toEqual({ fused: 0, declined: 0 });
        const fused = run(c, x, "fused");
        expect(kernelStats()).toEqual({ fused: 0, declined: 1 });
        expect(Buffer.from(fused.buffer).equals(Buffer.from(ggml.buffer))).toBe(true);
        // and it is still attention: near the reference
        const ref = attentionReference(c, { q: x.q, k: decodeRows(c.kvType, c.DK, x.k), v: decodeRows(c.kvType, c.DV, x.v), mask: x.mask, sinkValues: x.sinkValues });
        const err = relL2(fused, ref);
        note(`declined ${c.kvType}`, err);
        expect(err).toBeLessThanOrEqual(GGML_TOL[c.kvType]);
    });
});

describe.runIf(devBindings)("computeAttention validates before ggml can assert", () => {
    it("rejects q8_0 with a head dim that is not a multiple of 32", () => {
        const c = { ...makeCase(1), kvType: "q8_0" as const, DK: 80, DV: 80 };
        expect(() => computeAttention({ ...c, ...inputs({ ...c, kvType: "f16" }), mode: "fused" })).toThrow(/multiples of 32/);
    });
    it("rejects ALiBi without a mask", () => {
        const c = { ...makeCase(2), maxBias: 8, maskRows: 0 };
        expect(() => computeAttention({ ...c, ...inputs(c), mode: "fused" })).toThrow(/ALiBi/);
    });
});
