// `llamafuse bench`: the front of the benchmark suites. The suites are development tools
// (node-llama-cpp is their peer, tinybench their timer, both devDependencies) and live in
// bench/suites/, outside the library's dist. In a source checkout this front runs
// bench/cli.ts through tsx in a child process, so the suites and the library they measure
// are one copy, from src/; an installed package carries neither, and says so.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { constants } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { Command } from "commander";
import { packageRoot } from "../binding.js";
import { LlamaError } from "../errors.js";
import { action } from "./common.js";

/** The suites' command line, in a source checkout. */
export const BENCH_ENTRY = path.join(packageRoot, "bench", "cli.ts");

export const BENCH_NOT_SHIPPED =
    "the benchmark suites ship with the source checkout, not with the npm package: " +
    "in a clone of llamafuse, `npm ci` then `npx llamafuse bench --help` or `npm run bench`";

/** How to run the suites here: tsx's loader and the entry, or an ERR_UNSUPPORTED that says why not. */
export function benchRunner(root = packageRoot): { loader: string; entry: string } {
    const entry = path.join(root, "bench", "cli.ts");
    if (!existsSync(entry)) throw new LlamaError("ERR_UNSUPPORTED", BENCH_NOT_SHIPPED);
    let loader: string;
    try {
        loader = createRequire(path.join(root, "package.json")).resolve("tsx");
    } catch {
        throw new LlamaError("ERR_UNSUPPORTED", `the benchmark suites run through tsx, a devDependency that is not installed here: run \`npm ci\` in ${root}`);
    }
    return { loader: pathToFileURL(loader).href, entry };
}

export function registerBench(program: Command): void {
    program
        .command("bench")
        .description("benchmark llamafuse against node-llama-cpp, same run (a source checkout's tool)")
        .argument("[args...]", "the suite and its flags, passed to bench/cli.ts")
        // Every flag, --help included, belongs to the suites' own command line.
        .helpOption(false)
        .allowUnknownOption()
        .allowExcessArguments()
        .action(action(async (args: string[]) => {
            const { loader, entry } = benchRunner();
            const code = await new Promise<number>((resolve, reject) => {
                const child = spawn(process.execPath, ["--import", loader, entry, ...args], { stdio: "inherit" });
                child.on("error", reject);
                // killed by a signal: the shell's convention, 128 + its number
                child.on("close", (c, signal) => resolve(c ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)));
            });
            process.exitCode = code;
        }));
}
