// What a benchmark result must carry to be reproducible: the machine, the thread count, the
// git commit, the llama.cpp commit and the peer's version, recorded in the same run.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { arch, availableParallelism, cpus, loadavg, platform, release, totalmem } from "node:os";
import path from "node:path";
import { packageRoot } from "../../src/binding.js";
import { addonInfo, LLAMA_CPP_COMMIT, systemInfo, type AddonInfo } from "../../src/system.js";

export interface BenchMeta {
    date: string;
    machine: { cpu: string; cores: number; memoryGB: number; os: string; arch: string };
    node: string;
    threads: number;
    llamafuse: { version: string; gitCommit: string | null; gitDirty: boolean | null };
    llamaCppCommit: string;
    nodeLlamaCpp: string | null;
    /** llama.cpp's CPU feature line for this build. */
    systemInfo: string;
    /** Which addon ran: a source build or a prebuilt level. */
    addon: AddonInfo;
    /** Path of a llama-bench binary, or why there is none. */
    llamaBench: { path: string | null; note: string };
    quick: boolean;
    /** 1-minute load average when the run started: above the core count, other work shared the CPUs. */
    loadAverage: number;
}

function git(args: string[]): string | null {
    try {
        return execFileSync("git", args, { cwd: packageRoot, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    } catch {
        return null;
    }
}

function packageVersion(file: string): string | null {
    try {
        return (JSON.parse(readFileSync(file, "utf8")) as { version?: string }).version ?? null;
    } catch {
        return null;
    }
}

/** llama.cpp's own benchmark tool, if someone built it ($LLAMA_BENCH or the usual build folders). */
export function findLlamaBench(): { path: string | null; note: string } {
    const dirs = [
        process.env.LLAMA_CPP_BIN_DIR,
        path.join(packageRoot, "build", "bin"),
        path.join(packageRoot, "build", "llama.cpp", "bin"),
        path.join(packageRoot, "deps", "llama.cpp", "build", "bin"),
    ].filter((d): d is string => !!d);
    const candidates = [process.env.LLAMA_BENCH, ...dirs.map((d) => path.join(d, "llama-bench"))].filter((p): p is string => !!p);
    const found = candidates.find((p) => existsSync(p));
    if (found) return { path: found, note: `${found}: run on the same model files and thread count for the forward (pp, tg), sampling (generate) and depth (tg) rows` };
    return { path: null, note: "llama-bench is not built here (build with LLAMAFUSE_LLAMA_TOOLS=1, or set $LLAMA_BENCH); node-llama-cpp runs the same llama.cpp commit" };
}

export function benchMeta(threads: number, quick: boolean): BenchMeta {
    const status = git(["status", "--porcelain", "--untracked-files=no"]);
    return {
        date: new Date().toISOString(),
        machine: {
            cpu: cpus()[0]?.model.trim() ?? "unknown",
            cores: availableParallelism(),
            memoryGB: Math.round(totalmem() / 2 ** 30),
            os: `${platform()} ${release()}`,
            arch: arch(),
        },
        node: process.version,
        threads,
        llamafuse: {
            version: packageVersion(path.join(packageRoot, "package.json")) ?? "unknown",
            gitCommit: git(["rev-parse", "HEAD"]),
            gitDirty: status === null ? null : status.length > 0,
        },
        llamaCppCommit: LLAMA_CPP_COMMIT,
        nodeLlamaCpp: packageVersion(path.join(packageRoot, "node_modules", "node-llama-cpp", "package.json")),
        systemInfo: systemInfo(),
        addon: addonInfo(),
        llamaBench: findLlamaBench(),
        quick,
        loadAverage: Math.round(loadavg()[0]! * 100) / 100,
    };
}
