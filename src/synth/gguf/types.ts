// GGUF v3 constants and value shapes (spec: ggml/docs/gguf.md, ggml/include/gguf.h
// in the pinned llama.cpp). Values keep their wire type so that a vocabulary copied
// from one file into another is written back byte for byte the same.

/** "GGUF" read as a little-endian uint32. */
export const GGUF_MAGIC = 0x46554747;
export const GGUF_VERSION = 3;
/** GGUF_DEFAULT_ALIGNMENT in gguf.h: used when general.alignment is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Wire ids of metadata value types (enum gguf_type). */
export const GgufValueType = {
    uint8: 0,
    int8: 1,
    uint16: 2,
    int16: 3,
    uint32: 4,
    int32: 5,
    float32: 6,
    bool: 7,
    string: 8,
    array: 9,
    uint64: 10,
    int64: 11,
    float64: 12,
} as const;
export type GgufValueTypeName = keyof typeof GgufValueType;
export type GgufScalarTypeName = Exclude<GgufValueTypeName, "array">;
export type GgufNumberTypeName = Exclude<GgufScalarTypeName, "bool" | "string" | "uint64" | "int64">;

/** One metadata value with its wire type. 64-bit integers are bigints so no bits are lost. */
export type GgufValue =
    | { type: GgufNumberTypeName; value: number }
    | { type: "uint64" | "int64"; value: bigint }
    | { type: "bool"; value: boolean }
    | { type: "string"; value: string }
    | { type: "array"; itemType: GgufScalarTypeName; value: readonly (number | bigint | boolean | string)[] };

export type GgufMetadata = Map<string, GgufValue>;

/** ggml_type ids (ggml.h) for the types this package reads sizes of. */
export const GgmlType = {
    F32: 0,
    F16: 1,
    Q4_0: 2,
    Q4_1: 3,
    Q5_0: 6,
    Q5_1: 7,
    Q8_0: 8,
    Q8_1: 9,
    Q2_K: 10,
    Q3_K: 11,
    Q4_K: 12,
    Q5_K: 13,
    Q6_K: 14,
    Q8_K: 15,
    I8: 24,
    I16: 25,
    I32: 26,
    I64: 27,
    F64: 28,
    BF16: 30,
} as const;
export type GgmlTypeId = number;

/** [elements per block, bytes per block] from ggml.c's type_traits table. */
const typeLayout: Record<number, readonly [number, number]> = {
    [GgmlType.F32]: [1, 4],
    [GgmlType.F16]: [1, 2],
    [GgmlType.Q4_0]: [32, 18],
    [GgmlType.Q4_1]: [32, 20],
    [GgmlType.Q5_0]: [32, 22],
    [GgmlType.Q5_1]: [32, 24],
    [GgmlType.Q8_0]: [32, 34],
    [GgmlType.Q8_1]: [32, 36],
    [GgmlType.Q2_K]: [256, 84],
    [GgmlType.Q3_K]: [256, 110],
    [GgmlType.Q4_K]: [256, 144],
    [GgmlType.Q5_K]: [256, 176],
    [GgmlType.Q6_K]: [256, 210],
    [GgmlType.Q8_K]: [256, 292],
    [GgmlType.I8]: [1, 1],
    [GgmlType.I16]: [1, 2],
    [GgmlType.I32]: [1, 4],
    [GgmlType.I64]: [1, 8],
    [GgmlType.F64]: [1, 8],
    [GgmlType.BF16]: [1, 2],
};

/** Block layout of a ggml type, or undefined for a type this table does not know. */
export function ggmlTypeLayout(type: GgmlTypeId): { blockSize: number; typeSize: number } | undefined {
    const layout = typeLayout[type];
    return layout && { blockSize: layout[0], typeSize: layout[1] };
}

/** Bytes of a tensor's data (ggml_nbytes for a contiguous tensor); rows must hold whole blocks. */
export function tensorByteSize(type: GgmlTypeId, dims: readonly number[]): number {
    const layout = ggmlTypeLayout(type);
    if (!layout) throw new RangeError(`Unknown ggml type ${type}`);
    const ne0 = dims[0] ?? 1;
    if (ne0 % layout.blockSize !== 0) {
        throw new RangeError(`Row size ${ne0} is not a multiple of the block size ${layout.blockSize} of ggml type ${type}`);
    }
    let rows = 1;
    for (let i = 1; i < dims.length; i++) rows *= dims[i]!;
    return (ne0 / layout.blockSize) * layout.typeSize * rows;
}

export interface GgufTensorInfo {
    name: string;
    /** ggml order: ne0 (the contiguous dimension) first. */
    dims: number[];
    type: GgmlTypeId;
    /** Offset from the start of the data section, a multiple of the alignment. */
    offset: number;
}

export function alignUp(n: number, alignment: number): number {
    return Math.ceil(n / alignment) * alignment;
}
