// A small GGUF v3 reader: metadata and tensor infos only (the data section is never
// loaded). It reads a prefix of the file, parses it, and reads a longer prefix when the
// header runs past it, so a 5 GB model costs a few MB of reads. Every length from the
// file is checked against the file's size before use: a malformed file gives a clear
// LlamaError, never a huge allocation.

import { open } from "node:fs/promises";
import { LlamaError } from "../../errors.js";
import {
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GgufValueType,
    type GgufMetadata,
    type GgufScalarTypeName,
    type GgufTensorInfo,
    type GgufValue,
    type GgufValueTypeName,
    alignUp,
    tensorByteSize,
} from "./types.js";

export interface GgufFile {
    version: number;
    metadata: GgufMetadata;
    tensors: GgufTensorInfo[];
    alignment: number;
    /** Absolute file offset of the data section. */
    dataOffset: number;
    fileSize: number;
}

const typeNames = new Map<number, GgufValueTypeName>(
    Object.entries(GgufValueType).map(([name, id]) => [id, name as GgufValueTypeName]),
);
// ignoreBOM: a token may be U+FEFF itself (llama-spm has one); it must not be stripped.
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/** Thrown while parsing when the header continues past the bytes read so far. */
class NeedMore {
    constructor(readonly end: number) {}
}

class Cursor {
    pos = 0;
    private readonly view: DataView;
    constructor(
        private readonly buf: Uint8Array,
        private readonly fileSize: number,
    ) {
        this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    private take(n: number, what: string): number {
        const at = this.pos;
        const end = at + n;
        if (end > this.fileSize) throw new LlamaError("ERR_INVALID_MODEL", `GGUF ${what} at offset ${at} runs past the end of the file (${this.fileSize} bytes)`);
        if (end > this.buf.byteLength) throw new NeedMore(end);
        this.pos = end;
        return at;
    }
    u8(): number { return this.view.getUint8(this.take(1, "uint8")); }
    i8(): number { return this.view.getInt8(this.take(1, "int8")); }
    u16(): number { return this.view.getUint16(this.take(2, "uint16"), true); }
    i16(): number { return this.view.getInt16(this.take(2, "int16"), true); }
    u32(): number { return this.view.getUint32(this.take(4, "uint32"), true); }
    i32(): number { return this.view.getInt32(this.take(4, "int32"), true); }
    f32(): number { return this.view.getFloat32(this.take(4, "float32"), true); }
    f64(): number { return this.view.getFloat64(this.take(8, "float64"), true); }
    u64(): bigint { return this.view.getBigUint64(this.take(8, "uint64"), true); }
    i64(): bigint { return this.view.getBigInt64(this.take(8, "int64"), true); }
    /** A uint64 count or offset that must be a safe JS number no larger than limit. */
    size(what: string, limit: number): number {
        const v = this.u64();
        if (v > BigInt(Math.floor(limit))) throw new LlamaError("ERR_INVALID_MODEL", `GGUF ${what} ${v} is larger than possible for a ${this.fileSize}-byte file`);
        return Number(v);
    }
    str(what: string): string {
        const n = this.size(`${what} length`, this.fileSize);
        const at = this.take(n, what);
        return utf8.decode(this.buf.subarray(at, at + n));
    }
}

function readScalar(c: Cursor, type: GgufScalarTypeName, key: string): number | bigint | boolean | string {
    switch (type) {
        case "uint8": return c.u8();
        case "int8": return c.i8();
        case "uint16": return c.u16();
        case "int16": return c.i16();
        case "uint32": return c.u32();
        case "int32": return c.i32();
        case "float32": return c.f32();
        case "float64": return c.f64();
        case "uint64": return c.u64();
        case "int64": return c.i64();
        case "bool": {
            const b = c.u8();
            if (b > 1) throw new LlamaError("ERR_INVALID_MODEL", `GGUF bool value ${b} for ${key} is neither 0 nor 1`);
            return b === 1;
        }
        case "string": return c.str(`string value of ${key}`);
    }
}

function valueType(c: Cursor, key: string): GgufValueTypeName {
    const id = c.u32();
    const name = typeNames.get(id);
    if (name === undefined) throw new LlamaError("ERR_INVALID_MODEL", `GGUF key ${key} has unknown value type ${id}`);
    return name;
}

function readValue(c: Cursor, key: string, fileSize: number): GgufValue {
    const type = valueType(c, key);
    if (type !== "array") return { type, value: readScalar(c, type, key) } as GgufValue;
    const itemType = valueType(c, key);
    // Nested arrays are legal GGUF but nothing in the llama family uses them.
    if (itemType === "array") throw new LlamaError("ERR_INVALID_MODEL", `GGUF key ${key} is an array of arrays, which this reader does not support`);
    const count = c.size(`array length of ${key}`, fileSize);
    const value = new Array<number | bigint | boolean | string>(count);
    for (let i = 0; i < count; i++) value[i] = readScalar(c, itemType, key);
    return { type: "array", itemType, value };
}

/** Parses a GGUF header from a prefix of a file of fileSize bytes. */
export function parseGguf(buf: Uint8Array, fileSize = buf.byteLength): GgufFile {
    const result = tryParse(buf, fileSize);
    if (result instanceof NeedMore) throw new LlamaError("ERR_INVALID_MODEL", `GGUF header needs ${result.end} bytes but only ${buf.byteLength} were given`);
    return result;
}

function tryParse(buf: Uint8Array, fileSize: number): GgufFile | NeedMore {
    const c = new Cursor(buf, fileSize);
    try {
        const magic = c.u32();
        if (magic !== GGUF_MAGIC) throw new LlamaError("ERR_INVALID_MODEL", `Not a GGUF file (magic 0x${magic.toString(16).padStart(8, "0")})`);
        const version = c.u32();
        if (version !== 2 && version !== 3) throw new LlamaError("ERR_INVALID_MODEL", `Unsupported GGUF version ${version} (expected 3)`);
        // Every tensor info takes at least 8+4+8+4+8 bytes and every KV at least 8+4 bytes.
        const tensorCount = c.size("tensor count", fileSize / 32);
        const kvCount = c.size("metadata count", fileSize / 12);

        const metadata: GgufMetadata = new Map();
        for (let i = 0; i < kvCount; i++) {
            const key = c.str("metadata key");
            if (metadata.has(key)) throw new LlamaError("ERR_INVALID_MODEL", `GGUF metadata key ${key} appears twice`);
            metadata.set(key, readValue(c, key, fileSize));
        }

        let alignment = GGUF_DEFAULT_ALIGNMENT;
        const a = metadata.get("general.alignment");
        if (a !== undefined) {
            if (a.type !== "uint32" || a.value === 0 || (a.value & (a.value - 1)) !== 0) {
                throw new LlamaError("ERR_INVALID_MODEL", "GGUF general.alignment must be a uint32 power of two");
            }
            alignment = a.value;
        }

        const tensors: GgufTensorInfo[] = [];
        for (let i = 0; i < tensorCount; i++) {
            const name = c.str("tensor name");
            const nDims = c.u32();
            if (nDims < 1 || nDims > 4) throw new LlamaError("ERR_INVALID_MODEL", `GGUF tensor ${name} has ${nDims} dimensions (1 to 4 allowed)`);
            const dims: number[] = [];
            for (let d = 0; d < nDims; d++) dims.push(c.size(`dimension ${d} of ${name}`, Number.MAX_SAFE_INTEGER));
            const type = c.u32();
            const offset = c.size(`offset of ${name}`, fileSize);
            if (offset % alignment !== 0) throw new LlamaError("ERR_INVALID_MODEL", `GGUF tensor ${name} offset ${offset} is not aligned to ${alignment}`);
            tensors.push({ name, dims, type, offset });
        }
        return { version, metadata, tensors, alignment, dataOffset: alignUp(c.pos, alignment), fileSize };
    } catch (e) {
        if (e instanceof NeedMore) return e;
        throw e;
    }
}

/** Reads the metadata and tensor infos of a GGUF file. */
export async function readGguf(path: string): Promise<GgufFile> {
    let fh;
    try {
        fh = await open(path, "r");
    } catch (e) {
        const code = (e as NodeJS.ErrnoException).code === "ENOENT" ? "ERR_FILE_NOT_FOUND" : "ERR_INVALID_MODEL";
        throw new LlamaError(code, `Cannot open GGUF file ${path}: ${(e as Error).message}`, { cause: e });
    }
    try {
        const fileSize = (await fh.stat()).size;
        let want = Math.min(fileSize, 1 << 20);
        for (;;) {
            const buf = new Uint8Array(want);
            const { bytesRead } = await fh.read(buf, 0, want, 0);
            const result = tryParse(buf.subarray(0, bytesRead), fileSize);
            if (!(result instanceof NeedMore)) return result;
            // Grow geometrically so a long header costs O(log n) re-parses.
            want = Math.min(fileSize, Math.max(result.end, want * 2));
        }
    } finally {
        await fh.close();
    }
}

/** Reads one tensor's raw bytes (for tests and tools; loads the whole tensor). */
export async function readTensorBytes(path: string, file: GgufFile, name: string): Promise<Uint8Array> {
    const info = file.tensors.find((t) => t.name === name);
    if (!info) throw new LlamaError("ERR_INVALID_MODEL", `GGUF file ${path} has no tensor ${name}`);
    const byteSize = tensorByteSize(info.type, info.dims);
    const at = file.dataOffset + info.offset;
    if (at + byteSize > file.fileSize) throw new LlamaError("ERR_INVALID_MODEL", `GGUF tensor ${name} runs past the end of ${path}`);
    const fh = await open(path, "r");
    try {
        const buf = new Uint8Array(byteSize);
        await fh.read(buf, 0, byteSize, at);
        return buf;
    } finally {
        await fh.close();
    }
}
