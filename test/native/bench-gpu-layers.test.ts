// `llamafuse bench --gpu-layers N|auto`: accepted, validated, and passed on to every runtime
// in the form it takes (our loadModel, node-llama-cpp's loadModel, llama.cpp's -ngl). On this
// CPU build no layer can move, so the peer still runs and the header says where layers went.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { nglArgs, offloadsToGpu, ourGpuLayers, parseBenchGpuLayers, peerGpuLayers } from "../../bench/suites/gpu-layers.js";
import { MODELS } from "../helpers/models.js";
import { runCli } from "../helpers/run-cli.js";

const tmp = mkdtempSync(path.join(tmpdir(), "llamafuse-bench-gpu-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("--gpu-layers values", () => {
    it("parses counts and auto, and refuses the rest", () => {
        expect(["auto", "0", "-1", "999"].map(parseBenchGpuLayers)).toEqual(["auto", 0, -1, 999]);
        for (const bad of ["AUTO", "max", "-2", "1.5", "", "1e3", "2000000"]) expect(parseBenchGpuLayers(bad), bad).toBeNull();
    });

    it("maps one request onto each runtime's own spelling", () => {
        expect(ourGpuLayers(undefined)).toEqual({});
        expect(ourGpuLayers("auto")).toEqual({ gpuLayers: "auto" });
        expect(ourGpuLayers(-1)).toEqual({ gpuLayers: -1 });
        // node-llama-cpp clamps a negative count to 0: "all" is its "max".
        expect(peerGpuLayers(-1)).toEqual({ gpuLayers: "max" });
        expect(peerGpuLayers(12)).toEqual({ gpuLayers: 12 });
        expect(peerGpuLayers("auto")).toEqual({ gpuLayers: "auto" });
        // llama-bench takes counts only; llama-server has its own fit behind "auto".
        expect(nglArgs(undefined)).toEqual([]);
        expect(nglArgs("auto")).toEqual(["-ngl", "999"]);
        expect(nglArgs("auto", "auto")).toEqual(["-ngl", "auto"]);
        expect(nglArgs(-1)).toEqual(["-ngl", "999"]);
        expect(nglArgs(7)).toEqual(["-ngl", "7"]);
        // A CPU build has no GPU to offload to, whatever the flag says.
        expect(offloadsToGpu(999)).toBe(false);
        expect(offloadsToGpu(undefined)).toBe(false);
    });
});

describe("llamafuse bench --gpu-layers", () => {
    it("rejects a bad value in one line, before running anything", async () => {
        for (const bad of ["abc", "-2", "1.5"]) {
            const r = await runCli(["bench", "forward-1b", "--quick", "--gpu-layers", bad, "--out", tmp], { timeoutMs: 60_000 });
            expect(r.code, bad).not.toBe(0);
            expect(r.stderr.trim()).toMatch(/--gpu-layers takes an integer >= -1 or "auto"/);
            expect(r.stderr).not.toContain("running forward-1b");
        }
    });

    it.skipIf(!existsSync(MODELS.stories260K))("bench forward-1b --gpu-layers auto runs on a CPU build: 0 layers moved, the peer beside it", async () => {
        const r = await runCli(["bench", "forward-1b", "--quick", "--json", "--threads", "1", "--model", MODELS.stories260K, "--gpu-layers", "auto", "--out", tmp], { timeoutMs: 300_000 });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).toContain("--gpu-layers auto: no GPU in this build: every layer stays on the CPU");
        const report = JSON.parse(r.stdout) as { suites: { suite: string; peerAbsent?: string; rows: { test: string; llamafuse: number; nodeLlamaCpp: number | null }[] }[] };
        const s = report.suites[0]!;
        expect(s.suite).toBe("forward-1b");
        expect(s.peerAbsent).toBeUndefined();
        expect(s.rows.map((x) => x.test)).toEqual(["pp32", "tg4", "tg4 (generate)"]);
        for (const x of s.rows) {
            expect(x.llamafuse).toBeGreaterThan(0);
            expect(x.nodeLlamaCpp).toBeGreaterThan(0);
        }
    }, 300_000);
});
