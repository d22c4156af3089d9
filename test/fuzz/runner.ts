// GGUF fuzz runner: writes `count` mutants of the shared models (and of llama.cpp's vocab files,
// loaded vocab-only) from consecutive seeds, runs them through test/fuzz/worker.ts in a child
// process, and classifies each: a crash (the worker died on it), a hang (no END within the
// timeout), an uncoded error (not a LlamaError), or coded outcomes. A dead or hung worker is
// replaced and resumes after the mutant that killed it.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { MODELS, repoRoot, vocabDir } from "../helpers/models.js";
import { runCasesInChildren } from "./child-runner.js";
import { decodeGguf, type Gguf } from "./gguf-edit.js";
import { mutant } from "./mutate.js";

export interface FuzzFinding {
    index: number;
    seed: number;
    source: string;
    description: string;
    kind: "crash" | "hang" | "uncoded";
    detail: string;
}

export interface FuzzReport {
    count: number;
    seed: number;
    crashes: number;
    hangs: number;
    uncoded: number;
    /** How often each step ended in each outcome ("load=ERR_INVALID_MODEL": 812, ...). */
    outcomes: Record<string, number>;
    findings: FuzzFinding[];
    seconds: number;
}

interface Source {
    name: string;
    gguf: Gguf;
    vocabOnly: boolean;
}

function sources(): Source[] {
    const out: Source[] = [];
    for (const [name, file] of Object.entries(MODELS)) out.push({ name, gguf: decodeGguf(readFileSync(file)), vocabOnly: false });
    for (const v of ["llama-spm", "llama-bpe", "bert-bge", "qwen2", "gpt-2", "phi-3"]) {
        const file = path.join(vocabDir, `ggml-vocab-${v}.gguf`);
        if (existsSync(file)) out.push({ name: `vocab-${v}`, gguf: decodeGguf(readFileSync(file)), vocabOnly: true });
    }
    return out;
}

/**
 * What a worker may take to start before its first case: under nice 19 on a loaded machine,
 * tsx compiling the sources and loading the addon took over 30 s, and the kill was counted as a
 * crash of the next mutant.
 */
const STARTUP_MS = 180_000;

export async function runFuzz(options: { count: number; seed: number; timeoutMs?: number; keepDir?: string; log?: (s: string) => void }): Promise<FuzzReport> {
    const t0 = Date.now();
    const log = options.log ?? (() => {});
    const timeoutMs = options.timeoutMs ?? 30_000;
    const src = sources();
    const dir = mkdtempSync(path.join(tmpdir(), "llamafuse-fuzz-"));
    const meta: { seed: number; source: string; description: string; file: string; vocabOnly: boolean }[] = [];
    try {
        const lines: string[] = [];
        for (let i = 0; i < options.count; i++) {
            const seed = (options.seed + i) >>> 0;
            const s = src[seed % src.length]!;
            const m = mutant(s.gguf, seed);
            const file = path.join(dir, `m${i}.gguf`);
            writeFileSync(file, m.bytes);
            meta.push({ seed, source: s.name, description: m.description, file, vocabOnly: s.vocabOnly });
            lines.push(`${i}\t${file}\t${s.vocabOnly ? 1 : 0}`);
        }
        const list = path.join(dir, "cases.tsv");
        writeFileSync(list, lines.join("\n") + "\n");

        const report: FuzzReport = { count: options.count, seed: options.seed, crashes: 0, hangs: 0, uncoded: 0, outcomes: {}, findings: [], seconds: 0 };
        const finding = (index: number, kind: FuzzFinding["kind"], detail: string) => {
            const m = meta[index]!;
            report.findings.push({ index, seed: m.seed, source: m.source, description: m.description, kind, detail });
            if (kind === "crash") report.crashes++;
            else if (kind === "hang") report.hangs++;
            else report.uncoded++;
            log(`${kind} #${index} seed=${m.seed} ${m.source}: ${m.description} :: ${detail.slice(0, 300)}`);
            if (options.keepDir) {
                mkdirSync(options.keepDir, { recursive: true });
                writeFileSync(path.join(options.keepDir, `${kind}-seed${m.seed}-${m.source}.gguf`), readFileSync(m.file));
            }
        };

        await runCasesInChildren({
            worker: path.join(repoRoot, "test", "fuzz", "worker.ts"),
            args: (next) => [list, String(next)],
            first: 0,
            last: options.count - 1,
            timeoutMs,
            startupMs: Math.max(timeoutMs, STARTUP_MS),
            noun: "cases",
            onEnd: (index, outcomes) => {
                for (const p of outcomes) {
                    report.outcomes[p.split(":")[0]!] = (report.outcomes[p.split(":")[0]!] ?? 0) + 1;
                    if (p.includes("UNCODED")) finding(index, "uncoded", p);
                }
            },
            onStopped: finding,
        });
        report.seconds = (Date.now() - t0) / 1000;
        return report;
    } finally {
        rmSync(dir, { recursive: true, force: true });
    }
}
