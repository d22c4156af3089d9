// Q4_0, Q4_K, Q5_K, Q6_K and Q8_0 weights x F32 activations as a model computes them on a CPU
// without AMX: Q4_0 and Q4_K weights sit in ggml's CPU_REPACK buffer (q4_0_8x8, q4_K_8x8), Q5_K,
// Q6_K and Q8_0 weights in a plain buffer (ggml's generic matmul, and for Q8_0 llamafile's sgemm
// first); ggml quantizes the activations (Q8_0 / Q8_K; for the repacked types groups of 4 rows
// interleaved, the rows past a multiple of 4 plain), and batches of 2 or more rows (Q8_0: 2-16,
// decode steps; prompts stay on sgemm) run native/kernels/cpu/matmul_q4_0 / _q4_k / _q5_k /
// _q6_k / _q8_0 (AVX-512 VNNI, hooked in by patches 0017 and 0018) where ggml would run its
// own kernels; a single row stays on ggml's. Through a one-op ggml graph (a development
// binding), on ggml's own threads and chunks:
//   - each row equals that row computed alone (ggml's 1-row kernel), bit for bit, so a
//     stream's logits never depend on the rows that share its step; for Q4_0, Q5_K, Q6_K and
//     Q8_0 (sgemm) ours also equals ggml's batch computation. ggml's Q4_K batch kernel does not
//     equal its own 1-row kernel (it rounds differently: about half the outputs differ in the
//     last bits), so with ggml's kernels a Q4_K stream's logits depended on the step; with ours
//     they do not;
//   - both are within the activation quantization's rounding bound of a float64 product of the
//     same weights;
//   - the kernels' call counters prove which kernel ran.
import { describe, expect, it } from "vitest";
import { binding } from "../../src/binding.js";
import { f16BitsToF32, f32ToF16Bits } from "../../src/synth/gguf/quant.js";
import { rng } from "../helpers/attention-ref.js";

type QuantType = "q4_0" | "q4_k" | "q5_k" | "q6_k" | "q8_0";
interface QuantResult {
    out: Float32Array;
    repacked: boolean;
    oursCalls: number;
    seconds: number;
}
interface MatmulDevBinding {
    matmulQuantCompute(spec: { type: QuantType; k: number; n: number; m: number; weights: Uint8Array; x: Float32Array; threads: number; kernel: "ours" | "ggml" }): QuantResult;
    matmulQuantAvailable: Record<QuantType, boolean>;
}
const dev = binding() as unknown as Partial<MatmulDevBinding> & { devBindings?: boolean };
const available = (type: QuantType) => !!dev.devBindings && dev.matmulQuantAvailable?.[type] === true;

/** Per type: values and bytes per block, a random block writer, and the block's weights. */
interface Format {
    values: number;
    bytes: number;
    /** The activations' rounding per value, as a fraction of the quantization block's amax (0.5 / 127, widened for the scale's own rounding). */
    actRounding: number;
    /** Whether ggml repacks the type on x86 (CPU_REPACK) or keeps it as stored. */
    repacked: boolean;
    write(view: DataView, at: number, r: () => number): void;
    weights(view: DataView, at: number, out: Float64Array, o: number): void;
    /** Sets the block at `at` to extreme values: every quant byte to `byte`, the sub-block scales to their largest magnitude. */
    extreme(block: Uint8Array, at: number, byte: number): void;
}

/**
 * A Q4_K or Q5_K block (f16 d and dmin, then 12 bytes of 6-bit scales and mins as llama.cpp's
 * get_scale_min_k4 reads them): write() fills it at random with plausible scales, weights()
 * dequantizes it with quant(sub-block, l) giving each value's q.
 */
function kBlock(bytes: number, quant: (view: DataView, at: number, sb: number, l: number) => number): Pick<Format, "write" | "weights"> {
    return {
        write(view, at, r) {
            view.setUint16(at, f32ToF16Bits(0.0005 + 0.002 * r()), true);
            view.setUint16(at + 2, f32ToF16Bits(0.0002 + 0.001 * r()), true);
            for (let j = 4; j < bytes; j++) view.setUint8(at + j, Math.floor(r() * 256));
        },
        weights(view, at, out, o) {
            const d = f16BitsToF32(view.getUint16(at, true)), dmin = f16BitsToF32(view.getUint16(at + 2, true));
            const sc = (j: number) => view.getUint8(at + 4 + j);
            for (let sb = 0; sb < 8; sb++) {
                const scale = sb < 4 ? sc(sb) & 63 : (sc(sb + 4) & 15) | ((sc(sb - 4) >> 6) << 4);
                const min = sb < 4 ? sc(sb + 4) & 63 : (sc(sb + 4) >> 4) | ((sc(sb) >> 6) << 4);
                for (let l = 0; l < 32; l++) out[o + 32 * sb + l] = d * scale * quant(view, at, sb, l) - dmin * min;
            }
        },
    };
}

const FORMATS: Record<QuantType, Format> = {
    // Q4_0: f16 d, 16 bytes of nibble pairs (weight j low, j + 16 high), weight d x (q - 8).
    // Activations: Q8_0, scale amax / 127 rounded to f16 (<= 0.57 x scale in all).
    q4_0: {
        values: 32,
        bytes: 18,
        actRounding: 0.57 / 127,
        repacked: true,
        write(view, at, r) {
            view.setUint16(at, f32ToF16Bits(0.002 + 0.02 * r()), true);
            for (let j = 0; j < 16; j++) view.setUint8(at + 2 + j, Math.floor(r() * 256));
        },
        weights(view, at, out, o) {
            const d = f16BitsToF32(view.getUint16(at, true));
            for (let j = 0; j < 16; j++) {
                const q = view.getUint8(at + 2 + j);
                out[o + j] = d * ((q & 15) - 8);
                out[o + j + 16] = d * ((q >> 4) - 8);
            }
        },
        extreme(block, at, byte) {
            block.fill(byte, at + 2, at + 18);
        },
    },
    // Q4_K: f16 d and dmin, 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32, 128 bytes
    // of nibbles (byte 32g + l: weight 64g + l low, 64g + 32 + l high), weight d x sc x q - dmin
    // x mn. Activations: Q8_K, one float scale amax / 127 per 256 values.
    q4_k: {
        values: 256,
        bytes: 144,
        actRounding: 0.51 / 127,
        repacked: true,
        ...kBlock(144, (view, at, sb, l) => {
            const byte = view.getUint8(at + 16 + 32 * (sb >> 1) + l);
            return sb & 1 ? byte >> 4 : byte & 15;
        }),
        extreme(block, at, byte) {
            block.fill(byte, at + 16, at + 144);
            // all 6-bit scales and mins at their largest: the 12 scale bytes all ones
            block.fill(0xff, at + 4, at + 16);
        },
    },
    // Q5_K: f16 d and dmin, 12 bytes of 6-bit scales and mins as Q4_K's, 32 bytes of high
    // bits, 128 of nibbles (byte 32j + l: weight 64j + l low, 64j + 32 + l high; their fifth
    // bits are bits 2j and 2j + 1 of high byte l), weight d x sc x q - dmin x mn.
    q5_k: {
        values: 256,
        bytes: 176,
        actRounding: 0.51 / 127,
        repacked: false,
        ...kBlock(176, (view, at, sb, l) => {
            const byte = view.getUint8(at + 48 + 32 * (sb >> 1) + l);
            return (sb & 1 ? byte >> 4 : byte & 15) | (((view.getUint8(at + 16 + l) >> sb) & 1) << 4);
        }),
        extreme(block, at, byte) {
            block.fill(byte, at + 16, at + 176);
            block.fill(0xff, at + 4, at + 16);
        },
    },
    // Q6_K: 128 bytes of low nibbles, 64 of 2-bit pairs, 16 int8 scales (one per 16 weights),
    // f16 d; weight d x sc x (q - 32) with q = low | high << 4, as llama.cpp's
    // dequantize_row_q6_K reads them. Activations: Q8_K.
    q6_k: {
        values: 256,
        bytes: 210,
        actRounding: 0.51 / 127,
        repacked: false,
        write(view, at, r) {
            for (let j = 0; j < 208; j++) view.setUint8(at + j, Math.floor(r() * 256));
            view.setUint16(at + 208, f32ToF16Bits(0.00005 + 0.0002 * r()), true);
        },
        weights(view, at, out, o) {
            const d = f16BitsToF32(view.getUint16(at + 208, true));
            const ql = (i: number) => view.getUint8(at + i), qh = (i: number) => view.getUint8(at + 128 + i);
            const sc = (i: number) => view.getInt8(at + 192 + i);
            for (let j = 0; j < 2; j++) {
                for (let l = 0; l < 32; l++) {
                    const h = qh(32 * j + l);
                    const q = [
                        (ql(64 * j + l) & 15) | ((h & 3) << 4),
                        (ql(64 * j + 32 + l) & 15) | (((h >> 2) & 3) << 4),
                        (ql(64 * j + l) >> 4) | (((h >> 4) & 3) << 4),
                        (ql(64 * j + 32 + l) >> 4) | (((h >> 6) & 3) << 4),
                    ];
                    for (let v = 0; v < 4; v++) {
                        const e = 128 * j + 32 * v + l;
                        out[o + e] = d * sc(e >> 4) * (q[v]! - 32);
                    }
                }
            }
        },
        extreme(block, at, byte) {
            block.fill(byte, at, at + 192);
            block.fill(0x80, at + 192, at + 208); // every scale -128
        },
    },
    // Q8_0: f16 d, 32 int8 quants, weight d x q. Activations: Q8_0.
    q8_0: {
        values: 32,
        bytes: 34,
        actRounding: 0.57 / 127,
        repacked: false,
        write(view, at, r) {
            view.setUint16(at, f32ToF16Bits(0.0002 + 0.002 * r()), true);
            for (let j = 0; j < 32; j++) view.setUint8(at + 2 + j, Math.floor(r() * 256));
        },
        weights(view, at, out, o) {
            const d = f16BitsToF32(view.getUint16(at, true));
            for (let j = 0; j < 32; j++) out[o + j] = d * view.getInt8(at + 2 + j);
        },
        extreme(block, at, byte) {
            // 0xff -> -128 and 0x0f -> 127, the largest magnitudes of each sign; 0x00 -> 1 (all
            // zeros would leave nothing to compare)
            block.fill(byte === 0xff ? 0x80 : byte === 0x0f ? 0x7f : 0x01, at + 2, at + 34);
        },
    },
};

/** Whether ggml hands m rows of this type to our kernel (Q8_0: decode steps of 2-16 rows; prompts stay on llamafile's sgemm). */
const takesOurs = (type: QuantType, m: number) => m >= 2 && (type !== "q8_0" || m <= 16);

interface Case {
    type: QuantType;
    k: number;
    n: number;
    m: number;
    threads: number;
    weights: Uint8Array;
    x: Float32Array;
}

function randomCase(type: QuantType, k: number, n: number, m: number, threads: number, seed: number): Case {
    const f = FORMATS[type];
    const r = rng(seed);
    const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    const blocks = n * (k / f.values);
    const weights = new Uint8Array(blocks * f.bytes);
    const view = new DataView(weights.buffer);
    for (let b = 0; b < blocks; b++) f.write(view, b * f.bytes, r);
    const x = Float32Array.from({ length: m * k }, () => gauss());
    return { type, k, n, m, threads, weights, x };
}

function dequantize(c: Case): Float64Array {
    const f = FORMATS[c.type];
    const w = new Float64Array(c.n * c.k);
    const view = new DataView(c.weights.buffer);
    for (let b = 0; b < c.n * (c.k / f.values); b++) f.weights(view, b * f.bytes, w, b * f.values);
    return w;
}

/**
 * Worst |out - float64 product| over all outputs, as a fraction of that output's bound: ggml
 * rounds each block of activations (32 values for Q8_0, 256 for Q8_K) to 8 bits, |error| <=
 * actRounding x the block's amax per value, so |error| <= sum over blocks of that x sum |w|,
 * plus float32 accumulation (1e-5 of sum |w x|).
 */
function worstBoundFraction(c: Case, out: Float32Array): number {
    const f = FORMATS[c.type];
    const act = c.type === "q4_0" || c.type === "q8_0" ? 32 : 256; // Q8_0 or Q8_K
    const w = dequantize(c);
    let worst = 0;
    for (let i = 0; i < c.m; i++) {
        for (let j = 0; j < c.n; j++) {
            let dot = 0, bound = 0, scale = 0;
            for (let b = 0; b < c.k / act; b++) {
                let amax = 0, wsum = 0;
                for (let t = b * act; t < (b + 1) * act; t++) {
                    const wt = w[j * c.k + t]!, xt = c.x[i * c.k + t]!;
                    dot += wt * xt;
                    scale += Math.abs(wt * xt);
                    amax = Math.max(amax, Math.abs(xt));
                    wsum += Math.abs(wt);
                }
                bound += f.actRounding * amax * wsum;
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

const compute = (c: Case, kernel: "ours" | "ggml", rows?: [number, number]) => {
    const [r0, r1] = rows ?? [0, c.m];
    return dev.matmulQuantCompute!({ type: c.type, k: c.k, n: c.n, m: r1 - r0, weights: c.weights, x: c.x.subarray(r0 * c.k, r1 * c.k), threads: c.threads, kernel });
};

// m: 1..136 rows (8-row tiles, a 4-row tail, 1-3 plain rows past a multiple of 4; 1 row alone
// stays on ggml's kernel; Q8_0 past 16 rows stays on sgemm); n: one group of 8 columns, 16-column
// tiles with an 8-column tail (24, 40, 72, 264), and for Q5_K, Q6_K and Q8_0 (not repacked, ggml's
// chunks of 16 weight rows) any count (Q8_0: groups of 4 columns, then a pair, then one);
// k: 1 to 64 blocks (Q8_0 up to 256); 1-3 threads (ggml's chunks split differently).
const SHAPES: Record<QuantType, [k: number, n: number, m: number, threads: number][]> = {
    q4_0: [
        [32, 8, 4, 1], [96, 24, 5, 2], [256, 40, 8, 2], [512, 16, 12, 3], [2048, 264, 17, 2], [1024, 72, 136, 2], [64, 8, 1, 1],
        [128, 56, 2, 2], [128, 56, 3, 2], [320, 48, 7, 2], [64, 16, 14, 1],
    ],
    q4_k: [
        [256, 8, 4, 1], [512, 24, 5, 2], [256, 40, 8, 2], [768, 16, 12, 3], [2048, 264, 17, 2], [512, 72, 136, 2], [256, 8, 1, 1],
        [256, 56, 2, 2], [512, 56, 3, 2], [1280, 48, 7, 2], [256, 16, 14, 1],
    ],
    q5_k: [
        [256, 8, 4, 1], [512, 23, 5, 2], [256, 40, 9, 2], [768, 17, 12, 3], [2048, 264, 17, 2], [512, 72, 136, 2], [256, 8, 1, 1],
        [256, 56, 2, 2], [512, 31, 3, 2], [1280, 48, 7, 2], [256, 1, 14, 1], [8192, 20, 8, 2],
    ],
    q6_k: [
        [256, 8, 4, 1], [512, 23, 5, 2], [256, 40, 9, 2], [768, 17, 12, 3], [2048, 264, 17, 2], [512, 72, 136, 2], [256, 8, 1, 1],
        [256, 56, 2, 2], [512, 31, 3, 2], [1280, 48, 7, 2], [256, 1, 14, 1], [8192, 20, 8, 2],
    ],
    q8_0: [
        [32, 8, 4, 1], [96, 23, 5, 2], [256, 40, 9, 2], [768, 17, 12, 3], [2048, 264, 16, 2], [512, 72, 136, 2], [64, 8, 1, 1],
        [128, 57, 2, 2], [512, 31, 3, 2], [1280, 46, 7, 2], [256, 1, 14, 1], [8192, 21, 8, 2], [160, 3, 6, 1], [2048, 40, 17, 2],
    ],
};

describe.each(["q4_0", "q4_k", "q5_k", "q6_k", "q8_0"] as const)("%s x activations batch matmul on AVX-512 VNNI (kernels/cpu/matmul_%s)", (type) => {
    it.skipIf(!available(type)).each(SHAPES[type])("k %i, n %i, %i rows, %i threads: ours equals ggml's kernels bit for bit, within the rounding bound of float64", (k, n, m, threads) => {
        const c = randomCase(type, k, n, m, threads, k * 7 + n * 13 + m);
        const ours = compute(c, "ours");
        expect(ours.repacked).toBe(FORMATS[type].repacked);
        // batches of 2+ rows take our kernel; 1 row stays on ggml's 1-row kernel
        if (takesOurs(type, m)) expect(ours.oursCalls).toBeGreaterThan(0);
        else expect(ours.oursCalls).toBe(0);
        const alone = new Float32Array(m * n);
        for (let i = 0; i < m; i++) {
            const row = compute(c, "ggml", [i, i + 1]);
            expect(row.oursCalls).toBe(0);
            alone.set(row.out, i * n);
        }
        const at = firstDifference(ours.out, alone);
        expect(at, `output ${at}: ${ours.out[at]} ours, ${alone[at]} ggml's 1-row kernel`).toBe(-1);
        if (type !== "q4_k") {
            const ggml = compute(c, "ggml");
            expect(ggml.oursCalls).toBe(0);
            const atBatch = firstDifference(ours.out, ggml.out);
            expect(atBatch, `output ${atBatch}: ${ours.out[atBatch]} ours, ${ggml.out[atBatch]} ggml's batch kernel`).toBe(-1);
        }
        expect(worstBoundFraction(c, ours.out)).toBeLessThan(1);
    });

    it.skipIf(!available(type))("each row of a batch equals that row computed alone (ggml's 1-row kernel), bit for bit", () => {
        const shapes =
            type === "q4_0" ? [[256, 40, 8], [2048, 264, 17], [96, 24, 12], [160, 32, 3]]
            : type === "q8_0" ? [[256, 40, 8], [2048, 264, 16], [96, 24, 12], [160, 33, 3], [512, 21, 11]]
            : [[256, 40, 8], [2048, 264, 17], [512, 24, 12], [768, 32, 3]];
        if (type === "q5_k" || type === "q6_k") shapes.push([512, 21, 11]);
        for (const [k, n, m] of shapes as [number, number, number][]) {
            const c = randomCase(type, k, n, m, 2, 99 + m);
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

    it.skipIf(!available(type))("extreme values (every quant 0 or its largest, largest scales, activations quantized to -127/127) agree exactly", () => {
        const f = FORMATS[type];
        const k = 1024, n = 24, m = 8;
        for (const byte of [0x00, 0xff, 0x0f]) {
            const c = randomCase(type, k, n, m, 2, 5);
            for (let b = 0; b < n * (k / f.values); b++) f.extreme(c.weights, b * f.bytes, byte);
            c.x.forEach((_, i) => (c.x[i] = i % 3 === 0 ? -1000 : 1000));
            const ours = compute(c, "ours");
            expect(ours.oursCalls).toBeGreaterThan(0);
            for (let i = 0; i < m; i++) {
                const alone = compute(c, "ggml", [i, i + 1]);
                const row = ours.out.subarray(i * n, (i + 1) * n);
                const at = firstDifference(row, alone.out);
                expect(at, `byte ${byte}: row ${i}, output ${at}: ${row[at]} ours, ${alone.out[at]} ggml's 1-row kernel`).toBe(-1);
            }
            expect(worstBoundFraction(c, ours.out)).toBeLessThan(1);
        }
    });
});
