// Memory estimates and fitting to free memory, over llama.cpp's common/fit (native/fit.cpp):
// model.estimateMemory(contextOptions) and loadModel(path, { gpuLayers: "auto" }). Both load
// the model's metadata and tensor shapes only (no_alloc: no weights read, no buffers
// allocated) on a worker thread, so they cost milliseconds, not a load.
import { binding, type NativeContext, type NativeContextCreateOptions } from "./binding.js";
import { LlamaError, callNative } from "./errors.js";
import { invalidOption, is } from "./validate.js";

/** One device's share of a model and context, in bytes. */
export interface DeviceMemory {
    /** ggml's device name ("CUDA0", "CPU"), or "host" for system memory (CPU and host buffers). */
    name: string;
    description: string;
    type: "host" | "cpu" | "gpu" | "igpu" | "accel";
    /** The device's memory as it reports it now (for "host": the system's). */
    totalMemory: number;
    freeMemory: number;
    /** Weights. */
    model: number;
    /** KV cache (and recurrent state). */
    context: number;
    /** Compute (scratch) buffers for the largest batch. */
    compute: number;
    /** model + context + compute */
    total: number;
}

export interface MemoryEstimate {
    /** Each GPU or accelerator the model uses, then "host" last. */
    devices: DeviceMemory[];
    /** Sums over the devices. */
    model: number;
    context: number;
    compute: number;
    total: number;
}

type NativeDeviceMemory = Omit<DeviceMemory, "total">;

export interface NativeFitBinding {
    /** The memory a load with `gpuLayers` and a context with these options would allocate (no_alloc). */
    estimateMemory(path: string, model: { gpuLayers: number }, context: NativeContextCreateOptions): Promise<NativeDeviceMemory[]>;
    /**
     * common_fit_params: the layers to offload (whole layers only; -1: all) that leave `marginBytes`
     * free on every device with a context of `context.contextSize`. fits: false when none do.
     */
    fitParams(path: string, context: NativeContextCreateOptions, fit: { marginBytes: number; minContextSize: number }): Promise<{ fits: boolean; gpuLayers: number; contextSize: number }>;
    /** What a live context's buffers hold now (allocated), in estimateMemory's layout. */
    contextMemory(context: NativeContext): NativeDeviceMemory[];
    /** This machine's GPUs as ggml sees them (empty on a CPU build); model/context/compute are 0. */
    gpuDevices(): NativeDeviceMemory[];
}

/** Free memory llama.cpp's --fit leaves on each device by default (its fit_params_target). */
export const DEFAULT_FIT_MARGIN_BYTES = 1024 * 1024 * 1024;

export function toMemoryEstimate(devices: NativeDeviceMemory[]): MemoryEstimate {
    const full = devices.map((d) => ({ ...d, total: d.model + d.context + d.compute }));
    const sum = (k: "model" | "context" | "compute" | "total") => full.reduce((s, d) => s + d[k], 0);
    return { devices: full, model: sum("model"), context: sum("context"), compute: sum("compute"), total: sum("total") };
}

/** @internal model.estimateMemory(): the model at `path` loaded with `gpuLayers`, plus one context. */
export async function estimateMemory(path: string, gpuLayers: number, context: NativeContextCreateOptions): Promise<MemoryEstimate> {
    const devices = await callNative(() => binding().estimateMemory(path, { gpuLayers }, context));
    return toMemoryEstimate(devices);
}

/** @internal what a live context's buffers hold, for comparing an estimate against. */
export function contextMemory(context: NativeContext): MemoryEstimate {
    return toMemoryEstimate(binding().contextMemory(context));
}

/** This machine's GPUs (name, description, total and free memory); none on a CPU build. */
export function gpuDevices(): { name: string; description: string; totalMemory: number; freeMemory: number }[] {
    return binding().gpuDevices().map(({ name, description, totalMemory, freeMemory }) => ({ name, description, totalMemory, freeMemory }));
}

/** loadModel's gpuLayers: a count (-1: all) or "auto". */
export function parseGpuLayers(value: unknown): number | "auto" {
    if (value === undefined) return 0;
    if (value === "auto") return value;
    if (!is.integer(value) || !is.inRange(value as number, -1, 1_000_000)) throw invalidOption("gpuLayers", 'an integer between -1 and 1000000, or "auto"', value);
    return value as number;
}

/**
 * loadModel({ gpuLayers: "auto" }): the layers that fit free device memory with `marginBytes`
 * left on each device, with room for a context of `context.contextSize` tokens. Resolves to 0
 * on a build or machine with no GPU (when the model and context fit in system memory);
 * ERR_OUT_OF_MEMORY when nothing fits.
 */
export async function fitGpuLayers(path: string, context: NativeContextCreateOptions, marginBytes: number): Promise<number> {
    const r = await callNative(() => binding().fitParams(path, context, { marginBytes, minContextSize: context.contextSize }));
    if (!r.fits) {
        const mib = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;
        throw new LlamaError(
            "ERR_OUT_OF_MEMORY",
            `${path} with a context of ${context.contextSize} tokens does not fit the free memory of this machine's devices leaving ${mib(marginBytes)} free on each (model.estimateMemory() gives the breakdown; try a smaller context or fitMarginBytes)`,
        );
    }
    return r.gpuLayers;
}
