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
