// What every CLI command shares: one-line errors with a non-zero exit, notes on stderr (so
// stdout carries only the command's output), and model loading behind a progress bar.
import { SingleBar } from "cli-progress";
import { LlamaError } from "../errors.js";
import { loadModel, type LoadModelOptions, type Model } from "../model.js";

// A reader that closes the pipe early (`llamafuse info --json model.gguf | head`) is not an
// error: stop quietly, as cat and grep do, instead of dying on an unhandled EPIPE.
for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (err: NodeJS.ErrnoException) => {
        if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
        throw err;
    });
}

/** Thrown for user mistakes found by the CLI itself (as opposed to the API). */
export class CliError extends Error {
    readonly exitCode: number;
    constructor(message: string, exitCode = 1) {
        super(message);
        this.exitCode = exitCode;
    }
}

/** One line: the message and, for API errors, the stable code a script can match on. */
export function formatError(err: unknown): string {
    if (err instanceof LlamaError) return `llamafuse: ${err.message} (${err.code})`;
    if (err instanceof CliError) return `llamafuse: ${err.message}`;
    if (err instanceof Error) return `llamafuse: ${err.message}`;
    return `llamafuse: ${String(err)}`;
}

/** Commander's own errors (unknown command, missing argument) as one line, like ours. */
export function oneLineCommanderError(s: string, write: (s: string) => void): void {
    write(`${s.trimEnd().split("\n")[0]!.replace(/^error: /, "llamafuse: ")} (see --help)\n`);
}

export function note(line: string): void {
    process.stderr.write(line + "\n");
}

/** A progress bar on stderr when it is a terminal; nothing otherwise (logs stay clean). */
export function progressBar(label: string): { update(fraction: number): void; stop(): void } {
    if (!process.stderr.isTTY) return { update() {}, stop() {} };
    const bar = new SingleBar({
        format: `${label} [{bar}] {percentage}% | {eta_formatted} left`,
        stream: process.stderr,
        hideCursor: true,
        clearOnComplete: true,
        barsize: 30,
    });
    bar.start(1000, 0);
    return {
        update: (f) => bar.update(Math.round(Math.min(1, Math.max(0, f)) * 1000)),
        stop: () => bar.stop(),
    };
}

/** Loads a model with a progress bar; says on stderr when the weights are random. */
export async function openModel(path: string, options: LoadModelOptions = {}, quiet = false): Promise<Model> {
    const bar = quiet ? { update() {}, stop() {} } : progressBar("loading");
    try {
        const model = await loadModel(path, { ...options, onProgress: (f) => bar.update(f) });
        bar.stop();
        if (!quiet && isSynthetic(model)) note(`note: ${model.info.name || path} has random weights (a llamafuse synthetic model): its text is noise`);
        return model;
    } catch (err) {
        bar.stop();
        throw err;
    }
}

export function isSynthetic(model: Model): boolean {
    return model.info.metadata["llamafuse.synthetic"] === true;
}

/** Runs a command body; any error becomes one line on stderr and exit code 1. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
    return async (...args: A) => {
        try {
            await fn(...args);
        } catch (err) {
            process.stderr.write(formatError(err) + "\n");
            if (process.env.LLAMAFUSE_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
            process.exitCode = err instanceof CliError ? err.exitCode : 1;
        }
    };
}
