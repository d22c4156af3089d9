// An independent float64 BERT forward pass over a GGUF's tensors (llama.cpp's llama_model_bert,
// written from the original BERT: Devlin et al. / HF BertModel), for the embedding tests:
// token + token-type(0) + learned position embeddings → LayerNorm → per layer [Q,K,V with bias
// → bidirectional softmax attention → output proj + bias → residual → LayerNorm → GELU FFN
// with biases → residual → LayerNorm]. Pooling and a reranker's head (dense + tanh → linear)
// are applied here too. nomic-bert (nomic-embed-text): no position table but NeoX RoPE on Q
// and K, SwiGLU FFN, biases only where present. jina-bert-v2: ALiBi (a per-head slope times
// -|i - j| added to the scores, max bias 8) and a GELU-gated FFN. Plain loops; correctness
// over speed.
import { readGguf } from "../../src/synth/gguf/reader.js";
import { matvec, num, tensor, type Matrix } from "./reference-llama.js";

function layerNorm(x: Float64Array, w: Matrix, b: Matrix, eps: number): Float64Array {
    let mean = 0;
    for (const v of x) mean += v;
    mean /= x.length;
    let vr = 0;
    for (const v of x) vr += (v - mean) * (v - mean);
    const k = 1 / Math.sqrt(vr / x.length + eps);
    return x.map((v, i) => (v - mean) * k * w.w[i]! + b.w[i]!);
}

function addBias(x: Float64Array, b: Matrix | null): Float64Array {
    return b ? x.map((v, i) => v + b.w[i]!) : x;
}

// ggml's ALiBi slopes (ggml_soft_max_ext / flash_attn_ext with max_bias 8, llama.cpp's value for jina-bert-v2).
function alibiSlope(h: number, nHead: number, maxBias = 8): number {
    const nHeadLog2 = 2 ** Math.floor(Math.log2(nHead));
    const m0 = 2 ** (-maxBias / nHeadLog2);
    const m1 = 2 ** (-maxBias / 2 / nHeadLog2);
    return h < nHeadLog2 ? m0 ** (h + 1) : m1 ** (2 * (h - nHeadLog2) + 1);
}

// NeoX RoPE (llama.cpp's rope type for the BERT family): rotates pairs (i, i + d/2) of each head.
function ropeNeox(v: Float64Array, heads: number, headDim: number, pos: number, base: number): Float64Array {
    const out = v.slice();
    const half = headDim / 2;
    for (let h = 0; h < heads; h++) {
        for (let i = 0; i < half; i++) {
            const theta = pos * Math.pow(base, (-2 * i) / headDim);
            const c = Math.cos(theta), s = Math.sin(theta);
            const a = v[h * headDim + i]!, b = v[h * headDim + i + half]!;
            out[h * headDim + i] = a * c - b * s;
            out[h * headDim + i + half] = a * s + b * c;
        }
    }
    return out;
}

// ggml_gelu is the tanh approximation.
function gelu(x: number): number {
    return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * x * (1 + 0.044715 * x * x)));
}

export interface ReferenceBert {
    dimensions: number;
    /** The last layer's output at every position (what llama.cpp pools). */
    hidden(tokens: ArrayLike<number>): Float64Array[];
    /** The reranker's raw score (logit) of a token sequence: head over the first ([CLS]) position. */
    rankLogit(tokens: ArrayLike<number>): number;
}

export async function loadReferenceBert(path: string): Promise<ReferenceBert> {
    const file = await readGguf(path);
    const arch = String(file.metadata.get("general.architecture")!.value);
    if (!["bert", "nomic-bert", "jina-bert-v2"].includes(arch)) throw new Error(`reference-bert reads bert, nomic-bert and jina-bert-v2 models, not ${arch}`);
    const alibi = arch === "jina-bert-v2";
    const nLayer = num(file, `${arch}.block_count`);
    const nEmbd = num(file, `${arch}.embedding_length`);
    const nHead = num(file, `${arch}.attention.head_count`);
    const eps = num(file, `${arch}.attention.layer_norm_epsilon`);
    const headDim = nEmbd / nHead;
    const t = (name: string) => tensor(path, file, name);
    const has = (name: string) => file.tensors.some((x) => x.name === name);
    const embd = await t("token_embd.weight");
    const types = has("token_types.weight") ? await t("token_types.weight") : null;
    const pos = has("position_embd.weight") ? await t("position_embd.weight") : null;
    const ropeBase = num(file, `${arch}.rope.freq_base`, 10000);
    const embNormW = await t("token_embd_norm.weight");
    const embNormB = await t("token_embd_norm.bias");
    type LayerName = "wq" | "bq" | "wk" | "bk" | "wv" | "bv" | "wo" | "bo" | "n1w" | "n1b" | "up" | "bup" | "gate" | "down" | "bdown" | "n2w" | "n2b";
    const layers: Record<LayerName, Matrix | null>[] = [];
    const opt = async (name: string) => (has(name) ? await t(name) : null);
    for (let l = 0; l < nLayer; l++) {
        const p = `blk.${l}.`;
        layers.push({
            wq: await t(p + "attn_q.weight"), bq: await opt(p + "attn_q.bias"),
            wk: await t(p + "attn_k.weight"), bk: await opt(p + "attn_k.bias"),
            wv: await t(p + "attn_v.weight"), bv: await opt(p + "attn_v.bias"),
            wo: await t(p + "attn_output.weight"), bo: await opt(p + "attn_output.bias"),
            n1w: await t(p + "attn_output_norm.weight"), n1b: await t(p + "attn_output_norm.bias"),
            up: await t(p + "ffn_up.weight"), bup: await opt(p + "ffn_up.bias"), gate: await opt(p + "ffn_gate.weight"),
            down: await t(p + "ffn_down.weight"), bdown: await opt(p + "ffn_down.bias"),
            n2w: await t(p + "layer_output_norm.weight"), n2b: await t(p + "layer_output_norm.bias"),
        });
    }
    const head = has("cls.output.weight")
        ? { w: await t("cls.weight"), b: await t("cls.bias"), ow: await t("cls.output.weight"), ob: await t("cls.output.bias") }
        : null;

    function hidden(tokens: ArrayLike<number>): Float64Array[] {
        const n = tokens.length;
        let xs: Float64Array[] = [];
        for (let i = 0; i < n; i++) {
            const tok = tokens[i]!;
            const x = embd.w.slice(tok * nEmbd, (tok + 1) * nEmbd);
            for (let j = 0; j < nEmbd; j++) x[j] += (pos ? pos.w[i * nEmbd + j]! : 0) + (types ? types.w[j]! : 0);
            xs.push(layerNorm(x, embNormW, embNormB, eps));
        }
        for (const L of layers) {
            const rope = (y: Float64Array, i: number) => (pos || alibi ? y : ropeNeox(y, nHead, headDim, i, ropeBase));
            const q = xs.map((x, i) => rope(addBias(matvec(L.wq!, x), L.bq), i));
            const k = xs.map((x, i) => rope(addBias(matvec(L.wk!, x), L.bk), i));
            const v = xs.map((x) => addBias(matvec(L.wv!, x), L.bv));
            const scale = 1 / Math.sqrt(headDim);
            xs = xs.map((x, i) => {
                const att = new Float64Array(nEmbd);
                for (let h = 0; h < nHead; h++) {
                    const off = h * headDim;
                    const s = new Float64Array(n);
                    let mx = -Infinity;
                    for (let j = 0; j < n; j++) {
                        let d = 0;
                        for (let c = 0; c < headDim; c++) d += q[i]![off + c]! * k[j]![off + c]!;
                        s[j] = d * scale + (alibi ? alibiSlope(h, nHead) * -Math.abs(i - j) : 0);
                        mx = Math.max(mx, s[j]!);
                    }
                    let sum = 0;
                    for (let j = 0; j < n; j++) sum += s[j] = Math.exp(s[j]! - mx);
                    for (let j = 0; j < n; j++) for (let c = 0; c < headDim; c++) att[off + c] += (s[j]! / sum) * v[j]![off + c]!;
                }
                const o = addBias(matvec(L.wo!, att), L.bo);
                const h1 = layerNorm(o.map((ov, c) => ov + x[c]!), L.n1w!, L.n1b!, eps);
                const up = addBias(matvec(L.up!, h1), L.bup);
                // SwiGLU where there is a gate (nomic-bert), GELU-gated (jina-bert-v2), else GELU (bert)
                const gate = L.gate ? matvec(L.gate, h1) : null;
                const act = alibi ? gelu : (g: number) => g / (1 + Math.exp(-g));
                const u = gate ? up.map((uv, c) => act(gate[c]!) * uv) : up.map(gelu);
                const d = addBias(matvec(L.down!, u), L.bdown);
                return layerNorm(d.map((dv, c) => dv + h1[c]!), L.n2w!, L.n2b!, eps);
            });
        }
        return xs;
    }

    return {
        dimensions: nEmbd,
        hidden,
        rankLogit(tokens) {
            if (!head) throw new Error("this model has no classification head");
            const cls = hidden(tokens)[0]!;
            const pooled = addBias(matvec(head.w, cls), head.b).map(Math.tanh);
            return addBias(matvec(head.ow, pooled), head.ob)[0]!;
        },
    };
}

/** Pools per-position vectors as llama.cpp does for `pooling`. */
export function poolReference(rows: Float64Array[], pooling: "mean" | "cls" | "last"): Float64Array {
    if (pooling === "cls") return rows[0]!;
    if (pooling === "last") return rows[rows.length - 1]!;
    const out = new Float64Array(rows[0]!.length);
    for (const r of rows) for (let i = 0; i < r.length; i++) out[i] += r[i]! / rows.length;
    return out;
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
    let ab = 0, aa = 0, bb = 0;
    for (let i = 0; i < a.length; i++) {
        ab += a[i]! * b[i]!;
        aa += a[i]! * a[i]!;
        bb += b[i]! * b[i]!;
    }
    return ab / Math.sqrt(aa * bb);
}
