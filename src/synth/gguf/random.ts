// Fast deterministic random weights. Billions of values must come out in seconds, so:
// xoshiro128** (32-bit ops only, period 2^128-1) gives 32 random bits per step, and each
// step yields two normal samples by looking up 16-bit halves in a 65536-entry table of
// the inverse normal CDF at (i+0.5)/65536. Tails are cut at about ±4.2σ, which does not
// matter for random weights. Same seed, same values, on every platform (only + * / and
// Math.log/sqrt, which V8 computes with fdlibm ports, go into the table).

/** splitmix32 step: spreads a seed into well-mixed state words. */
function splitmix32(state: { s: number }): number {
    state.s = (state.s + 0x9e3779b9) | 0;
    let z = state.s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
}

/** FNV-1a of a string: lets each tensor have its own stream, independent of write order and type. */
export function hashString(s: string): number {
    let h = 0x811c9dc5;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    return h >>> 0;
}

export class Xoshiro128 {
    private s0: number;
    private s1: number;
    private s2: number;
    private s3: number;
    /** seed: any safe integer; stream: a second 32-bit key (e.g. a tensor name hash). */
    constructor(seed: number, stream = 0) {
        // Mix the seed's low word first, then fold in its high word and the stream key:
        // imul by an odd constant is a bijection, so distinct streams of one seed never collide.
        const mix = { s: seed | 0 };
        mix.s = (splitmix32(mix) ^ Math.imul(Math.floor(seed / 2 ** 32), 0x9e3779b1) ^ Math.imul(stream, 0x27d4eb2f)) | 0;
        this.s0 = splitmix32(mix);
        this.s1 = splitmix32(mix);
        this.s2 = splitmix32(mix);
        this.s3 = splitmix32(mix);
        if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the all-zero state is a fixed point
    }

    next(): number {
        const r = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
        const t = this.s1 << 9;
        this.s2 ^= this.s0;
        this.s3 ^= this.s1;
        this.s1 ^= this.s2;
        this.s0 ^= this.s3;
        this.s2 ^= t;
        this.s3 = rotl(this.s3, 11);
        return r;
    }

    /** Fills dst (even length) with table[16 random bits] per element. The loop keeps the state in locals for speed. */
    fillFromTable<T extends Float32Array | Uint16Array>(dst: T, table: T): void {
        let s0 = this.s0, s1 = this.s1, s2 = this.s2, s3 = this.s3;
        const n = dst.length & ~1;
        for (let i = 0; i < n; i += 2) {
            const r = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
            const t = s1 << 9;
            s2 ^= s0;
            s3 ^= s1;
            s1 ^= s2;
            s0 ^= s3;
            s2 ^= t;
            s3 = rotl(s3, 11);
            dst[i] = table[r & 0xffff]!;
            dst[i + 1] = table[r >>> 16]!;
        }
        if (n < dst.length) dst[n] = table[this.next() & 0xffff]!;
        this.s0 = s0; this.s1 = s1; this.s2 = s2; this.s3 = s3;
    }
}

function rotl(x: number, k: number): number {
    return (x << k) | (x >>> (32 - k));
}

/** Acklam's rational approximation of the inverse normal CDF (relative error < 1.2e-9). */
export function inverseNormalCdf(p: number): number {
    const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
    const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
    const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    const low = 0.02425;
    if (p < low || p > 1 - low) {
        const q = Math.sqrt(-2 * Math.log(p < low ? p : 1 - p));
        const x = (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
        return p < low ? x : -x;
    }
    const q = p - 0.5;
    const r = q * q;
    return ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) /
        (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
}

let unitNormal: Float32Array | undefined;

/** 65536 standard normal quantiles, scaled by std (built once, then one multiply per entry). */
export function normalTable(std: number): Float32Array {
    if (!unitNormal) {
        unitNormal = new Float32Array(65536);
        for (let i = 0; i < 65536; i++) unitNormal[i] = inverseNormalCdf((i + 0.5) / 65536);
    }
    const t = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) t[i] = unitNormal[i]! * std;
    return t;
}
