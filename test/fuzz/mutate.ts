// Structure-aware GGUF mutator: takes a real model apart (gguf-edit.ts), changes one or a few
// things a broken or hostile file could carry, and writes it back. Each mutant is a pure
// function of (source, seed), so a failing one is reproduced from its seed alone.
import { cloneGguf, encodeGguf, getKv, setKv, T, type EncodeOverrides, type Gguf, type Kv } from "./gguf-edit.js";

/** xorshift32: small, deterministic, good enough to pick mutations. */
export class Rng {
    #s: number;
    constructor(seed: number) {
        this.#s = (seed >>> 0) || 0x9e3779b9;
        for (let i = 0; i < 4; i++) this.u32();
    }
    u32(): number {
        let s = this.#s;
        s ^= s << 13;
        s ^= s >>> 17;
        s ^= s << 5;
        return (this.#s = s >>> 0);
    }
    int(n: number): number {
        return n <= 0 ? 0 : this.u32() % n;
    }
    pick<T>(a: readonly T[]): T {
        return a[this.int(a.length)]!;
    }
    chance(p: number): boolean {
        return this.u32() / 2 ** 32 < p;
    }
}

const HUGE = [0n, 1n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n, 2n ** 40n, 2n ** 62n, 2n ** 63n, 2n ** 64n - 1n];
const ODD_NUMBERS = [0, -1, 1, 2, 3, 7, 64, 65535, 2 ** 31 - 1, -(2 ** 31), 2 ** 32 - 1, NaN, Infinity, -Infinity, 1e-30, -1e-6, 1e30];
const TOKENIZER_MODELS = ["none", "no_vocab", "llama", "gpt2", "bert", "t5", "rwkv", "plamo2", "", "foo", "llama\0x"];
const GGML_TYPES = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 34, 35, 39, 40, 41, 42, 43, 44, 99, 2 ** 31];

function numericKvs(g: Gguf): Kv[] {
    return g.kvs.filter((k) => k.type !== T.str && k.type !== T.arr);
}

type Mutation = (g: Gguf, r: Rng, o: EncodeOverrides) => string;

const MUTATIONS: Record<string, Mutation> = {
    headerCounts(g, r, o) {
        if (r.chance(0.5)) o.nTensors = BigInt(g.tensors.length) + BigInt(r.pick([-1, 1, 2, 1000])) ;
        else o.nKv = r.chance(0.5) ? r.pick(HUGE) : BigInt(g.kvs.length + r.pick([-1, 1, 5]));
        if ((o.nTensors ?? 0n) < 0n) o.nTensors = 0n;
        if ((o.nKv ?? 0n) < 0n) o.nKv = 0n;
        return `counts tensors=${o.nTensors ?? "-"} kv=${o.nKv ?? "-"}`;
    },
    keyNames(g, r) {
        const kv = r.pick(g.kvs);
        const old = kv.key;
        kv.key = r.pick(["", old + old, old.toUpperCase(), "x".repeat(70000), g.kvs[0]!.key, old.slice(0, -1)]);
        return `key ${old} -> ${kv.key.slice(0, 40)}`;
    },
    valueType(g, r) {
        const kv = r.pick(g.kvs);
        const before = kv.type;
        if (kv.type === T.arr && r.chance(0.5)) {
            kv.itemType = r.pick([T.u8, T.i32, T.f32, T.str, T.u64, T.bool, 13, T.arr]);
            if (kv.itemType === T.arr) kv.itemType = T.u8;
            return `${kv.key} item type -> ${kv.itemType}`;
        }
        kv.type = r.pick([T.u8, T.i8, T.u16, T.i32, T.u32, T.f32, T.bool, T.str, T.u64, T.i64, T.f64]);
        if (kv.type !== T.arr) kv.value = Array.isArray(kv.value) ? (kv.value[0] ?? 0) : kv.value;
        if (kv.type === T.str) kv.value = String(kv.value);
        else if (typeof kv.value === "string") kv.value = kv.value.length;
        return `${kv.key} type ${before} -> ${kv.type}`;
    },
    arrayLength(g, r) {
        const arrays = g.kvs.filter((k) => k.type === T.arr);
        if (!arrays.length) return "no arrays";
        const kv = r.pick(arrays);
        const a = kv.value as unknown[];
        const how = r.pick(["empty", "one", "half", "minus1", "plus1", "double"]);
        const n = { empty: 0, one: 1, half: a.length >> 1, minus1: a.length - 1, plus1: a.length + 1, double: a.length * 2 }[how]!;
        const out = [];
        for (let i = 0; i < n; i++) out.push(a[i % Math.max(1, a.length)] ?? (kv.itemType === T.str ? "x" : 0));
        kv.value = out as Kv["value"];
        return `${kv.key} length ${a.length} -> ${n}`;
    },
    tensorCount(g, r) {
        if (!g.tensors.length) return "no tensors";
        const i = r.int(g.tensors.length);
        if (r.chance(0.5)) {
            const [t] = g.tensors.splice(i, 1);
            return `removed tensor ${t?.name}`;
        }
        g.tensors.push({ ...g.tensors[i]!, dims: [...g.tensors[i]!.dims] });
        return `duplicated tensor ${g.tensors[i]!.name}`;
    },
    dims(g, r) {
        if (!g.tensors.length) return "no tensors";
        const t = r.pick(g.tensors);
        const how = r.pick(["zero", "huge", "overflow", "swap", "extra", "drop"]);
        if (how === "zero") t.dims[r.int(t.dims.length)] = 0n;
        else if (how === "huge") t.dims[r.int(t.dims.length)] = r.pick(HUGE);
        else if (how === "overflow") t.dims = [2n ** 32n, 2n ** 32n + 1n];
        else if (how === "swap") t.dims.reverse();
        else if (how === "extra") t.dims.push(r.pick([1n, 2n, 0n]));
        else t.dims = t.dims.slice(0, 1);
        return `${t.name} dims ${how} -> [${t.dims.join(",")}]`;
    },
    tensorType(g, r) {
        if (!g.tensors.length) return "no tensors";
        const t = r.pick(g.tensors);
        const before = t.type;
        t.type = r.pick(GGML_TYPES);
        return `${t.name} type ${before} -> ${t.type}`;
    },
    offsets(g, r) {
        if (!g.tensors.length) return "no tensors";
        const t = r.pick(g.tensors);
        const how = r.pick(["misaligned", "past-end", "zero", "overlap", "huge"]);
        if (how === "misaligned") t.offset += 1n;
        else if (how === "past-end") t.offset = BigInt(g.data.byteLength);
        else if (how === "zero") t.offset = 0n;
        else if (how === "overlap") t.offset = g.tensors[0]!.offset;
        else t.offset = r.pick(HUGE);
        return `${t.name} offset ${how}`;
    },
    alignment(g, r) {
        const a = r.pick([0, 1, 3, 8, 64, 4096, 2 ** 31]);
        setKv(g, "general.alignment", { type: T.u32, value: a });
        return `alignment ${a}`;
    },
    tokenizerModel(g, r) {
        const m = r.pick(TOKENIZER_MODELS);
        setKv(g, "tokenizer.ggml.model", { type: T.str, value: m });
        return `tokenizer.ggml.model=${JSON.stringify(m)}`;
    },
    specialIds(g, r) {
        const key = r.pick(["bos", "eos", "unknown", "padding", "seperator", "eot", "eom", "mask"]);
        const v = r.pick([-1, 0, 2 ** 31 - 1, 2 ** 32 - 1, 1e9, 31999, 32000]);
        setKv(g, `tokenizer.ggml.${key}_token_id`, { type: T.u32, value: v });
        return `${key}_token_id=${v}`;
    },
    tokenTexts(g, r) {
        const kv = getKv(g, "tokenizer.ggml.tokens");
        if (!kv || !Array.isArray(kv.value)) return "no tokens";
        const a = kv.value as string[];
        const n = 1 + r.int(20);
        for (let i = 0; i < n; i++) {
            a[r.int(a.length)] = r.pick(["", "<0xZZ>", "<0x", "\u2581", "\ufffd", "a".repeat(300), "<|endoftext|>", String.fromCharCode(0xd800), "\0", a[0] ?? ""]);
        }
        return `${n} token texts`;
    },
    tokenTypesScores(g, r) {
        const k = r.pick(["tokenizer.ggml.token_type", "tokenizer.ggml.scores", "tokenizer.ggml.merges"]);
        const kv = getKv(g, k);
        if (!kv || !Array.isArray(kv.value)) {
            setKv(g, k, { type: T.arr, itemType: r.pick([T.i32, T.f32, T.str]), value: [1, 2, 3] });
            return `${k} added`;
        }
        const a = kv.value as (number | string)[];
        for (let i = 0; i < 20; i++) {
            const j = r.int(a.length);
            a[j] = typeof a[j] === "string" ? r.pick(["", " ", "a b c", "\u0120 \u0120"]) : r.pick([-1, 0, 6, 99, NaN, 2 ** 31 - 1]);
        }
        return `${k} values`;
    },
    hparams(g, r) {
        const arch = String(getKv(g, "general.architecture")?.value ?? "llama");
        const nums = numericKvs(g).filter((k) => k.key.startsWith(arch + "."));
        const kv = nums.length && r.chance(0.8) ? r.pick(nums) : undefined;
        const v = r.pick(ODD_NUMBERS);
        if (kv) {
            kv.value = kv.type === T.u64 || kv.type === T.i64 ? BigInt(Number.isFinite(v) ? Math.trunc(v) : 0) : v;
            return `${kv.key}=${v}`;
        }
        const key = `${arch}.${r.pick(["rope.freq_base", "rope.scaling.factor", "attention.key_length", "attention.value_length", "logit_scale", "attn_logit_softcapping", "expert_count", "attention.sliding_window"])}`;
        setKv(g, key, { type: r.pick([T.u32, T.f32]), value: v });
        return `${key}=${v}`;
    },
    architecture(g, r) {
        const a = r.pick(["llama", "qwen2", "gemma", "mamba", "bert", "t5", "nonexistent", "gpt2", "phi3"]);
        setKv(g, "general.architecture", { type: T.str, value: a });
        return `architecture=${a}`;
    },
};

export const MUTATION_NAMES = Object.keys(MUTATIONS);

/** One mutant of `source`: its bytes and what was done to it. */
export function mutant(source: Gguf, seed: number): { bytes: Buffer; description: string } {
    const r = new Rng(seed);
    const g = cloneGguf(source);
    const o: EncodeOverrides = {};
    const steps: string[] = [];
    const n = 1 + (r.chance(0.3) ? r.int(3) : 0);
    for (let i = 0; i < n; i++) {
        const name = r.pick(MUTATION_NAMES);
        steps.push(`${name}: ${MUTATIONS[name]!(g, r, o)}`);
    }
    let bytes = encodeGguf(g, o);
    // Byte-level damage on top, sometimes: flips in the header, or a truncation.
    if (r.chance(0.15)) {
        const headerEnd = Math.min(bytes.length, bytes.length - g.data.byteLength);
        const flips = 1 + r.int(8);
        for (let i = 0; i < flips; i++) {
            const at = r.int(Math.max(1, headerEnd));
            bytes[at] = bytes[at]! ^ (1 << r.int(8));
        }
        steps.push(`flips: ${flips}`);
    }
    if (r.chance(0.08)) {
        const len = r.int(bytes.length);
        bytes = bytes.subarray(0, len);
        steps.push(`truncate: ${len}`);
    }
    return { bytes, description: steps.join("; ") };
}
