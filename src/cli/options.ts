// Flags shared by the commands that run a model: model/context flags and sampling flags,
// parsed by commander and mapped onto the API's option objects. Values are only shaped
// here (string → number); the API validates ranges and names the option when one is wrong.
import { Command, InvalidArgumentError, Option } from "commander";
import type { ContextOptions } from "../context.js";
import type { LoadModelOptions } from "../model.js";
import type { SamplingOptions } from "../sampling.js";

export function parseInteger(value: string): number {
    const n = Number(value);
    if (value.trim() === "" || !Number.isInteger(n)) throw new InvalidArgumentError(`expected an integer, got "${value}"`);
    return n;
}

export function parseNumber(value: string): number {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got "${value}"`);
    return n;
}

export function parsePositive(value: string): number {
    const n = parseInteger(value);
    if (n < 1) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
    return n;
}

/** Comma-separated integers ("0,4096,16384"). */
export function parseIntList(value: string): number[] {
    const parts = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
    if (parts.length === 0) throw new InvalidArgumentError(`expected comma-separated integers, got "${value}"`);
    return parts.map(parseInteger);
}

export interface ModelFlags {
    threads?: number;
    contextSize?: number;
    gpuLayers?: number;
    attention?: "fused" | "ggml";
}

/** --threads, --context-size, --gpu-layers, --attention. */
export function addModelFlags(cmd: Command, defaults: { contextSize?: number } = {}): Command {
    return cmd
        .option("-t, --threads <n>", "compute threads (default: cores - 1, at most 8)", parsePositive)
        .option("-c, --context-size <n>", `context size in tokens (default: ${defaults.contextSize ?? "min(model's, 4096)"})`, parsePositive)
        .option("--gpu-layers <n>", "layers to offload to the GPU, -1 for all (a CPU build ignores it)", parseInteger)
        .addOption(new Option("--attention <kind>", "attention kernels: llamafuse's fused ones or ggml's").choices(["fused", "ggml"]));
}

export function loadOptionsFrom(f: ModelFlags): LoadModelOptions {
    return f.gpuLayers === undefined ? {} : { gpuLayers: f.gpuLayers };
}

export function contextOptionsFrom(f: ModelFlags, defaults: ContextOptions = {}): ContextOptions {
    const o: ContextOptions = { ...defaults };
    if (f.threads !== undefined) o.threads = f.threads;
    if (f.contextSize !== undefined) o.contextSize = f.contextSize;
    if (f.attention !== undefined) o.attention = f.attention;
    return o;
}

export interface SamplingFlags {
    temp?: number;
    topK?: number;
    topP?: number;
    minP?: number;
    typicalP?: number;
    seed?: number;
    repeatPenalty?: number;
    repeatLastN?: number;
    frequencyPenalty?: number;
    presencePenalty?: number;
    mirostat?: number;
    grammar?: string;
    greedy?: boolean;
}

/** llama.cpp's spelling of the sampling flags (--temp, --top-k, ...), plus --greedy. */
export function addSamplingFlags(cmd: Command): Command {
    return cmd
        .option("--temp <t>", "temperature; 0 is greedy (default: 0.8)", parseNumber)
        .option("--top-k <k>", "keep the k most likely tokens, 0 = off (default: 40)", parseInteger)
        .option("--top-p <p>", "nucleus sampling, 1 = off (default: 0.95)", parseNumber)
        .option("--min-p <p>", "drop tokens below p × the best one's probability (default: 0.05)", parseNumber)
        .option("--typical-p <p>", "locally typical sampling, 1 = off (default: 1)", parseNumber)
        .option("-s, --seed <n>", "RNG seed (default: random)", parseInteger)
        .option("--repeat-penalty <x>", "penalize repeated tokens, 1 = off (default: 1)", parseNumber)
        .option("--repeat-last-n <n>", "tokens the penalties look back over (default: 64)", parseInteger)
        .option("--frequency-penalty <x>", "frequency penalty, 0 = off (default: 0)", parseNumber)
        .option("--presence-penalty <x>", "presence penalty, 0 = off (default: 0)", parseNumber)
        .option("--mirostat <v>", "mirostat version 1 or 2, 0 = off (default: 0)", parseInteger)
        .option("--grammar <gbnf>", "a GBNF grammar the output must follow")
        .option("--greedy", "always pick the most likely token (same as --temp 0)");
}

export function samplingOptionsFrom(f: SamplingFlags): SamplingOptions {
    const o: SamplingOptions = {};
    if (f.temp !== undefined) o.temperature = f.temp;
    if (f.greedy) o.temperature = 0;
    if (f.topK !== undefined) o.topK = f.topK;
    if (f.topP !== undefined) o.topP = f.topP;
    if (f.minP !== undefined) o.minP = f.minP;
    if (f.typicalP !== undefined) o.typicalP = f.typicalP;
    if (f.seed !== undefined) o.seed = f.seed;
    if (f.repeatPenalty !== undefined) o.repeatPenalty = f.repeatPenalty;
    if (f.repeatLastN !== undefined) o.penaltyLastN = f.repeatLastN;
    if (f.frequencyPenalty !== undefined) o.frequencyPenalty = f.frequencyPenalty;
    if (f.presencePenalty !== undefined) o.presencePenalty = f.presencePenalty;
    if (f.mirostat !== undefined) o.mirostat = f.mirostat as 0 | 1 | 2;
    if (f.grammar !== undefined) o.grammar = f.grammar;
    return o;
}
