// `llamafuse synth`: writes a llama-family GGUF with random weights in an exact shape
// (a preset or explicit dimensions), streamed to disk with a progress bar; --dry-run shows
// the plan (shape, parameters, exact file size) without writing.
import { Option, type Command } from "commander";
import { planSynthModel, synthModel, synthPresets, type SynthOptions, type SynthPlan } from "../synth/index.js";
import { action, note, progressBar } from "./common.js";
import { parseInteger, parseNumber, parsePositive } from "./options.js";

interface SynthFlags {
    preset?: string;
    architecture?: string;
    layers?: number;
    embedding?: number;
    heads?: number;
    headsKv?: number;
    ff?: number;
    headDim?: number;
    vocabSize?: number;
    vocab?: string;
    contextLength?: number;
    ropeTheta?: number;
    tieEmbeddings?: boolean;
    type: string;
    seed: number;
    output?: string;
    dryRun?: boolean;
    json?: boolean;
}

function synthOptionsFrom(f: SynthFlags): SynthOptions {
    const o: Record<string, unknown> = {
        output: f.output ?? `synth-${f.preset ?? "custom"}-${f.type}.gguf`,
        type: f.type,
        seed: f.seed,
    };
    const copy = ["preset", "architecture", "layers", "embedding", "heads", "headsKv", "ff", "headDim", "vocabSize", "vocab", "contextLength", "ropeTheta", "tieEmbeddings"] as const;
    for (const k of copy) if (f[k] !== undefined) o[k] = f[k];
    return o as unknown as SynthOptions;
}

function describePlan(plan: SynthPlan): string {
    const s = plan.options.shape;
    const lines = [
        `${plan.options.output}${plan.options.preset ? ` (preset ${plan.options.preset})` : ""}`,
        `  ${s.architecture}: ${s.layers} layers, embedding ${s.embedding}, heads ${s.heads} (kv ${s.headsKv}, head size ${s.headDim}), ff ${s.ff}, context ${s.contextLength}`,
        `  vocabulary: ${plan.vocabSize} tokens from ${plan.options.vocabPath}`,
        `  ${(plan.parameters / 1e6).toFixed(2)}M parameters, ${plan.tensors.length} tensors, ${plan.options.type}, ${(plan.bytes / 1e6).toFixed(1)} MB, seed ${plan.options.seed}`,
    ];
    if (plan.f16Fallback.length) lines.push(`  written as F16 (rows not a multiple of 32): ${plan.f16Fallback.join(", ")}`);
    for (const w of plan.options.warnings) lines.push(`  warning: ${w}`);
    return lines.join("\n");
}

export function registerSynth(program: Command): void {
    program
        .command("synth")
        .description("write a llama-family GGUF with random weights in an exact shape (a real vocabulary, so it tokenizes)")
        .addOption(new Option("--preset <name>", "a published model's shape").choices(Object.keys(synthPresets)))
        .addOption(new Option("--architecture <arch>", "llama or qwen2 (default: llama)").choices(["llama", "qwen2"]))
        .option("--layers <n>", "transformer blocks", parsePositive)
        .option("--embedding <n>", "embedding size", parsePositive)
        .option("--heads <n>", "attention heads", parsePositive)
        .option("--heads-kv <n>", "key/value heads (GQA; default: heads)", parsePositive)
        .option("--ff <n>", "feed-forward size", parsePositive)
        .option("--head-dim <n>", "head size (default: embedding / heads)", parsePositive)
        .option("--vocab-size <n>", "pick llama.cpp's vocab file with this many tokens (32000, 128256, 151936)", parsePositive)
        .option("--vocab <name|file>", 'a vocab name ("llama-spm", "llama-bpe", "qwen2", ...) or any GGUF with a tokenizer')
        .option("--context-length <n>", "trained context length written in the file", parsePositive)
        .option("--rope-theta <x>", "RoPE base frequency", parseNumber)
        .option("--tie-embeddings", "no output.weight: the token embedding is reused as the output projection")
        .addOption(new Option("--type <type>", "type of the weight matrices").choices(["f16", "q8_0", "q4_0", "q4_k_m", "q5_k_m"]).default("f16"))
        .option("--seed <n>", "random seed (same seed, same weights)", parseInteger, 0)
        .option("-o, --output <file>", "where to write (default: synth-<preset|custom>-<type>.gguf)")
        .option("--dry-run", "show the plan and exact file size without writing")
        .option("--json", "print the plan or result as JSON")
        .action(action(async (opts: SynthFlags) => {
            const options = synthOptionsFrom(opts);
            const plan = await planSynthModel(options);
            if (opts.dryRun) {
                if (opts.json) {
                    const { options: r, parameters, vocabSize, bytes, f16Fallback, tensors } = plan;
                    process.stdout.write(JSON.stringify({ output: r.output, preset: r.preset ?? null, shape: r.shape, type: r.type, seed: r.seed, vocabPath: r.vocabPath, vocabSize, parameters, bytes, tensors: tensors.length, f16Fallback, warnings: r.warnings }) + "\n");
                } else {
                    process.stdout.write(`dry run, nothing written:\n${describePlan(plan)}\n`);
                }
                return;
            }
            if (!opts.json) note(describePlan(plan));
            const bar = progressBar("writing");
            let result;
            try {
                result = await synthModel({ ...options, onProgress: (f) => bar.update(f) });
            } finally {
                bar.stop();
            }
            if (opts.json) process.stdout.write(JSON.stringify(result) + "\n");
            else process.stdout.write(`wrote ${result.path}: ${(result.bytes / 1e6).toFixed(1)} MB in ${result.seconds.toFixed(1)} s (${result.mbPerSecond.toFixed(0)} MB/s)\n`);
        }));
}
