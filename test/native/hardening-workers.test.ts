// worker_threads: the addon loaded into several Node environments at once. Its JS
// constructors used to live in process-wide statics, so the environment that loaded it last
// owned them: main, then a worker, then main again died with SIGSEGV; main with a live worker
// with "FATAL ERROR: HandleScope"; 4 concurrent workers with "Entering the V8 API without
// proper locking". Per-environment instance data (native/common.h, AddonData) fixes it.
//
// The scenario runs in a child process (a crash there fails this test with its signal and
// output, instead of killing the test runner), through the public API, with tsx as loader
// (workers inherit it through execArgv).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { MODELS, repoRoot } from "../helpers/models.js";

const dir = mkdtempSync(path.join(tmpdir(), "llamafuse-workers-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SCENARIO = `
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { loadModel } from ${JSON.stringify(pathToFileURL(path.join(repoRoot, "src", "index.ts")).href)};

const MODEL = ${JSON.stringify(MODELS.stories260K)};
const TSX_API = ${JSON.stringify(import.meta.resolve("tsx/esm/api"))};

// Load, tokenize, create a context, generate greedily, sample, and free it all (or leave it
// all alive for the environment's teardown to free, with leak).
async function exercise(leak = false) {
    const model = await loadModel(MODEL);
    const prompt = await model.tokenize("Once upon a time");
    const ctx = await model.createContext({ contextSize: 128, threads: 1 });
    const out = [];
    for await (const step of ctx.generate(prompt, { maxTokens: 12, temperature: 0 })) out.push(step.token);
    const text = await model.detokenize(out);
    if (!leak) {
        await ctx.dispose();
        await model.dispose();
    }
    return { prompt: Array.from(prompt), out, text };
}

// Workers do not inherit the main thread's tsx hooks on this Node: the worker registers them
// itself, then imports this same file.
const WORKER_BOOT = \`import(\${JSON.stringify(TSX_API)}).then(({ register }) => { register(); return import(\${JSON.stringify(import.meta.url)}); })\`;

function inWorker(mode) {
    return new Promise((resolve, reject) => {
        const w = new Worker(WORKER_BOOT, { eval: true, workerData: { mode } });
        let result;
        w.on("message", (m) => { result = m; if (mode === "terminate" && m === "started") w.terminate(); });
        w.once("error", reject);
        w.once("exit", (code) => (mode === "terminate" || code === 0 ? resolve(result) : reject(new Error("worker exit " + code))));
    });
}

async function workerMain() {
    const { mode } = workerData;
    if (mode === "terminate") {
        // Terminated by the main thread while a generation runs on the thread pool.
        const model = await loadModel(MODEL);
        const ctx = await model.createContext({ contextSize: 128, threads: 1 });
        const prompt = await model.tokenize("Once upon a time");
        parentPort.postMessage("started");
        for await (const _ of ctx.generate(prompt, { maxTokens: 100000, temperature: 0, stopOnEog: false })) { /* until killed */ }
        return;
    }
    parentPort.postMessage(await exercise(mode === "leak"));
}

async function main() {
    const same = (what, r, ref) => {
        if (JSON.stringify(r) !== JSON.stringify(ref)) throw new Error(what + " differs: " + JSON.stringify(r) + " vs " + JSON.stringify(ref));
    };
    const ref = await exercise();
    if (ref.out.length !== 12) throw new Error("expected 12 tokens, got " + ref.out.length);
    same("worker after main", await inWorker("run"), ref);
    same("main after a worker", await exercise(), ref);
    // Main keeps a model and a context alive while a worker runs.
    const held = await loadModel(MODEL);
    const heldCtx = await held.createContext({ contextSize: 64, threads: 1 });
    const [a, b] = await Promise.all([exercise(), inWorker("run")]);
    same("main beside a worker", a, ref);
    same("worker beside main", b, ref);
    // Four concurrent workers and the main thread.
    const all = await Promise.all([inWorker("run"), inWorker("run"), inWorker("run"), inWorker("run"), exercise()]);
    all.forEach((r, i) => same("concurrent " + i, r, ref));
    // A worker that exits with its model and context alive, and one terminated mid-generation:
    // their environments free what they held.
    same("leaking worker", await inWorker("leak"), ref);
    await inWorker("terminate");
    await heldCtx.dispose();
    await held.dispose();
    same("main at the end", await exercise(), ref);
    console.log("RESULT " + JSON.stringify(ref));
}

if (isMainThread) await main();
else await workerMain();
`;

describe("worker_threads", () => {
    it("main, worker, main again; main beside a worker; 4 concurrent workers; leaked and terminated workers", () => {
        const file = path.join(dir, "workers-scenario.mts");
        writeFileSync(file, SCENARIO);
        const r = spawnSync(process.execPath, ["--import", "tsx", file], { cwd: repoRoot, encoding: "utf8", timeout: 240_000 });
        const output = `signal=${r.signal} status=${r.status}\n${r.stdout}\n${r.stderr}`;
        expect(r.signal, output).toBeNull();
        expect(r.status, output).toBe(0);
        const line = r.stdout.split("\n").find((l) => l.startsWith("RESULT "));
        expect(line, output).toBeDefined();
        const ref = JSON.parse(line!.slice(7)) as { out: number[]; text: string };
        expect(ref.out).toHaveLength(12);
        expect(ref.text.length).toBeGreaterThan(0);
    }, 300_000);

    // worker.terminate() while the worker's native work is in flight: the work's completion can no
    // longer call into JS, and node-addon-api's throw of that failure ended in std::terminate
    // (the whole process aborted, SIGABRT). Two kinds of work: a long tokenize, and a sampler
    // build that sleeps 3 s (LLAMAFUSE_TEST_GRAMMAR_BUILD_DELAY_MS).
    for (const [what, call] of [
        ["a long tokenize", 'model.tokenize("hello world ".repeat(1_000_000))'],
        ["a grammar build", "lf.createSampler(model, { grammar: 'root ::= \"a\"+' })"],
    ] as const) {
        it(`terminating a worker during ${what} leaves the process alive`, () => {
            const workerFile = path.join(dir, `terminate-${what.length}.mts`);
            writeFileSync(workerFile, `
                import * as lf from ${JSON.stringify(pathToFileURL(path.join(repoRoot, "src", "index.ts")).href)};
                import { parentPort } from "node:worker_threads";
                const model = await lf.loadModel(${JSON.stringify(MODELS.stories260K)});
                void ${call}.catch(() => {});
                parentPort.postMessage("started");
                setTimeout(() => {}, 100_000);
            `);
            const mainFile = path.join(dir, `terminate-main-${what.length}.mjs`);
            writeFileSync(mainFile, `
                import { Worker } from "node:worker_threads";
                const BOOT = \`import(\${JSON.stringify(${JSON.stringify(import.meta.resolve("tsx/esm/api"))})}).then(({ register }) => { register(); return import(\${JSON.stringify(${JSON.stringify(workerFile)})}); })\`;
                const w = new Worker(BOOT, { eval: true });
                w.once("message", () => setTimeout(async () => { await w.terminate(); console.log("TERMINATED"); }, 200));
                w.on("error", (e) => console.log("worker error", e));
                setTimeout(() => console.log("ALIVE"), 6_000);
            `);
            const r = spawnSync(process.execPath, [mainFile], {
                cwd: repoRoot, encoding: "utf8", timeout: 120_000, env: { ...process.env, LLAMAFUSE_TEST_GRAMMAR_BUILD_DELAY_MS: "3000" },
            });
            const output = `signal=${r.signal} status=${r.status}\n${r.stdout}\n${r.stderr}`;
            expect(r.signal, output).toBeNull();
            expect(r.status, output).toBe(0);
            expect(r.stdout, output).toContain("TERMINATED");
            expect(r.stdout, output).toContain("ALIVE");
        }, 180_000);
    }
});
