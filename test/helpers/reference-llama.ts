// An independent float64 llama forward pass over a GGUF's tensors, for parity tests:
// token embedding → per layer [RMSNorm → Q,K,V → RoPE (llama's "normal" adjacent pairs)
// → causal GQA softmax attention → output proj → residual → RMSNorm → SwiGLU FFN →
// residual] → RMSNorm → output projection. Plain loops; correctness over speed.
import { readGguf, readTensorBytes, type GgufFile } from "../../src/synth/gguf/reader.js";
import { dequantizeQ4_0, dequantizeQ4_K, dequantizeQ5_K, dequantizeQ6_K, dequantizeQ8_0, f16BitsToF32 } from "../../src/synth/gguf/quant.js";
import { GgmlType } from "../../src/synth/gguf/types.js";

export interface Matrix {
    rows: number; // output dim
    cols: number; // input dim (ggml ne0)
    w: Float64Array; // row-major [rows][cols]
}

export async function tensor(path: string, file: GgufFile, name: string): Promise<Matrix> {
    const info = file.tensors.find((t) => t.name === name);
    if (!info) throw new Error(`tensor ${name} not found`);
    const bytes = await readTensorBytes(path, file, name);
    const n = info.dims.reduce((a, b) => a * b, 1);
    let f: ArrayLike<number>;
    if (info.type === GgmlType.F32) f = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + n * 4));
    else if (info.type === GgmlType.F16) {
        const h = new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + n * 2));
        f = Array.from(h, f16BitsToF32);
    } else if (info.type === GgmlType.Q8_0) f = dequantizeQ8_0(bytes, n);
    else if (info.type === GgmlType.Q4_0) f = dequantizeQ4_0(bytes, n);
    else if (info.type === GgmlType.Q4_K) f = dequantizeQ4_K(bytes, n);
    else if (info.type === GgmlType.Q5_K) f = dequantizeQ5_K(bytes, n);
    else if (info.type === GgmlType.Q6_K) f = dequantizeQ6_K(bytes, n);
    else throw new Error(`tensor type ${info.type} not supported by the reference`);
    return { cols: info.dims[0]!, rows: n / info.dims[0]!, w: Float64Array.from(f) };
}

export function num(file: GgufFile, key: string, def?: number): number {
    const v = file.metadata.get(key);
    if (!v) {
        if (def === undefined) throw new Error(`metadata ${key} missing`);
        return def;
    }
    return Number(v.value);
}

// W (rows, cols) @ x (cols,) -> (rows,)
export function matvec(m: Matrix, x: Float64Array): Float64Array {
    const y = new Float64Array(m.rows);
    for (let r = 0; r < m.rows; r++) {
        let s = 0;
        const off = r * m.cols;
        for (let c = 0; c < m.cols; c++) s += m.w[off + c]! * x[c]!;
        y[r] = s;
    }
    return y;
}

function rmsnorm(x: Float64Array, g: Matrix, eps: number): Float64Array {
    let ss = 0;
    for (const v of x) ss += v * v;
    const k = 1 / Math.sqrt(ss / x.length + eps);
    return x.map((v, i) => v * k * g.w[i]!);
}

export interface ReferenceModel {
    vocabSize: number;
    /** Logits (float64) after each token of `tokens`, fed from position 0. */
    forward(tokens: ArrayLike<number>): Float64Array[];
    /** The final RMS-normed hidden state at each position: what llama.cpp pools for embeddings. */
    hidden(tokens: ArrayLike<number>): Float64Array[];
}

export async function loadReference(path: string): Promise<ReferenceModel> {
    const file = await readGguf(path);
    const arch = String(file.metadata.get("general.architecture")!.value);
    const nLayer = num(file, `${arch}.block_count`);
    const nEmbd = num(file, `${arch}.embedding_length`);
    const nHead = num(file, `${arch}.attention.head_count`);
    const nHeadKv = num(file, `${arch}.attention.head_count_kv`, nHead);
    const headDim = num(file, `${arch}.attention.key_length`, nEmbd / nHead);
    const nRot = num(file, `${arch}.rope.dimension_count`, headDim);
    const base = num(file, `${arch}.rope.freq_base`, 10000);
    const eps = num(file, `${arch}.attention.layer_norm_rms_epsilon`, 1e-5);
    const t = (name: string) => tensor(path, file, name);
    const embd = await t("token_embd.weight");
    const hasOutput = file.tensors.some((x) => x.name === "output.weight");
    const output = hasOutput ? await t("output.weight") : embd;
    const outNorm = await t("output_norm.weight");
    const layers: Record<"attnNorm" | "wq" | "wk" | "wv" | "wo" | "ffnNorm" | "gate" | "up" | "down", Matrix>[] = [];
    for (let l = 0; l < nLayer; l++) {
        const p = `blk.${l}.`;
        layers.push({
            attnNorm: await t(p + "attn_norm.weight"),
            wq: await t(p + "attn_q.weight"),
            wk: await t(p + "attn_k.weight"),
            wv: await t(p + "attn_v.weight"),
            wo: await t(p + "attn_output.weight"),
            ffnNorm: await t(p + "ffn_norm.weight"),
            gate: await t(p + "ffn_gate.weight"),
            up: await t(p + "ffn_up.weight"),
            down: await t(p + "ffn_down.weight"),
        });
    }
    const G = nHead / nHeadKv;

    // llama's "normal" RoPE: rotate adjacent pairs (2i, 2i+1) of the first nRot dims.
    function rope(v: Float64Array, heads: number, pos: number): void {
        for (let h = 0; h < heads; h++) {
            for (let i = 0; i < nRot; i += 2) {
                const theta = pos * Math.pow(base, -i / nRot);
                const c = Math.cos(theta), s = Math.sin(theta);
                const a = v[h * headDim + i]!, b = v[h * headDim + i + 1]!;
                v[h * headDim + i] = a * c - b * s;
                v[h * headDim + i + 1] = a * s + b * c;
            }
        }
    }

    function run(tokens: ArrayLike<number>, head: boolean): Float64Array[] {
            const keys: Float64Array[][] = layers.map(() => []);
            const vals: Float64Array[][] = layers.map(() => []);
            const out: Float64Array[] = [];
            for (let pos = 0; pos < tokens.length; pos++) {
                const tok = tokens[pos]!;
                let x = embd.w.slice(tok * nEmbd, (tok + 1) * nEmbd);
                layers.forEach((L, l) => {
                    const h = rmsnorm(x, L.attnNorm, eps);
                    const q = matvec(L.wq, h), k = matvec(L.wk, h), v = matvec(L.wv, h);
                    rope(q, nHead, pos);
                    rope(k, nHeadKv, pos);
                    keys[l]!.push(k);
                    vals[l]!.push(v);
                    const att = new Float64Array(nHead * headDim);
                    const scale = 1 / Math.sqrt(headDim);
                    for (let hq = 0; hq < nHead; hq++) {
                        const hk = Math.floor(hq / G);
                        const s = new Float64Array(pos + 1);
                        let mx = -Infinity;
                        for (let j = 0; j <= pos; j++) {
                            let d = 0;
                            for (let i = 0; i < headDim; i++) d += q[hq * headDim + i]! * keys[l]![j]![hk * headDim + i]!;
                            s[j] = d * scale;
                            mx = Math.max(mx, s[j]!);
                        }
                        let sum = 0;
                        for (let j = 0; j <= pos; j++) sum += s[j] = Math.exp(s[j]! - mx);
                        for (let j = 0; j <= pos; j++)
                            for (let i = 0; i < headDim; i++) att[hq * headDim + i] += (s[j]! / sum) * vals[l]![j]![hk * headDim + i]!;
                    }
                    const o = matvec(L.wo, att);
                    x = x.map((v2, i) => v2 + o[i]!);
                    const h2 = rmsnorm(x, L.ffnNorm, eps);
                    const g = matvec(L.gate, h2), u = matvec(L.up, h2);
                    const a = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]!);
                    const d = matvec(L.down, a);
                    x = x.map((v2, i) => v2 + d[i]!);
                });
                const normed = rmsnorm(x, outNorm, eps);
                out.push(head ? matvec(output, normed) : normed);
            }
            return out;
    }

    return {
        vocabSize: embd.rows,
        forward: (tokens) => run(tokens, true),
        hidden: (tokens) => run(tokens, false),
    };
}

export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
    let num2 = 0, den = 0;
    for (let i = 0; i < a.length; i++) {
        const d = a[i]! - b[i]!;
        num2 += d * d;
        den += b[i]! * b[i]!;
    }
    return Math.sqrt(num2 / den);
}

export function argmax(a: ArrayLike<number>): number {
    let best = 0;
    for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
    return best;
}
