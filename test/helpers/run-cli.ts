// The `llamafuse` CLI run as a user runs it: `node dist/cli/index.js ...` in a child process
// from the repository root, its output collected as text.
import { spawn } from "node:child_process";
import path from "node:path";
import { repoRoot } from "./models.js";

/** The built CLI (tsc's output): what `npx llamafuse` runs. */
export const cliPath = path.join(repoRoot, "dist", "cli", "index.js");

export interface CliRun {
    code: number | null;
    stdout: string;
    stderr: string;
}

export interface CliRunOptions {
    /** Written to stdin (a pipe, so not a terminal), which then closes. @default "" */
    input?: string;
    /** The child is killed (SIGKILL) after this long; `code` is then null. @default 120_000 */
    timeoutMs?: number;
    /** The program to run. @default process.execPath */
    command?: string;
    /** Arguments before `args`. @default [cliPath] */
    pre?: string[];
}

/** Runs the CLI (or `command`) with `args`, LLAMAFUSE_DEBUG cleared so stderr carries only what a user sees. */
export function runCli(args: string[], options: CliRunOptions = {}): Promise<CliRun> {
    const { input = "", timeoutMs = 120_000, command = process.execPath, pre = [cliPath] } = options;
    return new Promise((resolve, reject) => {
        const child = spawn(command, [...pre, ...args], { cwd: repoRoot, env: { ...process.env, LLAMAFUSE_DEBUG: "" }, stdio: ["pipe", "pipe", "pipe"] });
        let stdout = "", stderr = "";
        child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
        child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
        const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
        child.on("error", reject);
        child.on("close", (code) => {
            clearTimeout(timer);
            resolve({ code, stdout, stderr });
        });
        child.stdin.end(input);
    });
}
