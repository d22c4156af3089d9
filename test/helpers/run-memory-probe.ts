// Runs memory-probe.ts in a child node with --expose-gc (vitest's workers have no gc()).
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { repoRoot } from "./models.js";

export interface MemoryProbeResult {
    /** Resident set growth over the measured loop, after gc(), in bytes. */
    grownBytes: number;
    /** Growth of memory held by ArrayBuffers (JS-visible), in bytes. */
    arrayBuffersBytes: number;
}

export async function runMemoryProbe(scenario: "forwards" | "load-cycles", leakBytesPer = 0): Promise<MemoryProbeResult> {
    const probe = path.join(repoRoot, "test", "helpers", "memory-probe.ts");
    const { stdout } = await promisify(execFile)(process.execPath, ["--expose-gc", "--import", "tsx", probe, scenario, String(leakBytesPer)], {
        cwd: repoRoot,
        maxBuffer: 1 << 20,
        // glibc raises its mmap threshold after large frees, after which freed buffers (weights,
        // KV caches) stay in the heap as resident memory: growth then swung by ±8 MB per 50
        // model loads. A fixed threshold returns them to the system, so growth means a leak.
        env: { ...process.env, MALLOC_MMAP_THRESHOLD_: "65536" },
    });
    return JSON.parse(stdout.trim().split("\n").at(-1)!) as MemoryProbeResult;
}
