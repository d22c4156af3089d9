// fp16 conversion and Q8_0/Q4_0 block quantization, bit-exact with ggml's reference
// code in the pinned tree (ggml_compute_fp32_to_fp16 in ggml-impl.h,
// quantize_row_q8_0_ref / quantize_row_q4_0_ref in ggml-quants.c). C does these steps
// in float32; here every float32 operation is a float64 operation followed by
// Math.fround, which gives the same bits for + - * / (53 >= 2*24+2, so the double
// rounding is harmless).

export const QK8_0 = 32;
export const QK4_0 = 32;
/** Bytes per block: fp16 scale + 32 int8. */
export const Q8_0_BLOCK_BYTES = 34;
/** Bytes per block: fp16 scale + 16 bytes of nibbles. */
export const Q4_0_BLOCK_BYTES = 18;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const fround = Math.fround;
const SCALE_TO_INF = 2 ** 112;
const SCALE_TO_ZERO = 2 ** -110;

/** ggml_compute_fp32_to_fp16: round to nearest even, overflow to inf, NaN to 0x7e00. */
export function f32ToF16Bits(x: number): number {
    f32[0] = x;
    const w = u32[0]!;
    let base = fround(fround(Math.abs(f32[0]!) * SCALE_TO_INF) * SCALE_TO_ZERO);
    const shl1w = (w << 1) >>> 0;
    const sign = w & 0x80000000;
    let bias = shl1w & 0xff000000;
    if (bias >>> 0 < 0x71000000) bias = 0x71000000;
    u32[0] = ((bias >>> 1) + 0x07800000) >>> 0;
    base = fround(f32[0]! + base);
    f32[0] = base;
    const bits = u32[0]!;
    const expBits = (bits >>> 13) & 0x7c00;
    const mantissaBits = bits & 0x0fff;
    const nonsign = expBits + mantissaBits;
    return (sign >>> 16) | (shl1w > 0xff000000 ? 0x7e00 : nonsign);
}

/** IEEE half to float (exact; fp16 values are all representable as float32). */
export function f16BitsToF32(h: number): number {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) return sign * mant * 2 ** -24;
    if (exp === 31) return mant ? NaN : sign * Infinity;
    return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** Converts n floats to fp16 bit patterns. */
export function f32ToF16Array(src: Float32Array, dst: Uint16Array): void {
    for (let i = 0; i < src.length; i++) dst[i] = f32ToF16Bits(src[i]!);
}

function checkBlocks(n: number, qk: number, what: string): void {
    if (n % qk !== 0) throw new RangeError(`${what}: ${n} values is not a multiple of the block size ${qk}`);
}

/**
 * quantize_row_q8_0_ref: per block of 32, d = amax/127 stored as fp16, q = roundf(x/d)
 * (computed as x * (1/d), as ggml does). Writes n/32*34 bytes at dst[offset].
 */
export function quantizeQ8_0(src: Float32Array, dst: Uint8Array, offset = 0): void {
    checkBlocks(src.length, QK8_0, "Q8_0");
    const nb = src.length / QK8_0;
    for (let b = 0; b < nb; b++) {
        const base = b * QK8_0;
        let amax = 0;
        for (let j = 0; j < QK8_0; j++) amax = Math.max(amax, Math.abs(src[base + j]!)); // branch-free
        const d = fround(amax / 127);
        const id = d !== 0 ? fround(1 / d) : 0;
        const h = f32ToF16Bits(d);
        let o = offset + b * Q8_0_BLOCK_BYTES;
        dst[o++] = h & 0xff;
        dst[o++] = h >>> 8;
        for (let j = 0; j < QK8_0; j++) {
            const x0 = fround(src[base + j]! * id);
            // roundf (half away from zero) as trunc(x0 ± 0.5): exact, since a float32 plus 0.5
            // is exact in float64; |0 truncates, and the Uint8Array store keeps the int8's low byte.
            // The sign is picked arithmetically: a branch on random signs mispredicts half the time (5x slower).
            dst[o++] = (x0 + (0.5 - +(x0 < 0))) | 0;
        }
    }
}

/**
 * quantize_row_q4_0_ref: per block of 32, max = the first value of largest magnitude
 * (sign kept), d = max/-8 stored as fp16, q = min(15, trunc(x/d + 8.5)); byte j holds
 * value j in its low nibble and value j+16 in its high nibble.
 */
export function quantizeQ4_0(src: Float32Array, dst: Uint8Array, offset = 0): void {
    checkBlocks(src.length, QK4_0, "Q4_0");
    const nb = src.length / QK4_0;
    for (let b = 0; b < nb; b++) {
        const base = b * QK4_0;
        let amax = 0;
        let max = 0;
        for (let j = 0; j < QK4_0; j++) {
            const v = src[base + j]!;
            const a = Math.abs(v);
            if (amax < a) {
                amax = a;
                max = v;
            }
        }
        const d = fround(max / -8);
        const id = d !== 0 ? fround(1 / d) : 0;
        const h = f32ToF16Bits(d);
        let o = offset + b * Q4_0_BLOCK_BYTES;
        dst[o++] = h & 0xff;
        dst[o++] = h >>> 8;
        for (let j = 0; j < QK4_0 / 2; j++) {
            // (int8_t)(x + 8.5f) truncates toward zero; x*id lies in [-8, 8], so the sum is positive.
            let lo = fround(fround(src[base + j]! * id) + 8.5) | 0;
            let hi = fround(fround(src[base + QK4_0 / 2 + j]! * id) + 8.5) | 0;
            if (lo > 15) lo = 15;
            if (hi > 15) hi = 15;
            dst[o++] = lo | (hi << 4);
        }
    }
}

/** dequantize_row_q8_0: x = d * q. */
export function dequantizeQ8_0(src: Uint8Array, n: number): Float32Array {
    checkBlocks(n, QK8_0, "Q8_0");
    const out = new Float32Array(n);
    for (let b = 0; b < n / QK8_0; b++) {
        const o = b * Q8_0_BLOCK_BYTES;
        const d = f16BitsToF32(src[o]! | (src[o + 1]! << 8));
        for (let j = 0; j < QK8_0; j++) out[b * QK8_0 + j] = d * ((src[o + 2 + j]! << 24) >> 24);
    }
    return out;
}

/** dequantize_row_q4_0: x = d * (nibble - 8). */
export function dequantizeQ4_0(src: Uint8Array, n: number): Float32Array {
    checkBlocks(n, QK4_0, "Q4_0");
    const out = new Float32Array(n);
    for (let b = 0; b < n / QK4_0; b++) {
        const o = b * Q4_0_BLOCK_BYTES;
        const d = f16BitsToF32(src[o]! | (src[o + 1]! << 8));
        for (let j = 0; j < QK4_0 / 2; j++) {
            const byte = src[o + 2 + j]!;
            out[b * QK4_0 + j] = d * ((byte & 0x0f) - 8);
            out[b * QK4_0 + j + QK4_0 / 2] = d * ((byte >>> 4) - 8);
        }
    }
    return out;
}

// --- K-quants --------------------------------------------------------------------------
// Q4_K, Q5_K and Q6_K blocks for synthetic models (llama-quantize's Q4_K_M and Q5_K_M mixes,
// see synth.ts).
// Not ggml's reference quantizers, which search each sub-block's scale (make_qkx2_quants,
// make_qx_quants): these take each sub-block's range as it is. The blocks are valid for every
// reader (the layouts are ggml-common.h's); without that search the values may carry more
// rounding error than llama-quantize's (not compared here), and the quant tests bound it.

export const QK_K = 256;
/** Bytes per block: fp16 d and dmin, 12 bytes of 6-bit scales and mins, 128 of nibbles. */
export const Q4_K_BLOCK_BYTES = 144;
/** Bytes per block: fp16 d and dmin, 12 bytes of 6-bit scales and mins, 32 of fifth bits, 128 of nibbles. */
export const Q5_K_BLOCK_BYTES = 176;
/** Bytes per block: 128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales, fp16 d. */
export const Q6_K_BLOCK_BYTES = 210;

/** Round half away from zero. */
const roundAway = (x: number): number => (x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5));
const clamp = (x: number, lo: number, hi: number): number => (x < lo ? lo : x > hi ? hi : x);

/** quantizeKBlock's per-sub-block values, reused (a 1B model has millions of blocks). */
const kScratch = { scale: new Float64Array(8), min: new Float64Array(8), sc: new Uint8Array(8), mn: new Uint8Array(8) };

/**
 * Q4_K and Q5_K: 8 sub-blocks of 32, weight = d x sc x q - dmin x m, q in 0..15 (Q4_K) or
 * 0..31 (Q5_K), sc and m 6-bit. Each sub-block spans [min(0, lo), hi]: its scale (hi - min) /
 * qmax, its offset -min; d and dmin are the largest of those over 63. Writes the fp16 d and
 * dmin and the 12 bytes of scales and mins (packed as llama.cpp's get_scale_min_k4 reads
 * them) at o, and each value's q into q.
 */
function quantizeKBlock(src: Float32Array, base: number, qmax: number, dst: Uint8Array, o: number, q: Uint8Array): void {
    const { scale, min, sc, mn } = kScratch;
    let maxScale = 0, maxMin = 0;
    for (let s = 0; s < 8; s++) {
        let lo = 0, hi = -Infinity;
        for (let l = 0; l < 32; l++) {
            const v = src[base + 32 * s + l]!;
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        scale[s] = (hi - lo) / qmax;
        min[s] = -lo;
        maxScale = Math.max(maxScale, scale[s]!);
        maxMin = Math.max(maxMin, min[s]!);
    }
    const dBits = f32ToF16Bits(maxScale / 63), dminBits = f32ToF16Bits(maxMin / 63);
    const d = f16BitsToF32(dBits), dmin = f16BitsToF32(dminBits);
    for (let s = 0; s < 8; s++) {
        sc[s] = d > 0 ? clamp(roundAway(scale[s]! / d), 0, 63) : 0;
        mn[s] = dmin > 0 ? clamp(roundAway(min[s]! / dmin), 0, 63) : 0;
    }
    dst[o] = dBits & 0xff;
    dst[o + 1] = dBits >>> 8;
    dst[o + 2] = dminBits & 0xff;
    dst[o + 3] = dminBits >>> 8;
    for (let j = 0; j < 4; j++) {
        dst[o + 4 + j] = (sc[j]! & 63) | ((sc[j + 4]! >> 4) << 6);
        dst[o + 8 + j] = (mn[j]! & 63) | ((mn[j + 4]! >> 4) << 6);
        dst[o + 12 + j] = (sc[j + 4]! & 15) | ((mn[j + 4]! & 15) << 4);
    }
    for (let s = 0; s < 8; s++) {
        const step = d * sc[s]!;
        for (let l = 0; l < 32; l++) q[32 * s + l] = step > 0 ? clamp(roundAway((src[base + 32 * s + l]! + dmin * mn[s]!) / step), 0, qmax) : 0;
    }
}

/** Q4_K (quantizeKBlock with q in 0..15): byte 32g + l holds weight 64g + l (low nibble) and 64g + 32 + l (high). */
export function quantizeQ4_K(src: Float32Array, dst: Uint8Array, offset = 0): void {
    checkBlocks(src.length, QK_K, "Q4_K");
    const q = new Uint8Array(QK_K);
    for (let b = 0; b < src.length / QK_K; b++) {
        const o = offset + b * Q4_K_BLOCK_BYTES;
        quantizeKBlock(src, b * QK_K, 15, dst, o, q);
        for (let g = 0; g < 4; g++) for (let l = 0; l < 32; l++) dst[o + 16 + 32 * g + l] = q[64 * g + l]! | (q[64 * g + 32 + l]! << 4);
    }
}

/**
 * Q5_K (quantizeKBlock with q in 0..31): the low 4 bits as Q4_K's at byte 48, the fifth bit of
 * weight 32s + l at bit s of byte 16 + l.
 */
export function quantizeQ5_K(src: Float32Array, dst: Uint8Array, offset = 0): void {
    checkBlocks(src.length, QK_K, "Q5_K");
    const q = new Uint8Array(QK_K);
    for (let b = 0; b < src.length / QK_K; b++) {
        const o = offset + b * Q5_K_BLOCK_BYTES;
        quantizeKBlock(src, b * QK_K, 31, dst, o, q);
        for (let l = 0; l < 32; l++) {
            let high = 0;
            for (let s = 0; s < 8; s++) high |= (q[32 * s + l]! >> 4) << s;
            dst[o + 16 + l] = high;
        }
        for (let g = 0; g < 4; g++) for (let l = 0; l < 32; l++) dst[o + 48 + 32 * g + l] = (q[64 * g + l]! & 15) | ((q[64 * g + 32 + l]! & 15) << 4);
    }
}

/**
 * Q6_K: 16 sub-blocks of 16, weight = d x sc x (q - 32), q in 0..63, sc int8. Each sub-block's
 * scale maps its value of largest magnitude to -32; d maps the scale of largest magnitude to
 * -128. Value 128j + 32v + l: low nibble in ql[64j + 32(v % 2) + l] (v < 2 low, else high),
 * its two high bits at bits 2v of qh[32j + l].
 */
export function quantizeQ6_K(src: Float32Array, dst: Uint8Array, offset = 0): void {
    checkBlocks(src.length, QK_K, "Q6_K");
    const scale = new Float64Array(16);
    const q = new Uint8Array(QK_K);
    for (let b = 0; b < src.length / QK_K; b++) {
        const base = b * QK_K;
        let maxScale = 0;
        for (let s = 0; s < 16; s++) {
            let max = 0;
            for (let l = 0; l < 16; l++) {
                const v = src[base + 16 * s + l]!;
                if (Math.abs(v) > Math.abs(max)) max = v;
            }
            scale[s] = max / -32;
            if (Math.abs(scale[s]!) > Math.abs(maxScale)) maxScale = scale[s]!;
        }
        const dBits = f32ToF16Bits(maxScale / -128);
        const d = f16BitsToF32(dBits);
        const o = offset + b * Q6_K_BLOCK_BYTES;
        for (let s = 0; s < 16; s++) {
            const sc = d !== 0 ? clamp(roundAway(scale[s]! / d), -128, 127) : 0;
            dst[o + 192 + s] = sc & 0xff;
            const step = d * sc;
            for (let l = 0; l < 16; l++) q[16 * s + l] = step !== 0 ? clamp(roundAway(src[base + 16 * s + l]! / step), -32, 31) + 32 : 32;
        }
        for (let j = 0; j < 2; j++) {
            for (let l = 0; l < 32; l++) {
                const v = (k: number): number => q[128 * j + 32 * k + l]!;
                dst[o + 64 * j + l] = (v(0) & 15) | ((v(2) & 15) << 4);
                dst[o + 64 * j + 32 + l] = (v(1) & 15) | ((v(3) & 15) << 4);
                dst[o + 128 + 32 * j + l] = (v(0) >> 4) | ((v(1) >> 4) << 2) | ((v(2) >> 4) << 4) | ((v(3) >> 4) << 6);
            }
        }
        dst[o + 208] = dBits & 0xff;
        dst[o + 209] = dBits >>> 8;
    }
}

/** Q4_K's and Q5_K's weights (dequantize_row_q4_K / _q5_K): x = d x sc x q - dmin x m per sub-block of 32, q from quant(b, s, l). */
function dequantizeK(src: Uint8Array, n: number, blockBytes: number, quant: (o: number, s: number, l: number) => number): Float32Array {
    const out = new Float32Array(n);
    for (let b = 0; b < n / QK_K; b++) {
        const o = b * blockBytes;
        const d = f16BitsToF32(src[o]! | (src[o + 1]! << 8)), dmin = f16BitsToF32(src[o + 2]! | (src[o + 3]! << 8));
        const byte = (j: number): number => src[o + 4 + j]!;
        for (let s = 0; s < 8; s++) {
            // get_scale_min_k4
            const sc = s < 4 ? byte(s) & 63 : (byte(s + 4) & 15) | ((byte(s - 4) >> 6) << 4);
            const m = s < 4 ? byte(s + 4) & 63 : (byte(s + 4) >> 4) | ((byte(s) >> 6) << 4);
            const scale = fround(d * sc), offset = fround(dmin * m);
            for (let l = 0; l < 32; l++) out[b * QK_K + 32 * s + l] = fround(scale * quant(o, s, l)) - offset;
        }
    }
    return out;
}

/** dequantize_row_q4_K (float32 as ggml computes it). */
export function dequantizeQ4_K(src: Uint8Array, n: number): Float32Array {
    checkBlocks(n, QK_K, "Q4_K");
    return dequantizeK(src, n, Q4_K_BLOCK_BYTES, (o, s, l) => {
        const packed = src[o + 16 + 32 * (s >> 1) + l]!;
        return s & 1 ? packed >> 4 : packed & 15;
    });
}

/** dequantize_row_q5_K (float32 as ggml computes it). */
export function dequantizeQ5_K(src: Uint8Array, n: number): Float32Array {
    checkBlocks(n, QK_K, "Q5_K");
    return dequantizeK(src, n, Q5_K_BLOCK_BYTES, (o, s, l) => {
        const packed = src[o + 48 + 32 * (s >> 1) + l]!;
        return (s & 1 ? packed >> 4 : packed & 15) | (((src[o + 16 + l]! >> s) & 1) << 4);
    });
}

/** dequantize_row_q6_K: x = d x sc x (q - 32) per sub-block of 16 (float32 as ggml computes it). */
export function dequantizeQ6_K(src: Uint8Array, n: number): Float32Array {
    checkBlocks(n, QK_K, "Q6_K");
    const out = new Float32Array(n);
    for (let b = 0; b < n / QK_K; b++) {
        const o = b * Q6_K_BLOCK_BYTES;
        const d = f16BitsToF32(src[o + 208]! | (src[o + 209]! << 8));
        for (let e = 0; e < QK_K; e++) {
            const j = e >> 7, v = (e >> 5) & 3, l = e & 31;
            const low = src[o + 64 * j + 32 * (v & 1) + l]!;
            const q = (v < 2 ? low & 15 : low >> 4) | (((src[o + 128 + 32 * j + l]! >> (2 * v)) & 3) << 4);
            const sc = (src[o + 192 + (e >> 4)]! << 24) >> 24;
            out[b * QK_K + e] = fround(d * sc) * (q - 32);
        }
    }
    return out;
}
