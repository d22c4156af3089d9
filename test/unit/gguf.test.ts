// GGUF reader/writer and quantization, checked against independent implementations:
// node-llama-cpp's GGUF parser (JS), llama.cpp's gguf-py (Python/numpy, whose Q8_0 is
// documented bit-exact with ggml's reference; skipped when python3/numpy are missing),
// files written by llama.cpp itself, and float64 block math done here from scratch.

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { readGgufFileInfo } from "node-llama-cpp";
import { afterAll, describe, expect, it } from "vitest";
import { LlamaError } from "../../src/errors.js";
import {
    dequantizeQ4_0,
    dequantizeQ4_K,
    dequantizeQ5_K,
    dequantizeQ6_K,
    dequantizeQ8_0,
    f16BitsToF32,
    f32ToF16Bits,
    quantizeQ4_0,
    quantizeQ4_K,
    quantizeQ5_K,
    quantizeQ6_K,
    quantizeQ8_0,
} from "../../src/synth/gguf/quant.js";
import { Xoshiro128, inverseNormalCdf, normalTable } from "../../src/synth/gguf/random.js";
import { parseGguf, readGguf, readTensorBytes } from "../../src/synth/gguf/reader.js";
import { GgmlType, type GgufMetadata, type GgufValue, tensorByteSize } from "../../src/synth/gguf/types.js";
import { encodeGgufHeader, writeGguf, type GgufTensorSource } from "../../src/synth/gguf/writer.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const vocabDir = join(root, "deps/llama.cpp/models");
const gguPy = join(root, "deps/llama.cpp/gguf-py");
const sharedModels = resolve(root, "../shared/models");
const dir = mkdtempSync(join(tmpdir(), "llamafuse-gguf-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const python = spawnSync("python3", ["-c", `import sys; sys.path.insert(0, ${JSON.stringify(gguPy)}); import numpy, gguf`]);
const hasGgufPy = python.status === 0;
const noPyReason = "python3 with numpy and deps/llama.cpp/gguf-py is needed for the gguf-py cross-checks";

/** Runs a Python snippet with gguf-py importable; returns stdout. */
function py(code: string): string {
    const r = spawnSync("python3", ["-c", `import sys; sys.path.insert(0, ${JSON.stringify(gguPy)})\n${code}`], { encoding: "utf8", maxBuffer: 1 << 28 });
    if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
    return r.stdout;
}

/** node-llama-cpp nests dotted keys; flatten back to "a.b.c" → value. */
function flatten(obj: Record<string, unknown>, prefix = "", out: Record<string, unknown> = {}): Record<string, unknown> {
    for (const [k, v] of Object.entries(obj)) {
        const key = prefix ? `${prefix}.${k}` : k;
        if (v !== null && typeof v === "object" && !Array.isArray(v)) flatten(v as Record<string, unknown>, key, out);
        else out[key] = v;
    }
    return out;
}

const plain = (v: GgufValue): unknown => (v.type === "array" ? [...v.value] : v.value);
const loose = (v: unknown): unknown =>
    typeof v === "bigint" ? Number(v) : Array.isArray(v) ? v.map(loose) : typeof v === "number" ? Math.fround(v) : v;

/** Deterministic test floats, including blocks with ties, zeros and a negative max. */
function testFloats(n: number, seed: number): Float32Array {
    const rng = new Xoshiro128(seed);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = ((rng.next() / 2 ** 32) * 2 - 1) * 2 ** ((rng.next() % 16) - 8);
    out.fill(0, 0, 32); // an all-zero block: d = 0, every q must be 0 (q4_0: 8)
    for (let j = 32; j < 64; j++) out[j] = j % 2 ? 1.5 : -1.5; // |max| ties: the first one wins for q4_0
    out[64] = -3; // negative max in q4_0 → positive d
    for (let j = 65; j < 96; j++) out[j] = (j - 80) * 0.1;
    return out;
}

const metadata: GgufMetadata = new Map<string, GgufValue>([
    ["general.architecture", { type: "string", value: "llama" }],
    ["test.u8", { type: "uint8", value: 255 }],
    ["test.i8", { type: "int8", value: -128 }],
    ["test.u16", { type: "uint16", value: 65535 }],
    ["test.i16", { type: "int16", value: -32768 }],
    ["test.u32", { type: "uint32", value: 4294967295 }],
    ["test.i32", { type: "int32", value: -2147483648 }],
    ["test.f32", { type: "float32", value: Math.fround(0.1) }],
    ["test.f64", { type: "float64", value: 0.1 }],
    ["test.bool", { type: "bool", value: true }],
    ["test.string", { type: "string", value: "héllo ▁wörld 🙂" }],
    ["test.u64", { type: "uint64", value: 2n ** 63n + 5n }],
    ["test.i64", { type: "int64", value: -(2n ** 62n) }],
    ["test.arr_str", { type: "array", itemType: "string", value: ["a", "", "▁b", "c d"] }],
    ["test.arr_i32", { type: "array", itemType: "int32", value: [1, -2, 3] }],
    ["test.arr_f32", { type: "array", itemType: "float32", value: [0.5, -1.25] }],
    ["test.arr_bool", { type: "array", itemType: "bool", value: [true, false] }],
    ["test.arr_empty", { type: "array", itemType: "uint32", value: [] }],
]);

/** Tensors of every written type, with shapes that need padding; data comes in odd-sized chunks. */
function testTensors(): { sources: GgufTensorSource[]; bytes: Map<string, Uint8Array> } {
    const specs = [
        { name: "a.f32", dims: [7], type: GgmlType.F32 },
        { name: "b.f16", dims: [5, 3], type: GgmlType.F16 },
        { name: "c.q8_0", dims: [64, 3], type: GgmlType.Q8_0 },
        { name: "d.q4_0", dims: [32, 2, 3], type: GgmlType.Q4_0 },
    ];
    const bytes = new Map<string, Uint8Array>();
    const sources = specs.map((s, i) => {
        const data = new Uint8Array(tensorByteSize(s.type, s.dims)).map((_, j) => (j * 31 + i * 7) & 0xff);
        bytes.set(s.name, data);
        return { ...s, *data() { for (let at = 0; at < data.length; at += 13) yield data.subarray(at, at + 13); } };
    });
    return { sources, bytes };
}

describe("GGUF writer and reader", () => {
    it("round-trips every metadata type, tensor infos and data, with alignment padding", async () => {
        const path = join(dir, "roundtrip.gguf");
        const { sources, bytes } = testTensors();
        const written = await writeGguf(path, metadata, sources, { alignment: 64 });
        const file = await readGguf(path);
        expect(file.version).toBe(3);
        expect(file.alignment).toBe(64);
        expect(file.metadata.get("general.alignment")).toEqual({ type: "uint32", value: 64 });
        for (const [k, v] of metadata) expect(file.metadata.get(k), k).toEqual(v);
        expect(file.dataOffset % 64).toBe(0);
        expect(file.tensors.map((t) => [t.name, t.dims, t.type])).toEqual(sources.map((s) => [s.name, s.dims, s.type]));
        for (const t of file.tensors) {
            expect(t.offset % 64).toBe(0);
            expect(await readTensorBytes(path, file, t.name)).toEqual(bytes.get(t.name));
        }
        const last = file.tensors.at(-1)!;
        expect(statSync(path).size).toBe(written.bytes);
        expect(written.bytes).toBe(file.dataOffset + Math.ceil((last.offset + tensorByteSize(last.type, last.dims)) / 64) * 64);
    });

    it("writes files that node-llama-cpp's GGUF parser reads the same way", async () => {
        const path = join(dir, "nlc.gguf");
        const { sources } = testTensors();
        await writeGguf(path, metadata, sources);
        const ours = await readGguf(path);
        const theirs = await readGgufFileInfo(path, { logWarnings: false });
        const flat = flatten(theirs.metadata as unknown as Record<string, unknown>);
        for (const [k, v] of metadata) expect(loose(flat[k]), k).toEqual(loose(plain(v)));
        expect(theirs.tensorInfo!.map((t) => [t.name, t.dimensions.map(Number), t.ggmlType, Number(t.fileOffset)])).toEqual(
            ours.tensors.map((t) => [t.name, t.dims, t.type, ours.dataOffset + t.offset]),
        );
    });

    it.skipIf(!hasGgufPy)("writes files that llama.cpp's gguf-py reads the same way", async () => {
        const path = join(dir, "py.gguf");
        const { sources, bytes } = testTensors();
        await writeGguf(path, metadata, sources);
        const out = JSON.parse(py(`
import json, gguf
r = gguf.GGUFReader(${JSON.stringify(path)})
# gguf-py lists no item type for an empty array: take it from the raw field parts.
types = lambda f: [t.name for t in f.types] if f.types != [gguf.GGUFValueType.ARRAY] else ["ARRAY", gguf.GGUFValueType(int(f.parts[3][0])).name]
fields = {k: types(f) for k, f in r.fields.items() if not k.startswith("GGUF.")}
tensors = [[t.name, [int(x) for x in t.field.parts[3]], int(t.tensor_type), bytes(t.data.view("uint8").reshape(-1)).hex()] for t in r.tensors]
print(json.dumps({"fields": fields, "str": str(r.fields["test.string"].contents()), "u64": str(r.fields["test.u64"].contents()), "tensors": tensors}))
`)) as { fields: Record<string, string[]>; str: string; u64: string; tensors: [string, number[], number, string][] };
        const wire = (v: GgufValue): string[] => (v.type === "array" ? ["ARRAY", v.itemType.toUpperCase()] : [v.type.toUpperCase()]);
        expect(out.fields).toEqual(Object.fromEntries([...metadata].map(([k, v]) => [k, wire(v)])));
        expect(out.str).toBe("héllo ▁wörld 🙂");
        expect(out.u64).toBe(String(2n ** 63n + 5n));
        expect(out.tensors).toEqual(sources.map((s) => [s.name, s.dims, s.type, Buffer.from(bytes.get(s.name)!).toString("hex")]));
    }, 30_000);

    const realFiles = [
        join(vocabDir, "ggml-vocab-llama-spm.gguf"),
        join(vocabDir, "ggml-vocab-qwen2.gguf"),
        join(sharedModels, "stories260K.gguf"),
        join(sharedModels, "TinyStories-656K-Q8_0.gguf"),
    ];
    it.each(realFiles)("reads %s (written by llama.cpp's tools) as node-llama-cpp does", async (path) => {
        // The vocab files come with the prepared llama.cpp tree (npm install), the models with
        // ../shared/models: a missing file is a failure, never a silent pass.
        expect(existsSync(path), `${path} is missing`).toBe(true);
        const ours = await readGguf(path);
        const theirs = await readGgufFileInfo(path, { logWarnings: false });
        const flat = flatten(theirs.metadata as unknown as Record<string, unknown>);
        expect(Object.keys(flat).sort()).toEqual([...ours.metadata.keys()].sort());
        for (const [k, v] of ours.metadata) expect(loose(flat[k]), k).toEqual(loose(plain(v)));
        expect(theirs.tensorInfo!.map((t) => [t.name, t.dimensions.map(Number), t.ggmlType, Number(t.fileOffset)])).toEqual(
            ours.tensors.map((t) => [t.name, t.dims, t.type, ours.dataOffset + t.offset]),
        );
        // Re-encoding what was read gives the original header bytes (value types are kept).
        // A file with no tensors may end right after its metadata, without the padding.
        const { header } = encodeGgufHeader(ours.metadata, ours.tensors);
        const original = readFileSync(path).subarray(0, ours.dataOffset);
        expect(header.byteLength).toBe(ours.dataOffset);
        expect(Buffer.compare(Buffer.from(header.subarray(0, original.byteLength)), original)).toBe(0);
        expect(header.subarray(original.byteLength).every((b) => b === 0)).toBe(true);
    }, 60_000);

    it("rejects malformed files with ERR_INVALID_MODEL, not a crash or a huge allocation", async () => {
        const { header } = encodeGgufHeader(metadata, testTensors().sources);
        const expectInvalid = (buf: Uint8Array, pattern: RegExp): void => {
            let err: unknown;
            try { parseGguf(buf); } catch (e) { err = e; }
            expect(err).toBeInstanceOf(LlamaError);
            expect((err as LlamaError).code).toBe("ERR_INVALID_MODEL");
            expect((err as LlamaError).message).toMatch(pattern);
        };
        expectInvalid(Uint8Array.from([0x47, 0x47, 0x55, 0x47, 3, 0, 0, 0]), /Not a GGUF file/);
        expectInvalid(header.subarray(0, 100), /runs past the end|larger than possible/);
        expectInvalid(header.subarray(0, 300), /runs past the end/);
        const bigCount = header.slice();
        new DataView(bigCount.buffer).setBigUint64(16, 2n ** 60n, true); // kv count
        expectInvalid(bigCount, /metadata count .* larger than possible/);
        const badVersion = header.slice();
        new DataView(badVersion.buffer).setUint32(4, 9, true);
        expectInvalid(badVersion, /version 9/);
        const missing = join(dir, "nope.gguf");
        await expect(readGguf(missing)).rejects.toMatchObject({ code: "ERR_FILE_NOT_FOUND" });
        const truncated = join(dir, "truncated.gguf");
        writeFileSync(truncated, header.subarray(0, header.byteLength - 40));
        await expect(readGguf(truncated)).rejects.toMatchObject({ code: "ERR_INVALID_MODEL" });
    });

    it("fails a tensor whose source yields the wrong byte count, leaving no file", async () => {
        const path = join(dir, "short.gguf");
        const source = { name: "t", dims: [64], type: GgmlType.F32, *data() { yield new Uint8Array(255); } };
        await expect(writeGguf(path, metadata, [source])).rejects.toMatchObject({ code: "ERR_INVALID_OPTION", message: /255 bytes; .* need 256/ });
        expect(existsSync(path)).toBe(false);
        const nested = join(dir, "new/sub/dir/t.gguf"); // missing folders are created
        await writeGguf(nested, metadata, []);
        expect((await readGguf(nested)).metadata.size).toBe(metadata.size);
        await expect(writeGguf(join(nested, "x.gguf"), metadata, [])).rejects.toMatchObject({ code: "ERR_INVALID_OPTION", message: /Cannot write/ });
        expect(() => encodeGgufHeader(metadata, [{ name: "q", dims: [40], type: GgmlType.Q8_0 }])).toThrow(/not a multiple of the block size 32/);
        expect(() => encodeGgufHeader(new Map([["k", { type: "uint8", value: 256 }]]), [])).toThrow(/not a valid uint8/);
    });
});

describe("fp16 conversion (ggml_compute_fp32_to_fp16)", () => {
    it("maps every finite half to itself and rounds midpoints to even", () => {
        for (let h = 0; h < 0x10000; h++) {
            const x = f16BitsToF32(h);
            if (Number.isNaN(x)) expect(f32ToF16Bits(x) & 0x7fff).toBe(0x7e00);
            else expect(f32ToF16Bits(x)).toBe(h);
            // The midpoint to the next half up (same sign, larger magnitude) rounds to the even one.
            if ((h & 0x7c00) !== 0x7c00 && ((h + 1) & 0x7c00) !== 0x7c00) {
                const mid = (x + f16BitsToF32(h + 1)) / 2;
                if (Math.fround(mid) === mid) expect(f32ToF16Bits(mid), `midpoint above ${h}`).toBe(h % 2 === 0 ? h : h + 1);
            }
        }
        expect(f32ToF16Bits(65520)).toBe(0x7c00); // rounds up past the largest half → inf
        expect(f32ToF16Bits(65519)).toBe(0x7bff);
        expect(f32ToF16Bits(-Infinity)).toBe(0xfc00);
        expect(f32ToF16Bits(2 ** -25)).toBe(0); // half the smallest subnormal: tie to even (zero)
        expect(f32ToF16Bits(Math.fround(2 ** -25 * 1.0001))).toBe(1);
    });

    it.skipIf(!hasGgufPy)("agrees with numpy's float16 cast on random float32 bit patterns", () => {
        const bits = new Uint32Array(20000);
        const rng = new Xoshiro128(7);
        for (let i = 0; i < bits.length; i++) bits[i] = rng.next();
        const f = new Float32Array(bits.buffer);
        const path = join(dir, "f32.bin");
        writeFileSync(path, new Uint8Array(bits.buffer));
        const theirs = new Uint16Array(Buffer.from(py(`
import numpy as np, sys
x = np.fromfile(${JSON.stringify(path)}, dtype=np.float32)
with np.errstate(all="ignore"): sys.stdout.write(x.astype(np.float16).view(np.uint16).tobytes().hex())
`), "hex").buffer.slice(0));
        let compared = 0;
        for (let i = 0; i < f.length; i++) {
            if (Number.isNaN(f[i])) continue; // numpy keeps NaN payloads; ggml canonicalises them
            expect(f32ToF16Bits(f[i]!), `0x${bits[i]!.toString(16)}`).toBe(theirs[i]);
            compared++;
        }
        expect(compared).toBeGreaterThan(19000);
    }, 30_000);
});

/** Reads block b of a quantized buffer in float64: [d, q values]. Written here, independently of src/. */
function readBlock(buf: Uint8Array, type: "q8_0" | "q4_0", b: number): { d: number; q: number[] } {
    const size = type === "q8_0" ? 34 : 18;
    const o = b * size;
    const d = f16BitsToF32(buf[o]! | (buf[o + 1]! << 8));
    const q: number[] = [];
    if (type === "q8_0") for (let j = 0; j < 32; j++) q.push(buf[o + 2 + j]! > 127 ? buf[o + 2 + j]! - 256 : buf[o + 2 + j]!);
    else {
        for (let j = 0; j < 16; j++) q[j] = (buf[o + 2 + j]! & 15) - 8;
        for (let j = 0; j < 16; j++) q[16 + j] = (buf[o + 2 + j]! >> 4) - 8;
    }
    return { d, q };
}

describe("Q8_0 / Q4_0 quantization", () => {
    const n = 32 * 512;
    const x = testFloats(n, 3);

    it("Q8_0: d = fp16(amax/127), each q is the nearest integer to x/d, |q| ≤ 127", () => {
        const buf = new Uint8Array((n / 32) * 34);
        quantizeQ8_0(x, buf);
        for (let b = 0; b < n / 32; b++) {
            const block = Array.from(x.subarray(b * 32, b * 32 + 32));
            const amax = Math.max(...block.map(Math.abs));
            const d32 = Math.fround(amax / 127);
            const { d, q } = readBlock(buf, "q8_0", b);
            expect(d).toBe(f16BitsToF32(f32ToF16Bits(d32)));
            for (let j = 0; j < 32; j++) {
                if (d32 === 0) { expect(q[j]).toBe(0); continue; }
                const exact = block[j]! / d32; // float64
                expect(Math.abs(q[j]!)).toBeLessThanOrEqual(127);
                // Nearest integer, except within float32 rounding of a .5 tie.
                const frac = Math.abs(exact - Math.trunc(exact));
                if (Math.abs(frac - 0.5) > 1e-5) expect(q[j]).toBe(Math.sign(exact) * Math.round(Math.abs(exact)) + 0);
                // Re-dequantized error: half a step, plus what rounding d to fp16 moved.
                expect(Math.abs(block[j]! - d * q[j]!)).toBeLessThanOrEqual(d32 / 2 + 127 * Math.abs(d - d32) + 1e-12);
            }
            if (d32 !== 0) expect(Math.max(...q.map(Math.abs))).toBe(127);
        }
        expect(Array.from(dequantizeQ8_0(buf, n))).toEqual(
            Array.from({ length: n }, (_, i) => { const { d, q } = readBlock(buf, "q8_0", i >> 5); return Math.fround(d * q[i & 31]!); }),
        );
    });

    it("Q4_0: d = fp16(max/-8) with the first max-magnitude value's sign, nibbles j | j+16 << 4, offset 8", () => {
        const buf = new Uint8Array((n / 32) * 18);
        quantizeQ4_0(x, buf);
        for (let b = 0; b < n / 32; b++) {
            const block = Array.from(x.subarray(b * 32, b * 32 + 32));
            let max = 0;
            for (const v of block) if (Math.abs(v) > Math.abs(max)) max = v;
            const d32 = Math.fround(max / -8);
            const { d, q } = readBlock(buf, "q4_0", b);
            expect(d).toBe(f16BitsToF32(f32ToF16Bits(d32)));
            for (let j = 0; j < 32; j++) {
                if (d32 === 0) { expect(q[j]).toBe(0); continue; }
                const exact = block[j]! / d32;
                // round(x/d) clamped to the nibble range [-8, 7]; the max itself is exactly -8.
                const want = Math.min(7, Math.floor(exact + 0.5));
                const frac = Math.abs(exact - Math.floor(exact));
                if (Math.abs(frac - 0.5) > 1e-5) expect(q[j], `block ${b} value ${j}`).toBe(want);
                if (block[j] === max) expect(q[j]).toBe(-8);
                const clip = exact > 7.5 ? Math.abs(d32) * (exact - 7) : 0; // -max maps to 7, one step short
                expect(Math.abs(block[j]! - d * q[j]!)).toBeLessThanOrEqual(Math.abs(d32) / 2 + clip + 8 * Math.abs(d - d32) + 1e-12);
            }
        }
        // The tie block (±1.5 alternating, first is -1.5): the first max wins, so d > 0 and -1.5 → -8.
        expect(readBlock(buf, "q4_0", 1).d).toBeGreaterThan(0);
        expect(Array.from(dequantizeQ4_0(buf, n))).toEqual(
            Array.from({ length: n }, (_, i) => { const { d, q } = readBlock(buf, "q4_0", i >> 5); return Math.fround(d * q[i & 31]!); }),
        );
    });

    it.skipIf(!hasGgufPy)("is bit-exact with gguf-py's numpy Q8_0 and Q4_0", () => {
        const path = join(dir, "x.bin");
        writeFileSync(path, new Uint8Array(x.buffer));
        const theirs = JSON.parse(py(`
import json, numpy as np
from gguf.quants import quantize
from gguf.constants import GGMLQuantizationType as T
x = np.fromfile(${JSON.stringify(path)}, dtype=np.float32).reshape(-1, 1024)
print(json.dumps({t: bytes(quantize(x, getattr(T, t.upper()))).hex() for t in ["q8_0", "q4_0"]}))
`)) as Record<string, string>;
        const q8 = new Uint8Array((n / 32) * 34);
        quantizeQ8_0(x, q8);
        const q4 = new Uint8Array((n / 32) * 18);
        quantizeQ4_0(x, q4);
        expect(Buffer.from(q8).toString("hex")).toBe(theirs.q8_0);
        expect(Buffer.from(q4).toString("hex")).toBe(theirs.q4_0);
    }, 30_000);
});

// Synthetic Q4_K_M and Q5_K_M models' blocks: not ggml's quantizers (those search each sub-block's scale),
// so what is checked is the layout (gguf-py's numpy dequantizers read our blocks as our
// dequantizers do, and a model made of them matches a float64 forward in test/native/forward)
// and the rounding error on normal weights, against the bounds of 4 and 6 bits.
describe("Q4_K / Q5_K / Q6_K quantization (synthetic Q4_K_M and Q5_K_M models)", () => {
    const n = 256 * 256;
    const normal = new Float32Array(n);
    new Xoshiro128(9).fillFromTable(normal, normalTable(0.02));
    normal.fill(0, 0, 256); // an all-zero block: every scale 0
    for (let j = 256; j < 512; j++) normal[j] = j % 2 ? 0.5 : -0.25; // two values per sub-block
    const relL2 = (a: Float32Array, b: Float32Array): number => {
        let num = 0, den = 0;
        for (let i = 0; i < a.length; i++) { num += (a[i]! - b[i]!) ** 2; den += b[i]! ** 2; }
        return Math.sqrt(num / den);
    };

    it("round trips normal weights within 4, 5 and 6 bits' rounding (relative L2 under 1/10, 1/20 and 1/40)", () => {
        const q4 = new Uint8Array((n / 256) * 144), q5 = new Uint8Array((n / 256) * 176), q6 = new Uint8Array((n / 256) * 210);
        quantizeQ4_K(normal, q4);
        quantizeQ5_K(normal, q5);
        quantizeQ6_K(normal, q6);
        const back4 = dequantizeQ4_K(q4, n), back5 = dequantizeQ5_K(q5, n), back6 = dequantizeQ6_K(q6, n);
        // uniform rounding over a sub-block's range: for 32 normal values about 4.1 sigma / 15
        // per step (Q4_K; / 31 for Q5_K), for 16 values about 2 x 2.0 sigma / 63 (Q6_K):
        // relative L2 step / sqrt(12); measured 0.078, 0.038, 0.019
        const e4 = relL2(back4, normal), e5 = relL2(back5, normal), e6 = relL2(back6, normal);
        expect(e4).toBeLessThan(0.1);
        expect(e5).toBeLessThan(1 / 20);
        expect(e6).toBeLessThan(1 / 40);
        expect(e5).toBeLessThan(e4 / 1.8);
        expect(e6).toBeLessThan(e4 / 3);
        expect(Array.from(dequantizeQ5_K(q5, 256)).every((v) => v === 0)).toBe(true);
        // the zero block stays zero; the two-valued block comes back exactly where a step fits it
        expect(Array.from(back4.subarray(0, 256)).every((v) => v === 0)).toBe(true);
        expect(Array.from(back6.subarray(0, 256)).every((v) => v === 0)).toBe(true);
        for (let j = 256; j < 512; j++) expect(Math.abs(back6[j]! - normal[j]!)).toBeLessThan(0.5 / 32 / 2 + 1e-3);
    });

    it.skipIf(!hasGgufPy)("reads as gguf-py's numpy dequantizers read it, bit for bit", () => {
        const x = testFloats(n, 4);
        const q4 = new Uint8Array((n / 256) * 144), q5 = new Uint8Array((n / 256) * 176), q6 = new Uint8Array((n / 256) * 210);
        quantizeQ4_K(x, q4);
        quantizeQ5_K(x, q5);
        quantizeQ6_K(x, q6);
        writeFileSync(join(dir, "q4_k.bin"), q4);
        writeFileSync(join(dir, "q5_k.bin"), q5);
        writeFileSync(join(dir, "q6_k.bin"), q6);
        const theirs = JSON.parse(py(`
import json, numpy as np
from gguf.quants import dequantize
from gguf.constants import GGMLQuantizationType as T
out = {}
for t, name in [(T.Q4_K, "q4_k"), (T.Q5_K, "q5_k"), (T.Q6_K, "q6_k")]:
    raw = np.fromfile(${JSON.stringify(dir)} + "/" + name + ".bin", dtype=np.uint8)
    out[name] = dequantize(raw, t).astype(np.float32).tobytes().hex()
print(json.dumps(out))
`)) as Record<string, string>;
        const hex = (f: Float32Array) => Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString("hex");
        expect(hex(dequantizeQ4_K(q4, n))).toBe(theirs.q4_k);
        expect(hex(dequantizeQ5_K(q5, n))).toBe(theirs.q5_k);
        expect(hex(dequantizeQ6_K(q6, n))).toBe(theirs.q6_k);
    }, 30_000);
});

describe("random weights", () => {
    it("inverse normal CDF matches known quantiles", () => {
        expect(inverseNormalCdf(0.5)).toBeCloseTo(0, 12);
        expect(inverseNormalCdf(0.975)).toBeCloseTo(1.959963984540054, 7);
        expect(inverseNormalCdf(0.8413447460685429)).toBeCloseTo(1, 7);
        expect(inverseNormalCdf(0.001)).toBeCloseTo(-3.090232306167813, 7);
    });

    it("draws N(0, std²) deterministically per seed and stream", () => {
        const draw = (seed: number, stream: number): Float32Array => {
            const out = new Float32Array(1 << 16);
            new Xoshiro128(seed, stream).fillFromTable(out, normalTable(0.5));
            return out;
        };
        const a = draw(1, 2);
        expect(draw(1, 2)).toEqual(a);
        expect(draw(2, 2)).not.toEqual(a);
        expect(draw(1, 3)).not.toEqual(a);
        expect(draw(2 ** 40 + 1, 2)).not.toEqual(a); // the high word of the seed counts
        let sum = 0, sq = 0;
        for (const v of a) { sum += v; sq += v * v; }
        const mean = sum / a.length, std = Math.sqrt(sq / a.length - mean * mean);
        expect(Math.abs(mean)).toBeLessThan(0.01);
        expect(std).toBeGreaterThan(0.49);
        expect(std).toBeLessThan(0.51);
    });
});
