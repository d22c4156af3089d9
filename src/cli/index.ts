#!/usr/bin/env node
// The `llamafuse` command: one subcommand per job, each with --help. Errors are one line on
// stderr and a non-zero exit code (set LLAMAFUSE_DEBUG=1 for the stack).
import { readFileSync } from "node:fs";
import path from "node:path";
import { Command } from "commander";
import { packageRoot } from "../binding.js";
import { registerBench } from "./bench.js";
import { formatError, oneLineCommanderError } from "./common.js";
import { registerDemo } from "./demo.js";
import { registerEmbed } from "./embed.js";
import { registerGenerate } from "./generate.js";
import { registerInspect } from "./inspect.js";
import { registerRank } from "./rank.js";
import { registerRepl } from "./repl.js";
import { registerRpcServer } from "./rpc-server.js";
import { registerServe } from "./serve.js";
import { registerSynth } from "./synth.js";

function version(): string {
    try {
        return (JSON.parse(readFileSync(path.join(packageRoot, "package.json"), "utf8")) as { version: string }).version;
    } catch {
        return "unknown";
    }
}

const program = new Command()
    .name("llamafuse")
    .description("LLM inference for Node.js: llama.cpp with fused attention kernels")
    .version(version())
    .configureOutput({ outputError: oneLineCommanderError });

registerInspect(program);
registerGenerate(program);
registerRepl(program);
registerServe(program);
registerRpcServer(program);
registerDemo(program);
registerSynth(program);
registerEmbed(program);
registerRank(program);
registerBench(program);

program.parseAsync(process.argv).catch((err: unknown) => {
    process.stderr.write(formatError(err) + "\n");
    process.exitCode = 1;
});
