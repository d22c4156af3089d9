// `llamafuse repl`: reads lines (a terminal or a pipe), answers each through a ReplSession.
// In a terminal, Ctrl-C stops the answer being generated and keeps the session; Ctrl-C
// at an empty prompt twice, Ctrl-D or /quit leaves. From a pipe, it answers each line and
// exits at the end of input.
import path from "node:path";
import { createInterface } from "node:readline";
import type { Command } from "commander";
import type { Model } from "../model.js";
import type { SamplingOptions } from "../sampling.js";
import { action, formatError, isSynthetic, note, openModel } from "./common.js";
import { addModelFlags, addSamplingFlags, contextOptionsFrom, loadOptionsFrom, parsePositive, samplingOptionsFrom, type ModelFlags, type SamplingFlags } from "./options.js";
import { ReplSession } from "./repl-session.js";

export interface ReplRunOptions extends ModelFlags {
    maxTokens: number;
    sampling: SamplingOptions;
    chat?: boolean;
    system?: string;
    /** Label shown in the banner (e.g. "stories260K, real weights"). */
    label?: string;
}

export async function createSession(model: Model, o: ReplRunOptions): Promise<ReplSession> {
    return ReplSession.create(model, {
        maxTokens: o.maxTokens,
        sampling: o.sampling,
        chat: o.chat,
        system: o.system,
        write: (t) => process.stdout.write(t),
        openContext: (sequences) => model.createContext({ ...contextOptionsFrom(o), sequences }),
    });
}

export function banner(model: Model, session: ReplSession, label?: string): string {
    const i = model.info;
    const random = isSynthetic(model) ? "\n  RANDOM WEIGHTS: a synthetic model, so its text is noise (it shows the runtime, not a language model)" : "";
    return [
        `llamafuse repl: ${label ?? `${path.basename(model.path)}${i.name ? ` (${i.name})` : ""}`}`,
        `  ${i.architecture}, ${(i.parameters / 1e6).toFixed(2)}M parameters, ${i.layers} layers, vocab ${i.vocabSize}; context ${session.context.contextSize} tokens, ${session.context.threads} threads`,
        `  ${session.chat ? "chat mode (the model's chat template)" : "completion mode (no chat template: each line is a prompt)"}; /help for commands, Ctrl-C stops an answer${random}`,
    ].join("\n");
}

/** Runs the read-answer loop over stdin until end of input or /quit. */
export async function runRepl(model: Model, o: ReplRunOptions): Promise<void> {
    const session = await createSession(model, o);
    const tty = !!process.stdin.isTTY;
    if (tty) note(banner(model, session, o.label));
    const rl = createInterface({ input: process.stdin, output: tty ? process.stdout : undefined, terminal: tty, prompt: "> " });
    let interruptedIdle = false;
    const onInterrupt = () => {
        if (session.interrupt()) return;
        if (!tty || interruptedIdle) {
            rl.close();
            return;
        }
        interruptedIdle = true;
        process.stdout.write("\n(Ctrl-C again, Ctrl-D or /quit to leave)\n");
        rl.prompt();
    };
    rl.on("SIGINT", onInterrupt); // a terminal: readline sees Ctrl-C as a key
    process.on("SIGINT", onInterrupt); // a pipe: a real signal
    try {
        if (tty) rl.prompt();
        for await (const line of rl) {
            interruptedIdle = false;
            try {
                if ((await session.handle(line)) === "quit") break;
            } catch (err) {
                // One failed turn (e.g. the context filled up) does not end the session;
                // from a pipe, the exit code still says that something failed.
                note(formatError(err));
                if (!tty) process.exitCode = 1;
            }
            if (tty) rl.prompt();
        }
    } finally {
        process.off("SIGINT", onInterrupt);
        rl.close();
        await session.dispose();
    }
}

type ReplFlags = ModelFlags & SamplingFlags & { nPredict: number; chat?: boolean; system?: string };

export function addReplFlags(cmd: Command): Command {
    return addSamplingFlags(addModelFlags(cmd))
        .option("-n, --n-predict <n>", "most tokens per answer", parsePositive, 256)
        .option("--no-chat", "plain completion even when the model has a chat template")
        .option("--system <text>", "system message (chat mode)");
}

export function replOptionsFrom(opts: ReplFlags): ReplRunOptions {
    return {
        ...opts,
        maxTokens: opts.nPredict,
        sampling: samplingOptionsFrom(opts),
        chat: opts.chat === false ? false : undefined,
    };
}

export function registerRepl(program: Command): void {
    addReplFlags(
        program
            .command("repl")
            .description("interactive generation: type a prompt, get the answer streamed (reads lines from a pipe too)")
            .argument("<model>", "path to a .gguf file"),
    ).action(action(async (path: string, opts: ReplFlags) => {
        const model = await openModel(path, loadOptionsFrom(opts));
        try {
            await runRepl(model, replOptionsFrom(opts));
        } finally {
            await model.dispose();
        }
    }));
}
