// The `llamafuse` CLI, run as a user runs it: `node dist/cli/index.js ...` in a child
// process. Expected outputs are computed through the API in this process (same model, same
// greedy settings), so a CLI that prints something else fails.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, LLAMA_CPP_COMMIT, type Model } from "../../src/index.js";
import { planSynthModel } from "../../src/synth/index.js";
import { MODELS, repoRoot } from "../helpers/models.js";
import { cliPath, runCli } from "../helpers/run-cli.js";
import { cachedSynthModel } from "../helpers/synth-cache.js";

const cli = cliPath;
const stories = MODELS.stories260K;
const haveStories = existsSync(stories);
const tmp = mkdtempSync(path.join(tmpdir(), "llamafuse-cli-"));

/** The newest modification time under src/, to tell whether dist/ is stale. */
function newestSource(dir: string): number {
    let t = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        t = Math.max(t, e.isDirectory() ? newestSource(p) : e.name.endsWith(".ts") ? statSync(p).mtimeMs : 0);
    }
    return t;
}

beforeAll(() => {
    // The CLI runs from dist/: build it when missing or older than the sources.
    if (!existsSync(cli) || statSync(cli).mtimeMs < newestSource(path.join(repoRoot, "src"))) {
        execFileSync(process.execPath, [path.join(repoRoot, "node_modules", "typescript", "bin", "tsc"), "-p", path.join(repoRoot, "tsconfig.json")], { stdio: "inherit" });
    }
}, 300_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** What the API generates greedily (the reference for the CLI's text). */
async function apiGreedy(model: Model, prompt: string | number[], maxTokens: number): Promise<{ text: string; tokens: number[] }> {
    const ctx = await model.createContext({ threads: 1 });
    try {
        let text = "";
        const tokens: number[] = [];
        for await (const s of ctx.generate(prompt, { temperature: 0, maxTokens })) {
            text += s.text;
            tokens.push(s.token);
        }
        return { text, tokens };
    } finally {
        await ctx.dispose();
    }
}

function oneLine(s: string): string {
    const lines = s.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    return lines[0]!;
}

describe("help and errors", () => {
    it("every command has --help", async () => {
        for (const cmd of ["info", "tokenize", "generate", "repl", "demo", "synth", "bench"]) {
            const r = await runCli([cmd, "--help"]);
            expect(r.code, cmd).toBe(0);
            expect(r.stdout).toContain(`Usage: llamafuse ${cmd}`);
        }
        const top = await runCli(["--help"]);
        expect(top.stdout).toMatch(/info[\s\S]*tokenize[\s\S]*generate[\s\S]*repl[\s\S]*synth[\s\S]*bench/);
    });

    it("a missing model is one line on stderr and a non-zero exit", async () => {
        for (const args of [["info", "no/such.gguf"], ["generate", "no/such.gguf", "-p", "x"], ["repl", "no/such.gguf"], ["tokenize", "no/such.gguf", "x"]]) {
            const r = await runCli(args);
            expect(r.code, args.join(" ")).not.toBe(0);
            expect(oneLine(r.stderr)).toBe("llamafuse: model file not found: no/such.gguf (ERR_FILE_NOT_FOUND)");
            expect(r.stdout).toBe("");
        }
    });

    it("bad flags and commands are one line each", async () => {
        const cases: [string[], RegExp][] = [
            [["bogus"], /^llamafuse: unknown command 'bogus'/],
            [["generate", stories, "-p", "x", "--temp", "abc"], /--temp.*expected a number, got "abc"/],
            [["generate", stories], /required option '-p, --prompt <text>'/],
            [["bench", "nosuch"], /'nosuch' is invalid/],
            [["synth", "--layers", "2"], /for embedding but received undefined.*ERR_INVALID_OPTION/],
        ];
        for (const [args, re] of cases) {
            const r = await runCli(args);
            expect(r.code, args.join(" ")).not.toBe(0);
            expect(oneLine(r.stderr)).toMatch(re);
        }
    });
});

describe.skipIf(!haveStories)("on stories260K", () => {
    let model: Model;
    beforeAll(async () => {
        model = await loadModel(stories);
    });
    afterAll(async () => model?.dispose());

    it("an out-of-range sampling option is one line with its code", async () => {
        const r = await runCli(["generate", stories, "-p", "x", "--temp", "5000000"]);
        expect(r.code).not.toBe(0);
        expect(oneLine(r.stderr)).toMatch(/temperature.*\(ERR_INVALID_OPTION\)$/);
    });

    it("info prints the model's properties and every metadata key", async () => {
        const r = await runCli(["info", stories]);
        expect(r.code).toBe(0);
        const keys = Object.keys(model.info.metadata);
        expect(r.stdout).toContain(`metadata (${keys.length} keys):`);
        for (const k of keys) expect(r.stdout).toMatch(new RegExp(`^${k.replace(/\./g, "\\.")}\\s`, "m"));
        expect(r.stdout).toMatch(/^vocabSize\s+512$/m);
        expect(r.stdout).toMatch(/^layers\s+5$/m);
        // Long arrays are summarized: length and the first items.
        expect(r.stdout).toMatch(/^tokenizer\.ggml\.tokens\s+\[512 items\] "<unk>", "<s>", "<\/s>",/m);
        const j = await runCli(["info", stories, "--json"]);
        const info = JSON.parse(j.stdout) as { vocabSize: number; embeddingSize: number; metadata: Record<string, unknown> };
        expect(info.vocabSize).toBe(model.info.vocabSize);
        expect(info.embeddingSize).toBe(model.info.embeddingSize);
        expect((info.metadata["tokenizer.ggml.tokens"] as string[]).length).toBe(512);
    });

    it("tokenize prints the same ids as model.tokenize, with their pieces", async () => {
        for (const text of ["Once upon a time, Lily saw a dog.", "Ünïcödé 東京 🙂", " leading  spaces\n"]) {
            const r = await runCli(["tokenize", stories, text, "--json"]);
            expect(r.code).toBe(0);
            const out = JSON.parse(r.stdout) as { tokens: number[]; pieces: string[] };
            expect(out.tokens).toEqual(Array.from(await model.tokenize(text)));
            expect(out.pieces).toHaveLength(out.tokens.length);
            const noSpecial = JSON.parse((await runCli(["tokenize", stories, text, "--json", "--no-add-special"])).stdout) as { tokens: number[] };
            expect(noSpecial.tokens).toEqual(Array.from(await model.tokenize(text, { addSpecial: false })));
        }
        const table = await runCli(["tokenize", stories, "Hello world"]);
        const ids = Array.from(await model.tokenize("Hello world"));
        expect(table.stdout).toContain(`${ids.length} tokens`);
        expect(table.stdout).toContain(`ids: ${ids.join(" ")}`);
        expect(table.stdout).toContain('" He"');
    });

    it("generate --greedy streams the API's greedy text", async () => {
        const prompt = "Once upon a time";
        const ref = await apiGreedy(model, prompt, 40);
        expect(ref.text.length).toBeGreaterThan(20);
        const streamed = await runCli(["generate", stories, "-p", prompt, "-n", "40", "--greedy", "--threads", "1"]);
        expect(streamed.code).toBe(0);
        expect(streamed.stdout).toBe(ref.text + "\n");
        expect(streamed.stderr).toMatch(/\[40 tokens, maxTokens; prompt \d+ tokens at [\d.]+ t\/s, generation [\d.]+ t\/s, 1 threads\]/);
        const json = JSON.parse((await runCli(["generate", stories, "-p", prompt, "-n", "40", "--temp", "0", "--json"])).stdout) as { text: string; tokens: number[] };
        expect(json.text).toBe(ref.text);
        expect(json.tokens).toEqual(ref.tokens);
        // A stop string ends the text before it.
        const cut = ref.text.indexOf("Lily");
        expect(cut, "the greedy text names Lily").toBeGreaterThan(0);
        const stopped = await runCli(["generate", stories, "-p", prompt, "-n", "40", "--greedy", "--stop", "Lily"]);
        expect(stopped.stdout).toBe(ref.text.slice(0, cut) + "\n");
    });

    it("generate with a seed is reproducible and differs from greedy", async () => {
        const args = ["generate", stories, "-p", "The dog", "-n", "30", "--seed", "7", "--temp", "1.5", "--json"];
        const a = JSON.parse((await runCli(args)).stdout) as { tokens: number[] };
        const b = JSON.parse((await runCli(args)).stdout) as { tokens: number[] };
        expect(a.tokens).toEqual(b.tokens);
        const greedy = await apiGreedy(model, "The dog", 30);
        expect(a.tokens).not.toEqual(greedy.tokens);
    });

    it("repl answers each piped line, runs slash commands, and exits 0 at /quit", async () => {
        const p1 = "Once upon a time", p2 = "Lily saw", p3 = "The cat";
        const n = 16;
        const r1 = await apiGreedy(model, p1, n);
        const r2 = await apiGreedy(model, p2, n);
        // Beam search reference: the API's best hypothesis.
        const bctx = await model.createContext({ threads: 1, sequences: 2 });
        const [best] = await bctx.beamSearch(await model.tokenize(p3), { beams: 2, maxTokens: n });
        await bctx.dispose();
        const promptLen = (await model.tokenize(p2)).length;
        const input = [p1, "/stats", "/temp abc", "/topk 5", "/greedy", p2, "/stats", "/beam 2", p3, "/beam 0", "/bogus", "/help", "/quit", "Never answered"].join("\n") + "\n";
        const r = await runCli(["repl", stories, "--greedy", "-n", String(n), "--threads", "1"], { input });
        expect(r.code).toBe(0);
        const expected = [
            r1.text,
            /^last answer: prompt \d+ new tokens at [\d.]+ t\/s, 16 generated at [\d.]+ t\/s$/,
            /^total: 1 answers/,
            new RegExp(`^context: ${(await model.tokenize(p1)).length + r1.tokens.length} / \\d+ tokens used`),
            /^mode: completion; sampling: temperature 0, top-k 40/,
            "usage: /temp <number>",
            "top-k 5",
            "greedy (temperature 0)",
            r2.text,
            /^last answer/,
            /^total: 2 answers/,
            new RegExp(`^context: ${promptLen + r2.tokens.length} / \\d+ tokens used`),
            /^mode: completion; sampling: temperature 0, top-k 5/,
            "beam search, 2 beams",
            best!.text,
            "beam search off",
            "unknown command /bogus; /help lists them",
            "commands:",
        ];
        const lines = r.stdout.split("\n");
        // Answers may hold newlines; stories260K's greedy answers here do not.
        expect(r1.text + r2.text + best!.text).not.toContain("\n");
        expected.forEach((e, i) => (typeof e === "string" ? expect(lines[i], `line ${i}`).toBe(e) : expect(lines[i], `line ${i}`).toMatch(e)));
        expect(r.stdout).toContain("/quit         leave");
        expect(r.stdout.trimEnd().split("\n").at(-1)).toBe("Ctrl-C stops an answer that is being generated.");
    });

    it("repl exits 0 at the end of input, and keeps the shared prefix of the next prompt", async () => {
        const r = await runCli(["repl", stories, "--greedy", "-n", "8", "--threads", "1"], { input: "Once upon a time\nOnce upon a time there\n/stats\n" });
        expect(r.code).toBe(0);
        // The second prompt shares "<s> Once upon a time" with what is cached: only the rest is new.
        const extra = (await model.tokenize("Once upon a time there")).length - (await model.tokenize("Once upon a time")).length;
        expect(r.stdout).toMatch(new RegExp(`^last answer: prompt ${extra} new tokens`, "m"));
        const ref = await apiGreedy(model, "Once upon a time there", 8);
        expect(r.stdout.split("\n")[1]).toBe(ref.text);
    });

    it("repl: a turn that fails is one error line, the session goes on, and the exit code says so", async () => {
        // An invalid grammar passes option checks but fails when its sampler is built (in the turn).
        const r = await runCli(["repl", stories, "--grammar", "root ::= (", "--threads", "1"], { input: "Hello\n/stats\n" });
        expect(r.code).toBe(1);
        expect(r.stderr.trimEnd().split("\n").at(-1)).toMatch(/^llamafuse: .*grammar.*\(ERR_INVALID_GRAMMAR\)$/);
        expect(r.stdout).toMatch(/^total: 0 answers/m);
    });

    it("npm start runs the scripted demo when stdin is not a terminal", async () => {
        const npm = process.platform === "win32" ? "npm.cmd" : "npm";
        const r = await runCli(["start", "--silent"], { command: npm, pre: [] });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toContain("llamafuse repl: stories260K (real weights");
        expect(r.stdout).toContain("> Once upon a time, there was a little girl named Lily.");
        expect(r.stdout).toMatch(/^total: 2 answers/m);
    });
});

describe("synthetic models from the CLI", () => {
    it("synth --dry-run prints the plan and writes nothing", async () => {
        const out = path.join(tmp, "dry.gguf");
        const r = await runCli(["synth", "--preset", "llama-3.2-1b", "--type", "q4_0", "-o", out, "--dry-run", "--json"]);
        expect(r.code).toBe(0);
        const plan = JSON.parse(r.stdout) as { bytes: number; parameters: number; shape: { layers: number } };
        const api = await planSynthModel({ preset: "llama-3.2-1b", type: "q4_0", output: out });
        expect(plan.bytes).toBe(api.bytes);
        expect(plan.parameters).toBe(api.parameters);
        expect(plan.shape.layers).toBe(16);
        expect(existsSync(out)).toBe(false);
        const text = await runCli(["synth", "--preset", "tiny", "--dry-run"]);
        expect(text.stdout).toMatch(/^dry run, nothing written:/);
        expect(text.stdout).toContain("2 layers, embedding 128, heads 2 (kv 1, head size 64)");
    });

    it("synth writes a model that loads, and info says its weights are random", async () => {
        const out = path.join(tmp, "small.gguf");
        const r = await runCli(["synth", "--layers", "1", "--embedding", "64", "--heads", "2", "--ff", "96", "--vocab", "llama-spm", "--type", "q8_0", "--seed", "3", "-o", out]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/^wrote .*small\.gguf: [\d.]+ MB/);
        const m = await loadModel(out);
        expect([m.info.layers, m.info.embeddingSize, m.info.heads, m.info.vocabSize]).toEqual([1, 64, 2, 32000]);
        await m.dispose();
        const info = await runCli(["info", out]);
        expect(info.stderr).toContain("has random weights");
        expect(info.stdout).toMatch(/^llamafuse\.synthetic\s+true$/m);
    });

    it("repl uses the chat template when the model has one, and continues the conversation", async () => {
        // The qwen2 vocabulary file carries a ChatML template; a tiny random model with it.
        const file = await cachedSynthModel({ architecture: "qwen2", layers: 1, embedding: 64, heads: 2, headsKv: 1, ff: 96, vocab: "qwen2", tieEmbeddings: true, seed: 4 });
        const model = await loadModel(file);
        try {
            expect(model.info.chatTemplate).not.toBeNull();
            const n = 6;
            const turn1 = [{ role: "user", content: "Hi there" }];
            const t1 = Array.from(await model.tokenizeChat(turn1));
            const a1 = await apiGreedy(model, t1, n);
            const turn2 = [...turn1, { role: "assistant", content: a1.text }, { role: "user", content: "And then?" }];
            const t2 = Array.from(await model.tokenizeChat(turn2));
            const a2 = await apiGreedy(model, t2, n);
            const r = await runCli(["repl", file, "--greedy", "-n", String(n), "--threads", "1"], { input: "Hi there\nAnd then?\n/stats\n" });
            expect(r.code, r.stderr).toBe(0);
            expect(r.stdout).toContain(a1.text + "\n" + a2.text + "\n");
            expect(r.stdout).toMatch(/^mode: chat;/m);
            // --no-chat: the line itself is the prompt.
            const plain = await runCli(["repl", file, "--greedy", "-n", String(n), "--threads", "1", "--no-chat"], { input: "Hi there\n/stats\n" });
            expect(plain.stdout).toContain((await apiGreedy(model, "Hi there", n)).text + "\n");
            expect(plain.stdout).toMatch(/^mode: completion;/m);
        } finally {
            await model.dispose();
        }
    });

    it("repl: SIGINT stops the answer being generated and the session goes on", async () => {
        const file = await cachedSynthModel({ preset: "tiny", seed: 11 });
        const child = spawn(process.execPath, [cli, "repl", file, "--greedy", "-n", "4000", "-c", "4096", "--threads", "1"], { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] });
        let stdout = "";
        let signalled = false;
        child.stdout.setEncoding("utf8").on("data", (d: string) => {
            stdout += d;
            // Interrupt once the answer has started streaming.
            if (!signalled && stdout.length > 50) {
                signalled = true;
                child.kill("SIGINT");
            }
        });
        child.stdin.end("The quick brown fox\n/stats\n");
        const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
        expect(code).toBe(0);
        expect(signalled).toBe(true);
        expect(stdout).toContain(" [stopped]\n");
        // The session went on to the next line; the cache holds the prompt and what was shown, far from 4000.
        const used = Number(stdout.match(/^context: (\d+) \/ 4096 tokens used/m)?.[1]);
        expect(used).toBeGreaterThan(5);
        expect(used).toBeLessThan(3000);
    });

    it("demo --synthetic writes the cached default model once, labels it, and exits 0", async () => {
        const cache = path.join(tmp, "cache");
        const first = await runCli(["demo", "--synthetic", "--cache-dir", cache, "-n", "8"]);
        expect(first.code, first.stderr).toBe(0);
        expect(first.stderr).toContain("writing the demo model (random weights)");
        expect(first.stdout).toContain("RANDOM WEIGHTS");
        expect(first.stdout).toContain("> The quick brown fox");
        expect(readdirSync(cache).filter((f) => f.endsWith(".gguf"))).toHaveLength(1);
        const second = await runCli(["demo", "--synthetic", "--cache-dir", cache, "-n", "8"]);
        expect(second.code).toBe(0);
        expect(second.stderr).not.toContain("writing the demo model");
        // Same seed, same model, same demo (but for the timings).
        const text = (s: string) => s.replace(/ at [\d.]+ t\/s/g, "");
        expect(text(second.stdout)).toBe(text(first.stdout));
    });
});

describe("bench", () => {
    it("bench depth --quick --json: rows with the peer and ratios, metadata, and a chart", async () => {
        const out = path.join(tmp, "results");
        const r = await runCli(["bench", "depth", "--quick", "--json", "--threads", "1", "--out", out], { timeoutMs: 300_000 });
        expect(r.code, r.stderr).toBe(0);
        const report = JSON.parse(r.stdout) as {
            meta: { threads: number; llamaCppCommit: string; machine: { cpu: string; cores: number }; llamafuse: { gitCommit: string | null }; llamaBench: { note: string } };
            suites: { suite: string; rows: { test: string; unit: string; llamafuse: number; nodeLlamaCpp: number | null; ratio: number | null; threads: number }[] }[];
            files: { json: string; chart: string };
        };
        expect(report.meta.threads).toBe(1);
        expect(report.meta.llamaCppCommit).toBe(LLAMA_CPP_COMMIT);
        expect(report.meta.machine.cores).toBeGreaterThan(0);
        expect(report.meta.llamafuse.gitCommit).toMatch(/^[0-9a-f]{40}$/);
        expect(report.meta.llamaBench.note).toBeTruthy();
        const rows = report.suites[0]!.rows;
        expect(report.suites[0]!.suite).toBe("depth");
        const tg = rows.filter((x) => x.test.startsWith("tg"));
        // Depths 0, 256, 1024 (quick), each with both of our attention modes where built.
        expect(new Set(tg.map((x) => x.test.match(/@ (\d+)/)![1]))).toEqual(new Set(["0", "256", "1024"]));
        for (const x of rows) {
            expect(x.threads).toBe(1);
            expect(x.llamafuse).toBeGreaterThan(0);
            expect(x.nodeLlamaCpp).toBeGreaterThan(0);
            expect(x.ratio).toBeCloseTo(x.llamafuse / x.nodeLlamaCpp!, 6);
        }
        // The JSON on stdout is the file written; the chart has a line per runtime.
        expect(JSON.parse(readFileSync(report.files.json, "utf8"))).toEqual(report);
        const svg = readFileSync(report.files.chart, "utf8");
        expect(svg).toMatch(/^<svg /);
        expect(svg).toContain("node-llama-cpp");
        expect(svg).toContain("llamafuse ggml");
        expect((svg.match(/<polyline /g) ?? []).length).toBeGreaterThanOrEqual(2);
    }, 300_000);

    it.skipIf(!haveStories)("bench forward-1b --quick on a given model: pp, the JS tg loop and the native generate loop, each beside the peer", async () => {
        const out = path.join(tmp, "results-1b");
        const r = await runCli(["bench", "forward-1b", "--quick", "--json", "--threads", "1", "--model", stories, "--out", out], { timeoutMs: 300_000 });
        expect(r.code, r.stderr).toBe(0);
        const report = JSON.parse(r.stdout) as { suites: { suite: string; rows: { test: string; model: string; llamafuse: number; nodeLlamaCpp: number | null; ratio: number | null }[] }[] };
        expect(report.suites.map((s) => s.suite)).toEqual(["forward-1b"]);
        const rows = report.suites[0]!.rows;
        expect(rows.map((x) => x.test)).toEqual(["pp32", "tg4", "tg4 (generate)"]);
        for (const x of rows) {
            expect(x.model).toBe(path.basename(stories));
            expect(x.llamafuse).toBeGreaterThan(0);
            expect(x.nodeLlamaCpp).toBeGreaterThan(0);
            expect(x.ratio).toBeCloseTo(x.llamafuse / x.nodeLlamaCpp!, 6);
        }
    }, 300_000);
});
