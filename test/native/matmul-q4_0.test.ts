// Q4_0 weights x F32 activations as a model computes them on a CPU without AMX: the weights
// sit in ggml's CPU_REPACK buffer (q4_0_8x8), ggml quantizes the activations to Q8_0 (groups
// of 4 rows interleaved, the rows past a multiple of 4 plain), and batches of 2 or more rows
// run native/kernels/cpu/matmul_q4_0 (AVX-512 VNNI, hooked in by patch 0017) where ggml would
// run its own kernels; a single row stays on ggml's. Through a one-op ggml graph (a development
// binding), on ggml's own threads and column chunks:
//   - ours equals ggml's kernels bit for bit, and each row computed alone (ggml's 1-row
//     kernel), so a stream's logits never depend on the rows that share its step;
//   - both are within the Q8_0 rounding bound of a float64 product of the same Q4_0 weights;
//   - the kernel's call counter proves which kernel ran.
import { describe, expect, it } from "vitest";
import { binding } from "../../src/binding.js";
import { f16BitsToF32, f32ToF16Bits } from "../../src/synth/gguf/quant.js";
import { rng } from "../helpers/attention-ref.js";

interface Q4_0Result {
    out: Float32Array;
    repacked: boolean;
    oursCalls: number;
    seconds: number;
}
interface MatmulDevBinding {
    matmulQ4_0Compute(spec: { k: number; n: number; m: number; weights: Uint8Array; x: Float32Array; threads: number; kernel: "ours" | "ggml" }): Q4_0Result;
    matmulQ4_0Available: boolean;
}
const dev = binding() as unknown as Partial<MatmulDevBinding> & { devBindings?: boolean };
const available = !!dev.devBindings && dev.matmulQ4_0Available === true;

const BLOCK = 18; // f16 scale + 16 bytes of nibble pairs

interface Case {
    k: number;
    n: number;
    m: number;
    threads: number;
    weights: Uint8Array;
    x: Float32Array;
}

function randomCase(k: number, n: number, m: number, threads: number, seed: number): Case {
    const r = rng(seed);
    const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    const weights = new Uint8Array(n * (k / 32) * BLOCK);
    const view = new DataView(weights.buffer);
    for (let b = 0; b < n * (k / 32); b++) {
        view.setUint16(b * BLOCK, f32ToF16Bits(0.002 + 0.02 * r()), true);
        for (let j = 0; j < 16; j++) weights[b * BLOCK + 2 + j] = Math.floor(r() * 256);
    }
    const x = Float32Array.from({ length: m * k }, () => gauss());
    return { k, n, m, threads, weights, x };
}

/** Weight (column j, input t) of the Q4_0 rows: d x (nibble - 8), low nibbles first. */
function dequantize(c: Case): Float64Array {
    const w = new Float64Array(c.n * c.k);
    const view = new DataView(c.weights.buffer);
    for (let b = 0; b < c.n * (c.k / 32); b++) {
        const d = f16BitsToF32(view.getUint16(b * BLOCK, true));
        for (let j = 0; j < 16; j++) {
            const q = c.weights[b * BLOCK + 2 + j]!;
            w[b * 32 + j] = d * ((q & 15) - 8);
            w[b * 32 + j + 16] = d * ((q >> 4) - 8);
        }
    }
    return w;
}

/**
 * Worst |out - float64 product| over all outputs, as a fraction of that output's bound: ggml
 * rounds each 32-value block of activations to Q8_0 (|error| <= scale / 2, the scale amax/127
 * itself rounded to f16: <= 0.57 x scale in all), so |error| <= sum over blocks of
 * 0.57 x amax / 127 x sum |w|, plus float32 accumulation (1e-5 of sum |w x|).
 */
function worstBoundFraction(c: Case, out: Float32Array): number {
    const w = dequantize(c);
    let worst = 0;
    for (let i = 0; i < c.m; i++) {
        for (let j = 0; j < c.n; j++) {
            let dot = 0, bound = 0, scale = 0;
            for (let b = 0; b < c.k / 32; b++) {
                let amax = 0, wsum = 0;
                for (let t = b * 32; t < b * 32 + 32; t++) {
                    const wt = w[j * c.k + t]!, xt = c.x[i * c.k + t]!;
                    dot += wt * xt;
                    scale += Math.abs(wt * xt);
                    amax = Math.max(amax, Math.abs(xt));
                    wsum += Math.abs(wt);
                }
                bound += (0.57 * amax / 127) * wsum;
            }
            worst = Math.max(worst, Math.abs(out[i * c.n + j]! - dot) / (bound + 1e-5 * scale));
        }
    }
    return worst;
}

/** Index of the first output whose bits differ (NaN never equals), or -1. */
function firstDifference(a: Float32Array, b: Float32Array): number {
    if (a.length !== b.length) return 0;
    for (let i = 0; i < a.length; i++) if (!(a[i] === b[i]) || Object.is(a[i], -0) !== Object.is(b[i], -0)) return i;
    return -1;
}

describe.skipIf(!available)("Q4_0 x Q8_0 batch matmul on AVX-512 VNNI (kernels/cpu/matmul_q4_0, patch 0017)", () => {
    const compute = (c: Case, kernel: "ours" | "ggml", rows?: [number, number]) => {
        const [r0, r1] = rows ?? [0, c.m];
        return dev.matmulQ4_0Compute!({ k: c.k, n: c.n, m: r1 - r0, weights: c.weights, x: c.x.subarray(r0 * c.k, r1 * c.k), threads: c.threads, kernel });
    };

    // m: 1..136 rows (8-row tiles, a 4-row tail, 1-3 plain rows past a multiple of 4; 1 row
    // alone stays on ggml's kernel); n: one group of 8 columns, 16-column tiles with an
    // 8-column tail (24, 40, 72, 264); k: 1 to 64 blocks of 32; 1-3 threads (ggml's column
    // chunks split differently).
    const SHAPES: [k: number, n: number, m: number, threads: number][] = [
        [32, 8, 4, 1], [96, 24, 5, 2], [256, 40, 8, 2], [512, 16, 12, 3], [2048, 264, 17, 2], [1024, 72, 136, 2], [64, 8, 1, 1],
        [128, 56, 2, 2], [128, 56, 3, 2], [320, 48, 7, 2], [64, 16, 14, 1],
    ];

    it.each(SHAPES)("k %i, n %i, %i rows, %i threads: ours equals ggml's kernel bit for bit, within the Q8_0 bound of float64", (k, n, m, threads) => {
        const c = randomCase(k, n, m, threads, k * 7 + n * 13 + m);
        const ours = compute(c, "ours"), ggml = compute(c, "ggml");
        expect(ours.repacked).toBe(true);
        // batches of 2+ rows take our kernel; 1 row stays on ggml's 1-row kernel
        if (m >= 2) expect(ours.oursCalls).toBeGreaterThan(0);
        else expect(ours.oursCalls).toBe(0);
        expect(ggml.oursCalls).toBe(0);
        const at = firstDifference(ours.out, ggml.out);
        expect(at, `output ${at}: ${ours.out[at]} ours, ${ggml.out[at]} ggml`).toBe(-1);
        expect(worstBoundFraction(c, ours.out)).toBeLessThan(1);
    });

    it("each row of a batch equals that row computed alone (ggml's 1-row kernel), bit for bit", () => {
        for (const [k, n, m] of [[256, 40, 8], [2048, 264, 17], [96, 24, 12], [160, 32, 3]] as const) {
            const c = randomCase(k, n, m, 2, 99 + m);
            const batch = compute(c, "ours");
            expect(batch.oursCalls).toBeGreaterThan(0);
            for (let i = 0; i < m; i++) {
                const alone = compute(c, "ours", [i, i + 1]);
                expect(alone.oursCalls).toBe(0);
                const row = batch.out.subarray(i * n, (i + 1) * n);
                const at = firstDifference(row, alone.out);
                expect(at, `k ${k}, n ${n}: row ${i}, column ${at}: ${row[at]} in the batch, ${alone.out[at]} alone`).toBe(-1);
            }
        }
    });

    it("extreme values (every nibble 0 or 15, activations quantized to -127/127) agree exactly", () => {
        const k = 1024, n = 24, m = 8;
        for (const byte of [0x00, 0xff, 0x0f]) {
            const c = randomCase(k, n, m, 2, 5);
            for (let b = 0; b < n * (k / 32); b++) c.weights.fill(byte, b * BLOCK + 2, (b + 1) * BLOCK);
            c.x.forEach((_, i) => (c.x[i] = i % 3 === 0 ? -1000 : 1000));
            const ours = compute(c, "ours"), ggml = compute(c, "ggml");
            expect(ours.oursCalls).toBeGreaterThan(0);
            const at = firstDifference(ours.out, ggml.out);
            expect(at, `byte ${byte}: output ${at}: ${ours.out[at]} ours, ${ggml.out[at]} ggml`).toBe(-1);
            expect(worstBoundFraction(c, ours.out)).toBeLessThan(1);
        }
    });
});
