// `llamafuse demo` (what `npm start` runs): the REPL on a model that needs no download.
// Which model, in order:
//   1. the path given (`npm start -- model.gguf`) or $LLAMAFUSE_DEMO_MODEL;
//   2. stories260K.gguf in ../shared/models beside the package, when it is there: a real
//      (tiny) story model, so the demo writes English;
//   3. otherwise a small synthetic model with random weights, written on first run into a
//      cache folder and reused: it works on a fresh machine, and says it is noise.
// With no terminal on stdin it runs a short scripted demo (two prompts, streamed) and exits.
import { existsSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { packageRoot } from "../binding.js";
import type { Model } from "../model.js";
import type { SynthOptions } from "../synth/index.js";
import { cachedSynthModel } from "../synth-cache.js";
import { action, note, openModel, progressBar } from "./common.js";
import { loadOptionsFrom } from "./options.js";
import { addReplFlags, banner, createSession, replOptionsFrom, runRepl } from "./repl.js";

/** The synthetic default: the "tiny" preset (real llama vocabulary, random weights). */
export const DEMO_SYNTH: Omit<SynthOptions, "output"> = { preset: "tiny", type: "f16", seed: 0, name: "llamafuse demo (synthetic tiny, random weights)" };

export function sharedStoriesModel(): string | null {
    const p = path.resolve(packageRoot, "..", "shared", "models", "stories260K.gguf");
    return existsSync(p) ? p : null;
}

/** The synthetic demo model, written once into the cache folder. */
export async function demoSynthModel(dir?: string): Promise<string> {
    const bar = progressBar("synth");
    try {
        return await cachedSynthModel(DEMO_SYNTH, {
            dir, name: "demo-tiny", onProgress: (f) => bar.update(f),
            onWrite: (file) => note(`writing the demo model (random weights) to ${file} ...`),
        });
    } finally {
        bar.stop();
    }
}

export interface DemoChoice {
    path: string;
    label: string;
}

export async function chooseDemoModel(given: string | undefined, o: { synthetic?: boolean; cacheDir?: string }): Promise<DemoChoice> {
    const explicit = given ?? process.env.LLAMAFUSE_DEMO_MODEL;
    if (explicit) return { path: explicit, label: path.basename(explicit) };
    const stories = o.synthetic ? null : sharedStoriesModel();
    if (stories) return { path: stories, label: "stories260K (real weights, 260K parameters, trained on TinyStories)" };
    return { path: await demoSynthModel(o.cacheDir), label: "synthetic tiny model (RANDOM WEIGHTS: the text is noise)" };
}

function demoPrompts(model: Model, chat: boolean): string[] {
    if (chat) return ["Hello! Who are you?", "Tell me a very short story."];
    if (model.info.metadata["llamafuse.synthetic"] === true) return ["The quick brown fox", "Once upon a time"];
    return ["Once upon a time, there was a little girl named Lily.", "The dog saw a big red ball"];
}

/** The scripted demo: each prompt echoed, its answer streamed, then the stats. */
async function scriptedDemo(model: Model, choice: DemoChoice, opts: ReturnType<typeof replOptionsFrom>): Promise<void> {
    const session = await createSession(model, opts);
    try {
        process.stdout.write(banner(model, session, choice.label) + "\n");
        process.stdout.write("(no terminal on stdin: a scripted demo; run `npm start` in a terminal for the interactive REPL)\n\n");
        for (const prompt of demoPrompts(model, session.chat)) {
            process.stdout.write(`> ${prompt}\n`);
            await session.handle(prompt);
            process.stdout.write("\n");
        }
        await session.handle("/stats");
    } finally {
        await session.dispose();
    }
}

type DemoFlags = Parameters<typeof replOptionsFrom>[0] & { synthetic?: boolean; cacheDir?: string; script?: boolean };

export function registerDemo(program: Command): void {
    addReplFlags(
        program
            .command("demo")
            .description("the demo REPL with no download (what `npm start` runs): stories260K beside the package if present, else a cached synthetic model")
            .argument("[model]", "a .gguf file to use instead of the default")
            .option("--synthetic", "use the synthetic random-weights model even when stories260K is present")
            .option("--cache-dir <dir>", "where the synthetic model is written (default: the package's .cache/, else ~/.cache/llamafuse)")
            .option("--script", "run the scripted demo even in a terminal"),
    ).action(action(async (given: string | undefined, opts: DemoFlags, cmd: Command) => {
        const choice = await chooseDemoModel(given, opts);
        // The demo is short and friendly: 64 tokens per answer unless asked otherwise.
        const o = replOptionsFrom(opts);
        if (cmd.getOptionValueSource("nPredict") === "default") o.maxTokens = 64;
        if (o.sampling.seed === undefined) o.sampling.seed = 42; // the same demo each run
        const model = await openModel(choice.path, loadOptionsFrom(opts), true);
        try {
            if (process.stdin.isTTY && !opts.script) await runRepl(model, { ...o, label: choice.label });
            else await scriptedDemo(model, choice, o);
        } finally {
            await model.dispose();
        }
    }));
}
