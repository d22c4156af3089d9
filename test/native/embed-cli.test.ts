// `llamafuse embed` and `llamafuse rank`, run in a child process from the sources (tsx); the
// expected vectors and scores come from the API in this process on the same model files.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/index.js";
import { repoRoot } from "../helpers/models.js";
import { cachedSynthModel } from "../helpers/synth-cache.js";

const cli = path.join(repoRoot, "src", "cli", "index.ts");

function run(args: string[], input = ""): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, ["--import", "tsx", cli, ...args], { cwd: repoRoot, env: { ...process.env, LLAMAFUSE_DEBUG: "" } });
        let stdout = "", stderr = "";
        child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
        child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, stdout, stderr }));
        child.stdin.end(input);
    });
}

let bertFile: string, rerankFile: string;
let bert: Model, reranker: Model;
beforeAll(async () => {
    bertFile = await cachedSynthModel({ preset: "bert-tiny", seed: 11 });
    rerankFile = await cachedSynthModel({ preset: "bert-tiny", rankHead: true, seed: 12 });
    [bert, reranker] = await Promise.all([loadModel(bertFile), loadModel(rerankFile)]);
});
afterAll(async () => {
    await Promise.all([bert?.dispose(), reranker?.dispose()]);
});

describe("llamafuse embed / rank", () => {
    it("embed: one JSON line per text (arguments, then --file lines), equal to the API's vectors", async () => {
        const file = path.join(mkdtempSync(path.join(tmpdir(), "llamafuse-embed-")), "lines.txt");
        writeFileSync(file, "third text\n\nfourth text\n");
        const r = await run(["embed", bertFile, "first text", "second text", "--file", file, "-t", "1"]);
        expect(r.code, r.stderr).toBe(0);
        const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { index: number; text: string; embedding: number[] });
        expect(lines.map((l) => [l.index, l.text])).toEqual([[0, "first text"], [1, "second text"], [2, "third text"], [3, "fourth text"]]);
        const ectx = await bert.createEmbeddingContext({ threads: 1 });
        const expected = await ectx.embed(lines.map((l) => l.text));
        for (let i = 0; i < lines.length; i++) {
            expect(lines[i]!.embedding.length).toBe(128);
            for (let j = 0; j < 128; j++) expect(lines[i]!.embedding[j]).toBeCloseTo(expected[i]![j]!, 6);
        }
        await ectx.dispose();
    });

    it("rank: scores equal the API's; --sort puts the best first; a model without a head fails with its code", async () => {
        const docs = ["a cat", "the dog barks", "vectors of text"];
        const r = await run(["rank", rerankFile, "--query", "animals", ...docs, "--sort", "-t", "1"]);
        expect(r.code, r.stderr).toBe(0);
        const rows = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { index: number; document: string; score: number });
        const ectx = await reranker.createEmbeddingContext({ threads: 1 });
        const expected = await ectx.rank("animals", docs);
        await ectx.dispose();
        expect(rows.map((x) => x.index)).toEqual([0, 1, 2].sort((a, b) => expected[b]! - expected[a]!));
        for (const row of rows) expect(row.score).toBeCloseTo(expected[row.index]!, 6);
        const bad = await run(["rank", bertFile, "--query", "q", "doc"]);
        expect(bad.code).toBe(1);
        expect(bad.stderr).toMatch(/ERR_UNSUPPORTED/);
        const none = await run(["embed", bertFile]);
        expect(none.code).toBe(1);
        expect(none.stderr).toMatch(/no texts/);
    });
});
