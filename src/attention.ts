// The fused CPU attention kernels from TypeScript: kernelStats() (public), and the kernel-level
// pieces that tests and the attention benchmark drive (one FLASH_ATTN_EXT node built from typed
// arrays; timing sessions over large random caches; a read-bandwidth probe).
import { binding } from "./binding.js";
import { callNative, LlamaError } from "./errors.js";
import { invalidOption, is } from "./validate.js";

export interface AttentionKernelStats {
    /** Attention ops computed by llamafuse's fused kernels. */
    fused: number;
    /** Ops on contexts with `attention: "fused"` that the kernels declined (ggml computed them). */
    declined: number;
}

/** Process-wide counters of attention ops (CPU), since start or the last reset. */
export function kernelStats(): AttentionKernelStats {
    return binding().kernelStats();
}

export function kernelStatsReset(): void {
    binding().kernelStatsReset();
}

/** K/V cache element types the op can be built with; the fused kernels take f16 and q8_0. */
export type AttentionKvType = "f16" | "q8_0" | "f32";
/** fused: our kernels (where they accept); ggml: ggml's CPU kernel; ref: ggml's plain reference path. */
export type AttentionRunMode = "fused" | "ggml" | "ref";

/** One FLASH_ATTN_EXT op's shape and options, resolved (every field present). */
export interface AttentionOpShape {
    DK: number;
    DV: number;
    nTokens: number;
    nHead: number;
    nHeadKv: number;
    nKv: number;
    nStream: number;
    kvType: AttentionKvType;
    /** Rows of the f16 mask (>= nTokens), or 0 for no mask. */
    maskRows: number;
    /** Mask heads: 1 (broadcast, as llama.cpp builds it) or a divisor of nHead. */
    maskHeads: number;
    sinks: boolean;
    scale: number;
    maxBias: number;
    softcap: number;
}

/**
 * Inputs in llama.cpp's memory layout (innermost first):
 * q [DK, nHead, nTokens, nStream] f32; k [DK, nHeadKv, nKv, nStream] and v [DV, ...] raw cache
 * rows (f16 bits, q8_0 blocks or f32); mask [nKv, maskRows, maskHeads, nStream] f16 bits;
 * sinkValues [nHead]. The output is [DV, nHead, nTokens, nStream] f32.
 */
export interface AttentionComputeSpec extends AttentionOpShape {
    q: Float32Array;
    k: Uint8Array;
    v: Uint8Array;
    mask?: Uint16Array;
    sinkValues?: Float32Array;
    threads: number;
    mode: AttentionRunMode;
}

export interface AttentionBenchShape extends AttentionOpShape {
    /** Distinct K/V caches (one op each per run), so the working set exceeds the caches. */
    layers: number;
    threads: number;
}

/** Opaque handle of a native benchmark session. */
export type NativeAttentionSession = { readonly __attentionSession: unique symbol };

/** The addon's attention functions in every build (members of NativeBinding). */
export interface NativeAttentionBinding {
    kernelStats(): AttentionKernelStats;
    kernelStatsReset(): void;
    attentionKernelInfo(): { simd: boolean };
    /** Whether the development-only functions below are built in (LLAMAFUSE_DEV_BINDINGS). */
    devBindings: boolean;
}

/**
 * Development-only attention functions (native/attention_binding.cpp): present only in addons
 * built with LLAMAFUSE_DEV_BINDINGS (a development checkout's `npm run build`), never in
 * published or prebuilt ones.
 */
export interface NativeAttentionDevBinding {
    attentionForcePortable(on: boolean): void;
    /** Synchronous: blocks the event loop; for tests with small shapes only. */
    attentionCompute(spec: AttentionComputeSpec): Float32Array;
    attentionBenchCreate(shape: AttentionBenchShape): Promise<NativeAttentionSession>;
    /** Microseconds per op (graph time / layers), one entry per repetition: wall clock, and process CPU time. */
    attentionBenchRun(session: NativeAttentionSession, mode: AttentionRunMode, reps: number): Promise<{ wallUs: Float64Array; cpuUs: Float64Array }>;
    attentionBenchFree(session: NativeAttentionSession): void;
    /** GB/s per repetition, `threads` threads reading disjoint slices of a `bytes` buffer. */
    measureReadBandwidth(bytes: number, threads: number, reps: number): Promise<Float64Array>;
}

/** Whether this addon has the development-only attention functions (tests and benchmarks). */
export function hasDevBindings(): boolean {
    return binding().devBindings === true;
}

function devBinding(): NativeAttentionDevBinding {
    const b = binding();
    if (b.devBindings !== true) {
        throw new LlamaError(
            "ERR_UNSUPPORTED",
            "this addon was built without the development-only attention bindings (build a development checkout with npm run build, or LLAMAFUSE_DEV_BINDINGS=1)",
        );
    }
    return b as unknown as NativeAttentionDevBinding;
}

/** Bytes of one cache row of `n` elements. */
export function kvRowBytes(type: AttentionKvType, n: number): number {
    if (type === "f16") return 2 * n;
    if (type === "f32") return 4 * n;
    return (n / 32) * 34;
}

const posInt = (v: unknown): v is number => is.integer(v) && (v as number) > 0;

/** Checks everything ggml would assert on, so a bad spec throws here instead of aborting. */
export function checkAttentionShape(s: AttentionOpShape): void {
    for (const k of ["DK", "DV", "nTokens", "nHead", "nHeadKv", "nKv", "nStream", "maskHeads"] as const) {
        if (!posInt(s[k])) throw invalidOption(k, "a positive integer", s[k]);
    }
    if (!["f16", "q8_0", "f32"].includes(s.kvType)) throw invalidOption("kvType", '"f16", "q8_0" or "f32"', s.kvType);
    if (s.kvType === "q8_0" && (s.DK % 32 !== 0 || s.DV % 32 !== 0)) {
        throw invalidOption("DK/DV", "multiples of 32 for q8_0", `${s.DK}/${s.DV}`);
    }
    if (s.nHead % s.nHeadKv !== 0) throw invalidOption("nHead", `a multiple of nHeadKv (${s.nHeadKv})`, s.nHead);
    if (s.nHead % s.maskHeads !== 0) throw invalidOption("maskHeads", `a divisor of nHead (${s.nHead})`, s.maskHeads);
    if (!is.integer(s.maskRows) || (s.maskRows !== 0 && s.maskRows < s.nTokens)) {
        throw invalidOption("maskRows", "0 or an integer >= nTokens", s.maskRows);
    }
    for (const k of ["scale", "maxBias", "softcap"] as const) {
        if (!is.number(s[k])) throw invalidOption(k, "a finite number", s[k]);
    }
    if (s.maxBias > 0 && s.maskRows === 0) throw invalidOption("maxBias", "0 when there is no mask (ALiBi needs one)", s.maxBias);
}

function expectLength(name: string, a: ArrayLike<number> | undefined, n: number): void {
    if (!a || a.length !== n) throw invalidOption(name, `an array of ${n} elements`, a?.length);
}

/**
 * Computes one attention op on a fresh threadpool. Synchronous and test-only: it blocks the
 * event loop for the duration of the op.
 */
export function computeAttention(spec: AttentionComputeSpec): Float32Array {
    checkAttentionShape(spec);
    if (!posInt(spec.threads)) throw invalidOption("threads", "a positive integer", spec.threads);
    if (!["fused", "ggml", "ref"].includes(spec.mode)) throw invalidOption("mode", '"fused", "ggml" or "ref"', spec.mode);
    const { DK, DV, nTokens, nHead, nHeadKv, nKv, nStream } = spec;
    expectLength("q", spec.q, DK * nHead * nTokens * nStream);
    expectLength("k", spec.k, kvRowBytes(spec.kvType, DK) * nHeadKv * nKv * nStream);
    expectLength("v", spec.v, kvRowBytes(spec.kvType, DV) * nHeadKv * nKv * nStream);
    if (spec.maskRows > 0) expectLength("mask", spec.mask, nKv * spec.maskRows * spec.maskHeads * nStream);
    if (spec.sinks) expectLength("sinkValues", spec.sinkValues, nHead);
    try {
        return devBinding().attentionCompute(spec);
    } catch (err) {
        if (err instanceof LlamaError) throw err;
        const e = err as { code?: string; message?: string };
        throw new LlamaError(e.code === "ERR_INVALID_OPTION" ? "ERR_INVALID_OPTION" : "ERR_NATIVE", e.message ?? String(err), { cause: err });
    }
}

/** Whether the AVX2/FMA/F16C inner loops are in use (else the portable ones). */
export function attentionKernelInfo(): { simd: boolean } {
    return binding().attentionKernelInfo();
}

/** Test hook: run the portable inner loops even where AVX2 is available. */
export function attentionForcePortable(on: boolean): void {
    devBinding().attentionForcePortable(on);
}

/** A native benchmark session: random caches of one shape, timed in either mode. */
export class AttentionBenchSession {
    private session: NativeAttentionSession | undefined;
    private constructor(session: NativeAttentionSession) {
        this.session = session;
    }

    static async create(shape: AttentionBenchShape): Promise<AttentionBenchSession> {
        checkAttentionShape(shape);
        if (shape.kvType === "f32") throw invalidOption("kvType", '"f16" or "q8_0"', shape.kvType);
        if (!posInt(shape.layers)) throw invalidOption("layers", "a positive integer", shape.layers);
        if (!posInt(shape.threads)) throw invalidOption("threads", "a positive integer", shape.threads);
        return new AttentionBenchSession(await callNative(() => devBinding().attentionBenchCreate(shape)));
    }

    /**
     * Microseconds per op for each of `reps` runs: wall clock, or process CPU time (all pool
     * threads, spin-waits included; with one thread, the steadier measure on a shared machine).
     */
    async run(mode: AttentionRunMode, reps: number, clock: "wall" | "cpu" = "wall"): Promise<number[]> {
        if (!this.session) throw new LlamaError("ERR_DISPOSED", "the attention bench session is disposed");
        const s = this.session;
        const r = await callNative(() => devBinding().attentionBenchRun(s, mode, reps));
        return Array.from(clock === "cpu" ? r.cpuUs : r.wallUs);
    }

    dispose(): void {
        if (this.session) devBinding().attentionBenchFree(this.session);
        this.session = undefined;
    }
}

/** Read bandwidth in GB/s (one value per repetition). */
export async function measureReadBandwidth(bytes: number, threads: number, reps: number): Promise<number[]> {
    return Array.from(await callNative(() => devBinding().measureReadBandwidth(bytes, threads, reps)));
}
