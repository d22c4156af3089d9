// Another AMX user in the same process must keep working after llamafuse loads a model.
// Tile configuration is per-thread CPU state: patch 0006's AMX probe used to run (and release
// the tiles) on whatever thread first asked for the AMX buffer type, so node-llama-cpp, whose
// 1-thread contexts compute on Node's worker threads with tiles it had configured there, died
// with SIGILL at its next evaluation (patch 0014 runs the probe on a thread of its own). A
// crash takes the process with it, so this runs in a child process, as an app would.
// Patch 0015's F16 kernel shapes the tiles its own way on whatever thread computes (a 1-thread
// context computes on Node's worker threads too), so it puts ggml's shape back after each
// matmul: node-llama-cpp's kernels, configured once per thread, would otherwise run with it.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { cachedSynthModel } from "../helpers/synth-cache.js";
import { repoRoot } from "../helpers/models.js";
import { runCli } from "../helpers/run-cli.js";

const hasAmx = /\bamx_int8\b/.test(readFileSync("/proc/cpuinfo", "utf8"));

/** Runs an ES module script in a child process (a file: node-llama-cpp checks its binary in a child started with this process's arguments). */
async function runScript(script: string) {
    const dir = mkdtempSync(path.join(os.tmpdir(), "llamafuse-amx-"));
    const scriptFile = path.join(dir, "coexist.mjs");
    writeFileSync(scriptFile, script);
    try {
        return await runCli([], { pre: [scriptFile], timeoutMs: 180_000 });
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}

// Q4_0 weights, which both libraries run on ggml's AMX tile kernels
const q4Model = () => cachedSynthModel({ layers: 2, embedding: 1024, heads: 8, headsKv: 2, headDim: 128, ff: 2048, vocab: "llama-spm", seed: 5, type: "q4_0" });

const ours = pathToFileURL(path.join(repoRoot, "dist", "index.js")).href;
const peerUrl = pathToFileURL(path.join(repoRoot, "node_modules", "node-llama-cpp", "dist", "index.js")).href;

// node-llama-cpp's next tokens from 4 one-thread contexts evaluating at once (spread over Node's worker threads)
const PEER_EVALUATE = `
    const evaluate4 = (contexts) => Promise.all(contexts.map(async (c) => {
        const s = c.getSequence();
        const out = await s.controlledEvaluate([1, 2, 3, [4, { generateNext: { token: true } }]]);
        s.dispose();
        return out.at(-1).next.token;
    }));
`;

describe.skipIf(!hasAmx)("AMX shared with node-llama-cpp in one process", () => {
    it("node-llama-cpp evaluates on Q4_0 weights before and after llamafuse loads the same file", async () => {
        const file = await q4Model();
        const script = `
            import { getLlama, LlamaLogLevel } from ${JSON.stringify(peerUrl)};
            import { loadModel } from ${JSON.stringify(ours)};
            const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
            const peer = await llama.loadModel({ modelPath: ${JSON.stringify(file)} });
            const contexts = await Promise.all([0, 1, 2, 3].map(() => peer.createContext({ contextSize: 64, threads: 1 })));
            ${PEER_EVALUATE}
            const evaluate = () => evaluate4(contexts);
            const before = await evaluate();
            const model = await loadModel(${JSON.stringify(file)});
            for (let i = 0; i < 4; i++) {
                const after = await evaluate();
                if (JSON.stringify(after) !== JSON.stringify(before)) throw new Error("tokens changed: " + before + " / " + after);
            }
            await model.dispose();
            console.log("peer evaluated after llamafuse loaded");
        `;
        const r = await runScript(script);
        expect(r.stderr).toBe("");
        expect(r.code).toBe(0); // killed by SIGILL (code null) before patch 0014
        expect(r.stdout).toContain("peer evaluated after llamafuse loaded");
    });

    it("node-llama-cpp's Q4_0 tokens stay the same while llamafuse's F16 tile matmuls run on the same worker threads", async () => {
        const q4 = await q4Model();
        const f16 = await cachedSynthModel({ preset: "bert-tiny", seed: 11 });
        const script = `
            import { getLlama, LlamaLogLevel } from ${JSON.stringify(peerUrl)};
            import { loadModel } from ${JSON.stringify(ours)};
            const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
            const peer = await llama.loadModel({ modelPath: ${JSON.stringify(q4)} });
            const contexts = await Promise.all([0, 1, 2, 3].map(() => peer.createContext({ contextSize: 64, threads: 1 })));
            ${PEER_EVALUATE}
            const before = await evaluate4(contexts);
            const bert = await loadModel(${JSON.stringify(f16)});
            // 1-thread embedding contexts: their decodes run on Node's workers, and a text of 13+
            // tokens takes the tile kernel (fewer take the F32 loop, which leaves the tiles alone)
            const ectxs = await Promise.all([0, 1, 2, 3].map(() => bert.createEmbeddingContext({ threads: 1 })));
            const text = "a sentence long enough for the tile kernel to take its matmuls";
            if ((await bert.tokenize(text)).length < 13) throw new Error("the text is too short for the tile kernel");
            for (let i = 0; i < 6; i++) {
                const [after] = await Promise.all([evaluate4(contexts), ...ectxs.map((e) => e.embed([text]))]);
                if (JSON.stringify(after) !== JSON.stringify(before)) throw new Error("tokens changed: " + before + " / " + after);
            }
            await Promise.all(ectxs.map((e) => e.dispose()));
            await bert.dispose();
            console.log("peer tokens unchanged");
        `;
        const r = await runScript(script);
        expect(r.stderr).toBe("");
        expect(r.code).toBe(0);
        expect(r.stdout).toContain("peer tokens unchanged");
    });
});
