// `llamafuse generate`: one prompt, text streamed to stdout as it comes (or one JSON object).
import type { Command } from "commander";
import type { Context } from "../context.js";
import type { GenerateOptions } from "../generate.js";
import { LlamaError } from "../errors.js";
import { action, note, openModel } from "./common.js";
import { addModelFlags, addSamplingFlags, contextOptionsFrom, loadOptionsFrom, parseInteger, samplingOptionsFrom, type ModelFlags, type SamplingFlags } from "./options.js";

export interface TimedGeneration {
    text: string;
    tokens: number[];
    promptTokens: number;
    reason: string;
    /** Prompt tokens / time to the first generated token (includes the first sample). */
    promptTokensPerSecond: number | null;
    /** Tokens after the first / the time they took (each is one decode and one sample). */
    tokensPerSecond: number | null;
}

/**
 * Runs ctx.generate over already tokenized input, calling onText for each piece of text,
 * and times the prompt and generation phases separately.
 */
export async function timedGenerate(
    ctx: Context,
    prompt: ArrayLike<number>,
    options: GenerateOptions,
    onText: (text: string) => void,
    /** Filled as tokens come, so a caller still has them (and their timing) if generation throws. */
    partial: PartialGeneration = newPartial(),
): Promise<TimedGeneration> {
    const it = ctx.generate(prompt, options);
    let reason = "maxTokens";
    let evaluated = prompt.length;
    for (;;) {
        const r = await it.next();
        if (r.done) {
            reason = r.value.reason;
            evaluated = r.value.evaluatedTokens; // what the prompt cache did not already hold
            break;
        }
        partial.last = performance.now();
        if (partial.tokens.length === 0) partial.first = partial.last;
        partial.tokens.push(r.value.token);
        partial.text += r.value.text;
        if (r.value.text) onText(r.value.text);
    }
    return finishGeneration(partial, evaluated, reason);
}

export interface PartialGeneration {
    started: number;
    first: number;
    last: number;
    tokens: number[];
    text: string;
}

export function newPartial(): PartialGeneration {
    return { started: performance.now(), first: 0, last: 0, tokens: [], text: "" };
}

export function finishGeneration(p: PartialGeneration, promptTokens: number, reason: string): TimedGeneration {
    const n = p.tokens.length;
    return {
        text: p.text, tokens: [...p.tokens], promptTokens, reason,
        promptTokensPerSecond: n > 0 && promptTokens > 0 ? promptTokens / ((p.first - p.started) / 1000) : null,
        // Tokens reach JS in batches (the native loop runs ahead), so a short answer's first-to-
        // last span can be near zero and its rate absurd: then the rate is over the whole call.
        tokensPerSecond: n > 1 ? (p.last - p.first >= 5 ? (n - 1) / ((p.last - p.first) / 1000) : n / ((p.last - p.started) / 1000)) : null,
    };
}

export function formatRate(x: number | null): string {
    return x === null ? "-" : x >= 100 ? x.toFixed(0) : x.toFixed(1);
}

type GenerateFlags = ModelFlags & SamplingFlags & { prompt: string; nPredict: number; stop?: string[]; json?: boolean; noBos?: boolean };

export function registerGenerate(program: Command): void {
    const cmd = program
        .command("generate")
        .description("generate text from a prompt, streamed to stdout")
        .argument("<model>", "path to a .gguf file")
        .requiredOption("-p, --prompt <text>", "the prompt")
        .option("-n, --n-predict <n>", "most tokens to generate", parseInteger, 128)
        .option("--stop <text...>", "strings that end generation (not printed)")
        .option("--json", "print one JSON object (text, tokens, timings) instead of streaming");
    addSamplingFlags(addModelFlags(cmd)).action(action(async (path: string, opts: GenerateFlags) => {
        const model = await openModel(path, loadOptionsFrom(opts), !!opts.json);
        const controller = new AbortController();
        const onSigint = () => controller.abort();
        process.once("SIGINT", onSigint);
        try {
            const ctx = await model.createContext(contextOptionsFrom(opts));
            const prompt = await model.tokenize(opts.prompt);
            const options: GenerateOptions = { ...samplingOptionsFrom(opts), maxTokens: opts.nPredict, signal: controller.signal };
            if (opts.stop) options.stop = opts.stop;
            let r: TimedGeneration;
            try {
                r = await timedGenerate(ctx, prompt, options, (t) => !opts.json && process.stdout.write(t));
            } catch (err) {
                if (err instanceof LlamaError && err.code === "ERR_ABORTED") {
                    if (!opts.json) process.stdout.write("\n");
                    note("(interrupted)");
                    process.exitCode = 130;
                    return;
                }
                throw err;
            }
            if (opts.json) {
                process.stdout.write(JSON.stringify({ prompt: opts.prompt, ...r }) + "\n");
            } else {
                process.stdout.write("\n");
                note(`[${r.tokens.length} tokens, ${r.reason}; prompt ${r.promptTokens} tokens at ${formatRate(r.promptTokensPerSecond)} t/s, generation ${formatRate(r.tokensPerSecond)} t/s, ${ctx.threads} threads]`);
            }
        } finally {
            process.off("SIGINT", onSigint);
            await model.dispose();
        }
    }));
}
