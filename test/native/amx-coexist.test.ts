// Another AMX user in the same process must keep working after llamafuse loads a model.
// Tile configuration is per-thread CPU state: patch 0006's AMX probe used to run (and release
// the tiles) on whatever thread first asked for the AMX buffer type, so node-llama-cpp, whose
// 1-thread contexts compute on Node's worker threads with tiles it had configured there, died
// with SIGILL at its next evaluation (patch 0014 runs the probe on a thread of its own). A
// crash takes the process with it, so this runs in a child process, as an app would.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { cachedSynthModel } from "../helpers/synth-cache.js";
import { repoRoot } from "../helpers/models.js";
import { runCli } from "../helpers/run-cli.js";

const hasAmx = /\bamx_int8\b/.test(readFileSync("/proc/cpuinfo", "utf8"));

describe.skipIf(!hasAmx)("AMX shared with node-llama-cpp in one process", () => {
    it("node-llama-cpp evaluates on Q4_0 weights before and after llamafuse loads the same file", async () => {
        const file = await cachedSynthModel({ layers: 2, embedding: 1024, heads: 8, headsKv: 2, headDim: 128, ff: 2048, vocab: "llama-spm", seed: 5, type: "q4_0" });
        const ours = pathToFileURL(path.join(repoRoot, "dist", "index.js")).href;
        const peerUrl = pathToFileURL(path.join(repoRoot, "node_modules", "node-llama-cpp", "dist", "index.js")).href;
        const script = `
            import { getLlama, LlamaLogLevel } from ${JSON.stringify(peerUrl)};
            import { loadModel } from ${JSON.stringify(ours)};
            const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
            const peer = await llama.loadModel({ modelPath: ${JSON.stringify(file)} });
            // Several 1-thread contexts evaluating at once spread over Node's worker threads.
            const contexts = await Promise.all([0, 1, 2, 3].map(() => peer.createContext({ contextSize: 64, threads: 1 })));
            const evaluate = () => Promise.all(contexts.map(async (c) => {
                const s = c.getSequence();
                const out = await s.controlledEvaluate([1, 2, 3, [4, { generateNext: { token: true } }]]);
                s.dispose();
                return out.at(-1).next.token;
            }));
            const before = await evaluate();
            const model = await loadModel(${JSON.stringify(file)});
            for (let i = 0; i < 4; i++) {
                const after = await evaluate();
                if (JSON.stringify(after) !== JSON.stringify(before)) throw new Error("tokens changed: " + before + " / " + after);
            }
            await model.dispose();
            console.log("peer evaluated after llamafuse loaded");
        `;
        // A file, not -e: node-llama-cpp checks its binary in a child started with this process's arguments.
        const dir = mkdtempSync(path.join(os.tmpdir(), "llamafuse-amx-"));
        const scriptFile = path.join(dir, "coexist.mjs");
        writeFileSync(scriptFile, script);
        let r;
        try {
            r = await runCli([], { pre: [scriptFile], timeoutMs: 120_000 });
        } finally {
            rmSync(dir, { recursive: true, force: true });
        }
        expect(r.stderr).toBe("");
        expect(r.code).toBe(0); // killed by SIGILL (code null) before patch 0014
        expect(r.stdout).toContain("peer evaluated after llamafuse loaded");
    });
});
