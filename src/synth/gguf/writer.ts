// A streaming GGUF v3 writer. The header (metadata + tensor infos with their data
// offsets) is encoded first, since every offset follows from the tensors' types and
// shapes; then each tensor's bytes are pulled from its source one chunk at a time and
// written with alignment padding. No tensor is ever held whole in memory, so writing an
// 8B model costs only the chunk buffers of its source.

import { mkdir, open, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { LlamaError } from "../../errors.js";
import {
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGUF_VERSION,
    GgufValueType,
    type GgmlTypeId,
    type GgufMetadata,
    type GgufScalarTypeName,
    type GgufTensorInfo,
    type GgufValue,
    alignUp,
    tensorByteSize,
} from "./types.js";

export interface GgufTensorSource {
    name: string;
    /** ggml order: ne0 (the contiguous dimension) first. */
    dims: readonly number[];
    type: GgmlTypeId;
    /** Yields the tensor's bytes in order. A chunk may be reused once the next is asked for. */
    data(): Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
}

export interface WriteGgufOptions {
    /** Data alignment; written as general.alignment when not the default. @default 32 */
    alignment?: number | undefined;
    /** Called after each chunk with bytes written so far and the final file size. */
    onProgress?: ((written: number, total: number) => void) | undefined;
    signal?: AbortSignal | undefined;
}

const utf8 = new TextEncoder();

/** Little-endian byte sink that grows by doubling. */
class ByteWriter {
    private buf = new Uint8Array(1 << 16);
    private view = new DataView(this.buf.buffer);
    pos = 0;
    private ensure(n: number): void {
        if (this.pos + n <= this.buf.byteLength) return;
        let size = this.buf.byteLength * 2;
        while (size < this.pos + n) size *= 2;
        const next = new Uint8Array(size);
        next.set(this.buf.subarray(0, this.pos));
        this.buf = next;
        this.view = new DataView(next.buffer);
    }
    u8(v: number): void { this.ensure(1); this.view.setUint8(this.pos, v); this.pos += 1; }
    i8(v: number): void { this.ensure(1); this.view.setInt8(this.pos, v); this.pos += 1; }
    u16(v: number): void { this.ensure(2); this.view.setUint16(this.pos, v, true); this.pos += 2; }
    i16(v: number): void { this.ensure(2); this.view.setInt16(this.pos, v, true); this.pos += 2; }
    u32(v: number): void { this.ensure(4); this.view.setUint32(this.pos, v, true); this.pos += 4; }
    i32(v: number): void { this.ensure(4); this.view.setInt32(this.pos, v, true); this.pos += 4; }
    f32(v: number): void { this.ensure(4); this.view.setFloat32(this.pos, v, true); this.pos += 4; }
    f64(v: number): void { this.ensure(8); this.view.setFloat64(this.pos, v, true); this.pos += 8; }
    u64(v: bigint): void { this.ensure(8); this.view.setBigUint64(this.pos, v, true); this.pos += 8; }
    i64(v: bigint): void { this.ensure(8); this.view.setBigInt64(this.pos, v, true); this.pos += 8; }
    str(s: string): void {
        const bytes = utf8.encode(s);
        this.u64(BigInt(bytes.byteLength));
        this.ensure(bytes.byteLength);
        this.buf.set(bytes, this.pos);
        this.pos += bytes.byteLength;
    }
    pad(alignment: number): void {
        const end = alignUp(this.pos, alignment);
        this.ensure(end - this.pos);
        this.buf.fill(0, this.pos, end);
        this.pos = end;
    }
    bytes(): Uint8Array { return this.buf.subarray(0, this.pos); }
}

const intRanges: Partial<Record<GgufScalarTypeName, readonly [number, number]>> = {
    uint8: [0, 0xff], int8: [-0x80, 0x7f], uint16: [0, 0xffff], int16: [-0x8000, 0x7fff],
    uint32: [0, 0xffffffff], int32: [-0x80000000, 0x7fffffff],
};

function badValue(key: string, type: string, v: unknown): LlamaError {
    return new LlamaError("ERR_INVALID_OPTION", `GGUF key ${key}: ${String(v)} is not a valid ${type}`);
}

function writeScalar(w: ByteWriter, type: GgufScalarTypeName, v: unknown, key: string): void {
    const range = intRanges[type];
    if (range && (typeof v !== "number" || !Number.isInteger(v) || v < range[0] || v > range[1])) throw badValue(key, type, v);
    switch (type) {
        case "uint8": return w.u8(v as number);
        case "int8": return w.i8(v as number);
        case "uint16": return w.u16(v as number);
        case "int16": return w.i16(v as number);
        case "uint32": return w.u32(v as number);
        case "int32": return w.i32(v as number);
        case "float32":
        case "float64":
            if (typeof v !== "number") throw badValue(key, type, v);
            return type === "float32" ? w.f32(v) : w.f64(v);
        case "uint64":
        case "int64":
            if (typeof v !== "bigint") throw badValue(key, type, v);
            if (type === "uint64" ? v < 0n || v >= 1n << 64n : v < -(1n << 63n) || v >= 1n << 63n) throw badValue(key, type, v);
            return type === "uint64" ? w.u64(v) : w.i64(v);
        case "bool":
            if (typeof v !== "boolean") throw badValue(key, type, v);
            return w.u8(v ? 1 : 0);
        case "string":
            if (typeof v !== "string") throw badValue(key, type, v);
            return w.str(v);
    }
}

function writeValue(w: ByteWriter, key: string, value: GgufValue): void {
    w.u32(GgufValueType[value.type]);
    if (value.type !== "array") return writeScalar(w, value.type, value.value, key);
    w.u32(GgufValueType[value.itemType]);
    w.u64(BigInt(value.value.length));
    for (const item of value.value) writeScalar(w, value.itemType, item, key);
}

export interface EncodedHeader {
    /** Header bytes, already padded to the alignment: data starts right after. */
    header: Uint8Array;
    tensors: GgufTensorInfo[];
    /** Padded size of the data section. */
    dataSize: number;
    alignment: number;
}

function resolveAlignment(metadata: GgufMetadata, requested: number | undefined): { alignment: number; metadata: GgufMetadata } {
    const given = metadata.get("general.alignment");
    if (given !== undefined && given.type !== "uint32") throw new LlamaError("ERR_INVALID_OPTION", "general.alignment must be a uint32");
    const alignment = requested ?? (given?.value as number | undefined) ?? GGUF_DEFAULT_ALIGNMENT;
    if (!Number.isInteger(alignment) || alignment < 1 || (alignment & (alignment - 1)) !== 0) {
        throw new LlamaError("ERR_INVALID_OPTION", `GGUF alignment must be a power of two, not ${alignment}`);
    }
    if (given !== undefined && given.value !== alignment) {
        throw new LlamaError("ERR_INVALID_OPTION", `alignment ${alignment} disagrees with general.alignment ${String(given.value)}`);
    }
    if (given === undefined && alignment !== GGUF_DEFAULT_ALIGNMENT) {
        // Readers assume 32 unless told: the key must be present for any other value.
        metadata = new Map(metadata).set("general.alignment", { type: "uint32", value: alignment });
    }
    return { alignment, metadata };
}

/** Encodes magic, version, counts, metadata and tensor infos, with offsets laid out in order. */
export function encodeGgufHeader(
    metadataIn: GgufMetadata,
    sources: readonly Pick<GgufTensorSource, "name" | "dims" | "type">[],
    alignmentIn?: number,
): EncodedHeader {
    const { alignment, metadata } = resolveAlignment(metadataIn, alignmentIn);
    const w = new ByteWriter();
    w.u32(GGUF_MAGIC);
    w.u32(GGUF_VERSION);
    w.u64(BigInt(sources.length));
    w.u64(BigInt(metadata.size));
    for (const [key, value] of metadata) {
        w.str(key);
        writeValue(w, key, value);
    }
    const names = new Set<string>();
    const tensors: GgufTensorInfo[] = [];
    let offset = 0;
    for (const s of sources) {
        if (names.has(s.name)) throw new LlamaError("ERR_INVALID_OPTION", `Tensor ${s.name} is listed twice`);
        names.add(s.name);
        if (s.dims.length < 1 || s.dims.length > 4 || s.dims.some((d) => !Number.isSafeInteger(d) || d < 1)) {
            throw new LlamaError("ERR_INVALID_OPTION", `Tensor ${s.name} has invalid dims [${s.dims.join(", ")}]`);
        }
        const size = tensorByteSize(s.type, s.dims);
        w.str(s.name);
        w.u32(s.dims.length);
        for (const d of s.dims) w.u64(BigInt(d));
        w.u32(s.type);
        w.u64(BigInt(offset));
        tensors.push({ name: s.name, dims: [...s.dims], type: s.type, offset });
        offset = alignUp(offset + size, alignment);
    }
    w.pad(alignment);
    return { header: w.bytes(), tensors, dataSize: offset, alignment };
}

/**
 * Writes a GGUF file, streaming each tensor's data from its source. The file appears at
 * path only when complete (it is written beside it, then renamed).
 */
export async function writeGguf(
    path: string,
    metadata: GgufMetadata,
    sources: readonly GgufTensorSource[],
    options: WriteGgufOptions = {},
): Promise<{ bytes: number; tensors: GgufTensorInfo[] }> {
    const { header, tensors, dataSize, alignment } = encodeGgufHeader(metadata, sources, options.alignment);
    const total = header.byteLength + dataSize;
    const partial = `${path}.partial-${process.pid}`;
    await mkdir(dirname(path), { recursive: true }).catch(() => undefined); // open() below reports the real problem
    let fh;
    try {
        fh = await open(partial, "w");
    } catch (e) {
        throw new LlamaError("ERR_INVALID_OPTION", `Cannot write ${path}: ${(e as Error).message}`, { cause: e });
    }
    let ok = false;
    try {
        let written = 0;
        const put = async (bytes: Uint8Array): Promise<void> => {
            options.signal?.throwIfAborted();
            let done = 0;
            while (done < bytes.byteLength) {
                const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done, written + done);
                done += bytesWritten;
            }
            written += bytes.byteLength;
            options.onProgress?.(written, total);
        };
        await put(header);
        const zeros = new Uint8Array(alignment);
        for (let i = 0; i < sources.length; i++) {
            const source = sources[i]!;
            const info = tensors[i]!;
            const size = tensorByteSize(info.type, info.dims);
            let got = 0;
            for await (const chunk of source.data()) {
                got += chunk.byteLength;
                if (got > size) break;
                await put(chunk);
            }
            if (got !== size) {
                throw new LlamaError("ERR_INVALID_OPTION", `Tensor ${info.name} produced ${got > size ? "more than" : got} bytes; its type and shape need ${size}`);
            }
            const padding = alignUp(size, alignment) - size;
            if (padding > 0) await put(zeros.subarray(0, padding));
        }
        // No fsync: these are regenerable files, and syncing gigabytes would dominate the run.
        ok = true;
    } catch (e) {
        if (options.signal?.aborted) throw new LlamaError("ERR_ABORTED", `Writing ${path} was aborted`, { cause: e });
        if (e instanceof LlamaError) throw e;
        // I/O failures (a full disk) and errors thrown by a tensor's source.
        throw new LlamaError("ERR_INVALID_OPTION", `Writing ${path} failed: ${(e as Error).message}`, { cause: e });
    } finally {
        await fh.close();
        if (!ok) await unlink(partial).catch(() => undefined);
    }
    await rename(partial, path);
    return { bytes: total, tensors };
}
