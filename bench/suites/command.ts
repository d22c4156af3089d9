// The `llamafuse bench [suite]` command itself (and `npm run bench`): runs the suites, prints
// one table per suite with node-llama-cpp beside llamafuse and the ratio, and writes the
// results (with the machine, threads and commits) as JSON plus an SVG of tokens/s against
// depth. It lives beside the library, not in its dist: src/cli/bench.ts, the front the
// installed CLI carries, runs bench/cli.ts (which calls benchCli) in a source checkout.
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { defaultThreads } from "../../src/context.js";
import path from "node:path";
import { Argument, Option, type Command } from "commander";
import { depthChartSvg } from "./chart.js";
import { PEER, type DepthBenchResult } from "./depth.js";
import { benchMeta, type BenchMeta } from "./meta.js";
import { formatTable } from "./stats.js";
import { SUITES, runSuite, type SuiteName, type SuiteResult } from "./suites.js";
import { PEER_NO_CUDA_CELL, PEER_NO_CUDA_NOTE, offloadsToGpu, parseBenchGpuLayers, type BenchGpuLayers } from "./gpu-layers.js";
import { gpuDevices } from "../../src/fit.js";
import { action, CliError, formatError, oneLineCommanderError } from "../../src/cli/common.js";
import { parsePositive } from "../../src/cli/options.js";

export interface BenchRunOptions {
    suite: SuiteName | "all";
    threads: number;
    quick: boolean;
    json: boolean;
    out: string;
    model?: string;
    noPeer?: boolean;
    cacheDir?: string;
    /** --gpu-layers N|auto: passed to every suite that loads a model. */
    gpuLayers?: BenchGpuLayers;
}

export interface BenchReport {
    meta: BenchMeta;
    suites: SuiteResult[];
    files: { json: string; chart: string | null };
    loadAverageAtEnd?: number;
}

function fmt(v: number | null, absent?: string): string | number {
    return v === null ? (absent ?? "-") : v;
}

export function formatSuite(s: SuiteResult): string {
    const head = `== ${s.suite} (${s.seconds.toFixed(0)} s)`;
    // llama-bench gets a column only where some row has it (it is rarely built).
    const withLlamaBench = s.rows.some((r) => r.llamaBench !== null);
    const tool = s.llamaTool ?? "llama-bench";
    const table = s.rows.length
        ? formatTable(s.rows.map((r) => ({
              test: r.test, model: r.model, threads: String(r.threads), unit: r.unit,
              llamafuse: r.llamafuse, "node-llama-cpp": fmt(r.nodeLlamaCpp, s.peerAbsent), ratio: r.ratio === null ? "-" : `${r.ratio.toFixed(2)}x`,
              ...(withLlamaBench ? { [tool]: fmt(r.llamaBench), [`vs ${tool}`]: r.llamaBench ? `${(r.llamafuse / r.llamaBench).toFixed(2)}x` : "-" } : {}),
          })))
        : "(no rows)";
    return [head, table, ...s.notes.map((n) => `  note: ${n}`)].join("\n");
}

function chartFor(meta: BenchMeta, d: DepthBenchResult): string {
    const names = [...new Set(d.points.flatMap((p) => Object.keys(p.tg)))].sort((a, b) => (a === PEER ? 1 : b === PEER ? -1 : a.localeCompare(b)));
    return depthChartSvg(
        `tg${d.genTokens} tokens/s against context depth`,
        `${path.basename(d.model)}; ${meta.threads} threads; ${meta.machine.cpu} (${meta.machine.cores} cores); llama.cpp ${meta.llamaCppCommit.slice(0, 8)}`,
        names.map((name) => ({ name, points: d.points.map((p) => [p.depth, p.tg[name] ?? null] as [number, number | null]) })),
    );
}

export async function runBench(o: BenchRunOptions): Promise<BenchReport> {
    const names: SuiteName[] = o.suite === "all" ? [...SUITES] : [o.suite];
    // Tables go to stdout, unless stdout carries the JSON.
    const print = (s: string) => (o.json ? process.stderr : process.stdout).write(s + "\n");
    const log = (s: string) => process.stderr.write(`  ${s}\n`);
    const meta = benchMeta(o.threads, o.quick);
    print(`llamafuse bench: ${names.join(", ")}${o.quick ? " (quick)" : ""}; ${meta.machine.cpu}, ${meta.machine.cores} cores, ${o.threads} threads; llamafuse ${meta.llamafuse.gitCommit?.slice(0, 8) ?? "?"}${meta.llamafuse.gitDirty ? "+dirty" : ""}, llama.cpp ${meta.llamaCppCommit.slice(0, 8)}, node-llama-cpp ${meta.nodeLlamaCpp ?? "missing"}`);
    print(`llama-bench: ${meta.llamaBench.note}`);
    if (meta.loadAverage > meta.machine.cores) {
        print(`WARNING: load average ${meta.loadAverage} on ${meta.machine.cores} cores: other processes share the CPUs, and spinning thread pools suffer most; numbers will be noisy`);
    }
    print("medians of repeated runs; ratio > 1 means llamafuse is better. Small shared machines are noisy: compare ratios, not absolute numbers.\n");
    // Layers on a GPU: node-llama-cpp has no CUDA build in a device run, and its CPU build is
    // no comparison for them, so its column says so instead of holding CPU figures.
    const offload = offloadsToGpu(o.gpuLayers);
    if (o.gpuLayers !== undefined) {
        const gpus = gpuDevices();
        print(`--gpu-layers ${o.gpuLayers}: ${gpus.length ? gpus.map((g) => `${g.name} (${g.description}, ${(g.freeMemory / 2 ** 30).toFixed(1)} of ${(g.totalMemory / 2 ** 30).toFixed(1)} GiB free)`).join(", ") : "no GPU in this build: every layer stays on the CPU"}`);
    }
    const suites: SuiteResult[] = [];
    for (const name of names) {
        process.stderr.write(`running ${name} ...\n`);
        const r = await runSuite(name, { threads: o.threads, quick: o.quick, model: o.model, noPeer: o.noPeer || offload, cacheDir: o.cacheDir, log, gpuLayers: o.gpuLayers });
        if (offload && !o.noPeer) {
            r.peerAbsent = PEER_NO_CUDA_CELL;
            r.notes.push(PEER_NO_CUDA_NOTE);
        }
        suites.push(r);
        print(formatSuite(r) + "\n");
    }
    mkdirSync(o.out, { recursive: true });
    const stamp = meta.date.replace(/[:.]/g, "-");
    const base = path.join(o.out, `bench-${stamp}${o.quick ? "-quick" : ""}`);
    const depth = suites.find((s) => s.suite === "depth")?.detail as DepthBenchResult | undefined;
    const files = { json: `${base}.json`, chart: depth ? `${base}-depth.svg` : null };
    const report: BenchReport = { meta, suites, files };
    // The load at the end too: a run is only as quiet as its noisiest minute.
    const finished = { ...report, loadAverageAtEnd: Math.round(loadavg()[0]! * 100) / 100 };
    writeFileSync(files.json, JSON.stringify(finished, null, 2) + "\n");
    if (depth && files.chart) writeFileSync(files.chart, chartFor(meta, depth));
    process.stderr.write(`results: ${files.json}${files.chart ? `, chart: ${files.chart}` : ""}\n`);
    if (o.json) process.stdout.write(JSON.stringify(finished, null, 2) + "\n");
    return finished;
}

export function registerBench(program: Command): void {
    program
        .command("bench")
        .description("benchmark llamafuse against node-llama-cpp (same llama.cpp, same files, same threads, same run)")
        .addArgument(new Argument("[suite]", "which suite").choices([...SUITES, "all"]).default("all"))
        .option("-t, --threads <n>", "threads for every runtime (default: the API's, cores - 1 and at most 8)", parsePositive)
        .option("--quick", "small sizes: a smoke run in seconds, not a measurement")
        .option("--json", "print the results as JSON on stdout (tables go to stderr)")
        .option("--out <dir>", "where the JSON and the chart are written", path.join("bench", "results"))
        .option("-m, --model <file>", "GGUF for the forward and depth suites (default: stories260K / the synthetic depth model)")
        .option("--no-peer", "skip node-llama-cpp")
        .addOption(new Option("--cache-dir <dir>", "where synthetic bench models are cached"))
        .option("--gpu-layers <n|auto>", "layers to offload to the GPU in every suite that loads a model (-1: all; auto: what fits free memory), for llamafuse, node-llama-cpp and llama.cpp's tools")
        .action(action(async (suite: string, opts: { threads?: number; quick?: boolean; json?: boolean; out: string; model?: string; peer: boolean; cacheDir?: string; gpuLayers?: string }) => {
            if (suite !== "all" && !(SUITES as readonly string[]).includes(suite)) throw new CliError(`unknown suite ${suite}`);
            const gpuLayers = opts.gpuLayers === undefined ? undefined : parseBenchGpuLayers(opts.gpuLayers);
            if (gpuLayers === null) throw new CliError(`--gpu-layers takes an integer >= -1 or "auto", not ${JSON.stringify(opts.gpuLayers)}`);
            await runBench({
                suite: suite as SuiteName | "all",
                // The API's default, what users get: it leaves a core to Node's main thread.
                // With every core computing, each per-token JS round trip waits for the OS to
                // schedule the main thread among spinning workers (here, 2 threads on 2
                // shared cores ran ~50x slower per token than 1).
                threads: opts.threads ?? defaultThreads(),
                quick: !!opts.quick,
                json: !!opts.json,
                out: opts.out,
                model: opts.model,
                noPeer: !opts.peer,
                cacheDir: opts.cacheDir,
                gpuLayers,
            });
        }));
}

/** `llamafuse bench ...args` as a program of its own, with the CLI's one-line errors. */
export async function benchCli(args: string[]): Promise<void> {
    const { Command } = await import("commander");
    const program = new Command().name("llamafuse").configureOutput({ outputError: oneLineCommanderError });
    registerBench(program);
    try {
        await program.parseAsync(["bench", ...args], { from: "user" });
    } catch (err) {
        process.stderr.write(formatError(err) + "\n");
        process.exitCode = 1;
    }
}

/** For bench/*.bench.ts: `llamafuse bench <suite> ...args` without the rest of the CLI. */
export async function benchMain(suite: SuiteName | "all", args: string[]): Promise<void> {
    await benchCli([suite, ...args]);
}
