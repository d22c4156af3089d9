// A GGUF file as editable structure: header fields decoded with their wire types, tensor infos
// with their offsets as written, and the data section kept as raw bytes. Encoding writes back
// exactly what the structure says (including offsets, counts and types that disagree with
// the data), which is what the hardening tests and the mutator (test/fuzz/mutate.ts) need: a
// weight retyped F32 -> I32 keeps its bytes, a dimension set to 2^40 is written as such.
// Independent of src/synth's reader and writer on purpose: those refuse what this must write.

export const T = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, str: 8, arr: 9, u64: 10, i64: 11, f64: 12 } as const;

export type Scalar = number | bigint | boolean | string;
export interface Kv {
    key: string;
    type: number;
    /** For arrays: the element type. */
    itemType?: number;
    value: Scalar | Scalar[];
}
export interface TensorInfo {
    name: string;
    dims: bigint[];
    type: number;
    offset: bigint;
}
export interface Gguf {
    version: number;
    kvs: Kv[];
    tensors: TensorInfo[];
    alignment: number;
    /** Everything after the header's padding. */
    data: Uint8Array;
}

class Reader {
    pos = 0;
    readonly view: DataView;
    constructor(readonly buf: Uint8Array) {
        this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    need(n: number): number {
        if (this.pos + n > this.buf.byteLength) throw new RangeError(`GGUF header runs past the end at ${this.pos}`);
        const at = this.pos;
        this.pos += n;
        return at;
    }
    u32(): number { return this.view.getUint32(this.need(4), true); }
    u64(): bigint { return this.view.getBigUint64(this.need(8), true); }
    str(): string {
        const n = Number(this.u64());
        const at = this.need(n);
        return Buffer.from(this.buf.buffer, this.buf.byteOffset + at, n).toString("utf8");
    }
    scalar(type: number): Scalar {
        const v = this.view;
        switch (type) {
            case T.u8: return v.getUint8(this.need(1));
            case T.i8: return v.getInt8(this.need(1));
            case T.u16: return v.getUint16(this.need(2), true);
            case T.i16: return v.getInt16(this.need(2), true);
            case T.u32: return v.getUint32(this.need(4), true);
            case T.i32: return v.getInt32(this.need(4), true);
            case T.f32: return v.getFloat32(this.need(4), true);
            case T.bool: return v.getUint8(this.need(1)) !== 0;
            case T.str: return this.str();
            case T.u64: return v.getBigUint64(this.need(8), true);
            case T.i64: return v.getBigInt64(this.need(8), true);
            case T.f64: return v.getFloat64(this.need(8), true);
            default: throw new RangeError(`unknown GGUF value type ${type}`);
        }
    }
}

export function decodeGguf(buf: Uint8Array): Gguf {
    const r = new Reader(buf);
    if (r.u32() !== 0x46554747) throw new RangeError("not a GGUF file");
    const version = r.u32();
    const nTensors = Number(r.u64());
    const nKv = Number(r.u64());
    const kvs: Kv[] = [];
    for (let i = 0; i < nKv; i++) {
        const key = r.str();
        const type = r.u32();
        if (type === T.arr) {
            const itemType = r.u32();
            const n = Number(r.u64());
            const value: Scalar[] = [];
            for (let j = 0; j < n; j++) value.push(r.scalar(itemType));
            kvs.push({ key, type, itemType, value });
        } else {
            kvs.push({ key, type, value: r.scalar(type) });
        }
    }
    const tensors: TensorInfo[] = [];
    for (let i = 0; i < nTensors; i++) {
        const name = r.str();
        const nd = r.u32();
        const dims: bigint[] = [];
        for (let d = 0; d < nd; d++) dims.push(r.u64());
        const type = r.u32();
        tensors.push({ name, dims, type, offset: r.u64() });
    }
    const al = kvs.find((k) => k.key === "general.alignment");
    const alignment = typeof al?.value === "number" && al.value > 0 ? al.value : 32;
    const dataStart = Math.ceil(r.pos / alignment) * alignment;
    return { version, kvs, tensors, alignment, data: buf.subarray(Math.min(dataStart, buf.byteLength)) };
}

// One growing buffer, and a scratch for scalars: a mutant of a 150K-token vocabulary writes
// ~600K values, and a Buffer per value made each such mutant take 1.2-1.8 s to encode.
class Writer {
    buf = Buffer.allocUnsafe(1 << 16);
    size = 0;
    readonly scratch = Buffer.alloc(8);
    private ensure(n: number): void {
        if (this.size + n <= this.buf.length) return;
        const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.size + n));
        this.buf.copy(grown, 0, 0, this.size);
        this.buf = grown;
    }
    push(b: Uint8Array): void {
        this.ensure(b.length);
        this.buf.set(b, this.size);
        this.size += b.length;
    }
    bytes(): Buffer {
        return this.buf.subarray(0, this.size);
    }
    u32(v: number): void { this.scratch.writeUInt32LE(v >>> 0); this.push(this.scratch.subarray(0, 4)); }
    u64(v: bigint | number): void {
        if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) {
            this.scratch.writeUInt32LE(v % 2 ** 32, 0);
            this.scratch.writeUInt32LE(Math.floor(v / 2 ** 32), 4);
        } else {
            this.scratch.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)));
        }
        this.push(this.scratch);
    }
    str(s: string): void {
        const n = Buffer.byteLength(s, "utf8");
        this.u64(n);
        this.ensure(n);
        this.size += this.buf.write(s, this.size, n, "utf8");
    }
    scalar(type: number, v: Scalar): void {
        const b = this.scratch.fill(0);
        // A mutant may give a value of another type (an array of strings retyped to u64):
        // numeric types then get the string's length or the boolean's 0/1.
        if (type !== T.str && typeof v === "string") v = v.length;
        if (type !== T.str && typeof v === "boolean") v = v ? 1 : 0;
        switch (type) {
            case T.u8: b.writeUInt8(Number(v) & 0xff); return this.push(b.subarray(0, 1));
            case T.i8: b.writeInt8(((Number(v) << 24) >> 24)); return this.push(b.subarray(0, 1));
            case T.u16: b.writeUInt16LE(Number(v) & 0xffff); return this.push(b.subarray(0, 2));
            case T.i16: b.writeInt16LE(((Number(v) << 16) >> 16)); return this.push(b.subarray(0, 2));
            case T.u32: b.writeUInt32LE(Number(v) >>> 0); return this.push(b.subarray(0, 4));
            case T.i32: b.writeInt32LE(Number(v) | 0); return this.push(b.subarray(0, 4));
            case T.f32: b.writeFloatLE(Number(v)); return this.push(b.subarray(0, 4));
            case T.bool: b.writeUInt8(v ? 1 : 0); return this.push(b.subarray(0, 1));
            case T.str: return this.str(String(v));
            case T.u64: b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(typeof v === "number" ? Math.trunc(v) : (v as bigint)))); return this.push(b);
            case T.i64: b.writeBigInt64LE(BigInt.asIntN(64, BigInt(typeof v === "number" ? Math.trunc(v) : (v as bigint)))); return this.push(b);
            case T.f64: b.writeDoubleLE(Number(v)); return this.push(b);
            default: this.u32(0); // an unknown type id: write something of some size
        }
    }
}

export interface EncodeOverrides {
    /** Lie about the counts in the header. */
    nTensors?: bigint;
    nKv?: bigint;
}

export function encodeGguf(g: Gguf, o: EncodeOverrides = {}): Buffer {
    const w = new Writer();
    w.u32(0x46554747);
    w.u32(g.version);
    w.u64(o.nTensors ?? BigInt(g.tensors.length));
    w.u64(o.nKv ?? BigInt(g.kvs.length));
    for (const kv of g.kvs) {
        w.str(kv.key);
        w.u32(kv.type);
        if (kv.type === T.arr) {
            const items = Array.isArray(kv.value) ? kv.value : [kv.value];
            w.u32(kv.itemType ?? T.u8);
            w.u64(items.length);
            for (const it of items) w.scalar(kv.itemType ?? T.u8, it);
        } else {
            w.scalar(kv.type, kv.value as Scalar);
        }
    }
    for (const t of g.tensors) {
        w.str(t.name);
        w.u32(t.dims.length);
        for (const d of t.dims) w.u64(d);
        w.u32(t.type);
        w.u64(t.offset);
    }
    const pad = (g.alignment - (w.size % g.alignment)) % g.alignment;
    w.push(Buffer.alloc(pad));
    w.push(g.data);
    return w.bytes();
}

/** The value of a key (undefined when absent). */
export function getKv(g: Gguf, key: string): Kv | undefined {
    return g.kvs.find((k) => k.key === key);
}

/** Sets (or adds) a key; `undefined` removes it. */
export function setKv(g: Gguf, key: string, kv: Omit<Kv, "key"> | undefined): void {
    const i = g.kvs.findIndex((k) => k.key === key);
    if (kv === undefined) {
        if (i >= 0) g.kvs.splice(i, 1);
        return;
    }
    const full = { key, ...kv };
    if (i >= 0) g.kvs[i] = full;
    else g.kvs.push(full);
}

/** A deep copy (the data bytes are shared: encoding copies them). */
export function cloneGguf(g: Gguf): Gguf {
    return {
        version: g.version,
        alignment: g.alignment,
        data: g.data,
        kvs: g.kvs.map((k) => ({ ...k, value: Array.isArray(k.value) ? [...k.value] : k.value })),
        tensors: g.tensors.map((t) => ({ ...t, dims: [...t.dims] })),
    };
}
