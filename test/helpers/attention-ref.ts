// Test data and a float64 reference for one FLASH_ATTN_EXT op, independent of the addon:
// f16 and q8_0 cache rows are generated as raw bits and decoded exactly here.
import type { AttentionKvType, AttentionOpShape } from "../../src/attention.js";
import { kvRowBytes } from "../../src/attention.js";

/** Small deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

export function halfToNumber(h: number): number {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0x1f) return m ? NaN : sign * Infinity;
    if (e === 0) return sign * m * 2 ** -24;
    return sign * (1 + m / 1024) * 2 ** (e - 15);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** Nearest f16 (ties to even); exact for the integers and ±inf the masks use. */
export function numberToHalf(x: number): number {
    f32[0] = x;
    const b = u32[0]!;
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    let mant = b & 0x7fffff;
    if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
    const e = exp - 127 + 15;
    if (e >= 0x1f) return sign | 0x7c00;
    if (e <= 0) {
        if (e < -10) return sign;
        mant |= 0x800000;
        const shift = 14 - e;
        let h = mant >>> shift;
        const rem = mant & ((1 << shift) - 1);
        const half = 1 << (shift - 1);
        if (rem > half || (rem === half && h & 1)) h++;
        return sign | h;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
    return sign | h;
}

export const HALF_NEG_INF = 0xfc00;

/** Random cache rows as raw bytes; values in ±[1/64, 2) for f16, |d| ≤ 0.03 for q8_0. */
export function randomRows(type: AttentionKvType, n: number, rows: number, rand: () => number): Uint8Array {
    const rb = kvRowBytes(type, n);
    const out = new Uint8Array(rb * rows);
    const dv = new DataView(out.buffer);
    for (let r = 0; r < rows; r++) {
        const base = r * rb;
        if (type === "f16") {
            for (let i = 0; i < n; i++) {
                const h = rand() < 0.02 ? 0 : ((rand() < 0.5 ? 0x8000 : 0) | ((9 + Math.floor(rand() * 7)) << 10) | Math.floor(rand() * 1024));
                dv.setUint16(base + 2 * i, h, true);
            }
        } else if (type === "q8_0") {
            for (let b = 0; b < n / 32; b++) {
                dv.setUint16(base + 34 * b, numberToHalf(0.002 + 0.028 * rand()), true);
                for (let i = 0; i < 32; i++) dv.setInt8(base + 34 * b + 2 + i, Math.floor(rand() * 255) - 127);
            }
        } else {
            for (let i = 0; i < n; i++) dv.setFloat32(base + 4 * i, 2 * rand() - 1, true);
        }
    }
    return out;
}

/** Exact values of cache rows. */
export function decodeRows(type: AttentionKvType, n: number, bytes: Uint8Array): Float64Array {
    const rb = kvRowBytes(type, n);
    const rows = bytes.length / rb;
    const out = new Float64Array(rows * n);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let r = 0; r < rows; r++) {
        const base = r * rb;
        for (let i = 0; i < n; i++) {
            if (type === "f16") out[r * n + i] = halfToNumber(dv.getUint16(base + 2 * i, true));
            else if (type === "f32") out[r * n + i] = dv.getFloat32(base + 4 * i, true);
            else {
                const b = Math.floor(i / 32);
                out[r * n + i] = halfToNumber(dv.getUint16(base + 34 * b, true)) * dv.getInt8(base + 34 * b + 2 + (i % 32));
            }
        }
    }
    return out;
}

export interface RefInputs {
    q: Float32Array;
    k: Float64Array; // decoded [DK, nHeadKv, nKv, nStream]
    v: Float64Array;
    mask?: Uint16Array;
    sinkValues?: Float32Array;
}

/** ALiBi slope of head h, as ggml defines it. */
function slope(maxBias: number, nHead: number, h: number): number {
    if (maxBias <= 0) return 1;
    const nHeadLog2 = 2 ** Math.floor(Math.log2(nHead));
    const m0 = 2 ** (-maxBias / nHeadLog2);
    const m1 = 2 ** (-maxBias / 2 / nHeadLog2);
    return h < nHeadLog2 ? m0 ** (h + 1) : m1 ** (2 * (h - nHeadLog2) + 1);
}

/**
 * out[s][t][h][:] = Σ_j softmax_j(x_j) v_j with x_j = cap·tanh(scale·q·k_j/cap) (or scale·q·k_j)
 * + slope_h·mask[s][h % maskHeads][t][j]; sinks add e^{sink_h} to the denominator; rows with
 * every key masked are 0. Two passes in float64.
 */
export function attentionReference(s: AttentionOpShape, x: RefInputs): Float64Array {
    const { DK, DV, nTokens, nHead, nHeadKv, nKv, nStream } = s;
    const G = nHead / nHeadKv;
    const out = new Float64Array(DV * nHead * nTokens * nStream);
    const sc = new Float64Array(nKv);
    const acc = new Float64Array(DV);
    for (let st = 0; st < nStream; st++) {
        for (let t = 0; t < nTokens; t++) {
            for (let h = 0; h < nHead; h++) {
                const hk = Math.floor(h / G);
                const qo = ((st * nTokens + t) * nHead + h) * DK;
                const sl = slope(s.maxBias, nHead, h);
                const mo = s.maskRows > 0 ? ((st * s.maskHeads + (h % s.maskHeads)) * s.maskRows + t) * nKv : -1;
                let mx = -Infinity;
                for (let j = 0; j < nKv; j++) {
                    const mv = mo >= 0 ? sl * halfToNumber(x.mask![mo + j]!) : 0;
                    if (mv === -Infinity) {
                        sc[j] = -Infinity;
                        continue;
                    }
                    const ko = ((st * nKv + j) * nHeadKv + hk) * DK;
                    let dot = 0;
                    for (let d = 0; d < DK; d++) dot += x.q[qo + d]! * x.k[ko + d]!;
                    dot *= s.scale;
                    if (s.softcap !== 0) dot = s.softcap * Math.tanh(dot / s.softcap);
                    sc[j] = dot + mv;
                    if (sc[j]! > mx) mx = sc[j]!;
                }
                const oo = ((st * nTokens + t) * nHead + h) * DV;
                if (mx === -Infinity) continue; // fully masked: 0
                const sink = s.sinks ? x.sinkValues![h]! : -Infinity;
                const m = Math.max(mx, sink);
                let l = s.sinks ? Math.exp(sink - m) : 0;
                acc.fill(0);
                for (let j = 0; j < nKv; j++) {
                    if (sc[j] === -Infinity) continue;
                    const w = Math.exp(sc[j]! - m);
                    l += w;
                    const vo = ((st * nKv + j) * nHeadKv + hk) * DV;
                    for (let d = 0; d < DV; d++) acc[d] += w * x.v[vo + d]!;
                }
                for (let d = 0; d < DV; d++) out[oo + d] = acc[d]! / l;
            }
        }
    }
    return out;
}

/** ‖a − b‖ / ‖b‖, NaN if any element of a is NaN. */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
    let num = 0;
    let den = 0;
    for (let i = 0; i < b.length; i++) {
        const x = a[i]!;
        if (Number.isNaN(x)) return NaN;
        num += (x - b[i]!) ** 2;
        den += b[i]! ** 2;
    }
    return den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
}
