// F16 weights times F32 activations as a model computes them (patch 0015): on a CPU with AMX the
// weights sit in ggml's AMX buffer and our kernels take every matmul: AMX-BF16 tiles from 13
// rows (each activation split into two BF16 halves: ~16 of its 24 bits kept), F32 FMAs on the
// F16 weights below (exact products), where ggml's own F16 matmul rounds every activation to
// F16 (11 bits). Checked here against a float64 product of the same F16 weights, through a
// one-op ggml graph (a development binding) with the weights in the buffer a model load uses.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { binding } from "../../src/binding.js";
import { f16BitsToF32, f32ToF16Bits } from "../../src/synth/gguf/quant.js";
import { rng } from "../helpers/attention-ref.js";

interface MatmulDevBinding {
    matmulF16Compute(spec: { k: number; n: number; m: number; weights: Uint16Array; x: Float32Array; threads: number; plainBuffer?: boolean }): { out: Float32Array; amx: boolean; seconds: number };
}
const dev = binding() as unknown as Partial<MatmulDevBinding> & { devBindings?: boolean };
const hasAmxBf16 = /\bamx_bf16\b/.test(readFileSync("/proc/cpuinfo", "utf8"));
// whether ggml offers its AMX buffer here (the CPU lists AMX, this build has it, and patch 0006's
// probe found the tile instructions working)
const amxActive = !!dev.devBindings && hasAmxBf16 &&
    dev.matmulF16Compute!({ k: 32, n: 32, m: 1, weights: new Uint16Array(32 * 32), x: new Float32Array(32), threads: 1 }).amx;

function randomCase(k: number, n: number, m: number, seed: number) {
    const r = rng(seed);
    const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    const weights = Uint16Array.from({ length: n * k }, () => f32ToF16Bits(0.05 * gauss()));
    const x = Float32Array.from({ length: m * k }, () => gauss());
    return { k, n, m, weights, x };
}

/** Worst |ours - float64| / sum |w x| over all outputs: the error relative to the dot product's own scale. */
function worstError(c: ReturnType<typeof randomCase>, out: Float32Array): number {
    const w = Float64Array.from(c.weights, f16BitsToF32);
    let worst = 0;
    for (let i = 0; i < c.m; i++) {
        for (let j = 0; j < c.n; j++) {
            let dot = 0, scale = 0;
            for (let t = 0; t < c.k; t++) {
                const p = w[j * c.k + t]! * c.x[i * c.k + t]!;
                dot += p;
                scale += Math.abs(p);
            }
            worst = Math.max(worst, Math.abs(out[i * c.n + j]! - dot) / scale);
        }
    }
    return worst;
}

describe.skipIf(!amxActive)("F16 matmul on AMX-BF16 (patch 0015)", () => {
    const compute = (c: ReturnType<typeof randomCase>, threads: number) => dev.matmulF16Compute!({ ...c, threads });

    // rows: 1, 2, 12 (F32 FMAs), 13, 31, 32, 33, 70 (tiles: partial 32-row blocks, two 16-row
    // tiles); k = 800 crosses the kernel's 768-wide K chunk; n = 96 is 3 column blocks.
    it("equals a float64 product of the F16 weights within 1e-5 of the dot's scale, for every path and edge (ggml's F16 matmul: ~5e-5)", () => {
        let worst = 0;
        for (const [k, n] of [[64, 32], [800, 96]] as const) {
            for (const m of [1, 2, 12, 13, 31, 32, 33, 70]) {
                const c = randomCase(k, n, m, k * 1000 + m);
                const r = compute(c, 2);
                expect(r.amx).toBe(true);
                expect(r.out.every(Number.isFinite), `k ${k} n ${n} m ${m}: every output written`).toBe(true);
                const e = worstError(c, r.out);
                worst = Math.max(worst, e);
                expect(e, `k ${k} n ${n} m ${m}`).toBeLessThan(1e-5);
            }
        }
        // the bound means something: ggml's own F16 matmul (weights in a plain CPU buffer) misses it
        const c = randomCase(800, 96, 33, 800 * 1000 + 33);
        const plain = dev.matmulF16Compute!({ ...c, threads: 2, plainBuffer: true });
        expect(plain.amx).toBe(false);
        const ggmlError = worstError(c, plain.out);
        expect(ggmlError).toBeGreaterThan(1e-5);
        console.log(`F16 matmul on AMX-BF16: worst error ${worst.toExponential(2)} of the dot's scale; ggml's own: ${ggmlError.toExponential(2)}`);
    });

    it("on the tiles, a row's result does not depend on the other rows, the row count (13+) or the threads: bit-identical", () => {
        const k = 800, n = 64;
        const big = randomCase(k, n, 70, 7);
        const all = compute(big, 2).out;
        for (const [from, rows, threads] of [[0, 13, 1], [10, 33, 2], [40, 30, 1]] as const) {
            const part = { ...big, m: rows, x: big.x.slice(from * k, (from + rows) * k) };
            const out = compute(part, threads).out;
            expect(out, `rows ${from}..${from + rows - 1}, ${threads} thread(s)`).toEqual(all.slice(from * n, (from + rows) * n));
        }
        // the last 13 rows (a partial block) of the 70-row matmul, against the same rows alone
        const tail = { ...big, m: 13, x: big.x.slice(57 * k) };
        expect(compute(tail, 2).out).toEqual(all.slice(57 * n));
    });

    it("below 13 rows (decode steps) the F32 FMAs are within 1e-6 of float64, and a row's result does not depend on the others", () => {
        const k = 800, n = 64;
        const c = randomCase(k, n, 12, 9);
        const all = compute(c, 2);
        expect(worstError(c, all.out)).toBeLessThan(1e-6);
        for (const [from, rows] of [[0, 1], [5, 4], [11, 1]] as const) {
            const out = compute({ ...c, m: rows, x: c.x.slice(from * k, (from + rows) * k) }, 1).out;
            expect(out, `rows ${from}..${from + rows - 1}`).toEqual(all.out.slice(from * n, (from + rows) * n));
        }
    });
});
