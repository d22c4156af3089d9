// Grammar fuzz runner: random grammars (test/fuzz/grammars.ts) from consecutive seeds through
// sampler creation and sampling in a child process (grammar-worker.ts); a grammar that kills
// the worker is a crash, one with no END within the timeout a hang, one over `slowMs` slow.
// A dead or hung worker is replaced and resumes after the grammar that stopped it.
import path from "node:path";
import { repoRoot } from "../helpers/models.js";
import { runCasesInChildren } from "./child-runner.js";

export interface GrammarFuzzReport {
    count: number;
    seed: number;
    outcomes: Record<string, number>;
    findings: { seed: number; kind: "crash" | "hang" | "uncoded" | "slow"; detail: string }[];
    seconds: number;
}

export async function runGrammarFuzz(o: { count: number; seed: number; timeoutMs?: number; slowMs?: number; log?: (s: string) => void }): Promise<GrammarFuzzReport> {
    const t0 = Date.now();
    const timeoutMs = o.timeoutMs ?? 30_000, slowMs = o.slowMs ?? 5_000, log = o.log ?? (() => {});
    const last = o.seed + o.count - 1;
    const report: GrammarFuzzReport = { count: o.count, seed: o.seed, outcomes: {}, findings: [], seconds: 0 };
    const finding = (seed: number, kind: GrammarFuzzReport["findings"][number]["kind"], detail: string) => {
        report.findings.push({ seed, kind, detail });
        log(`${kind} seed=${seed}: ${detail.slice(0, 300)}`);
    };
    await runCasesInChildren({
        worker: path.join(repoRoot, "test", "fuzz", "grammar-worker.ts"),
        args: (next) => [String(next), String(last)],
        first: o.seed,
        last,
        timeoutMs,
        noun: "grammars",
        onEnd: (seed, [outcome, ms]) => {
            report.outcomes[outcome!] = (report.outcomes[outcome!] ?? 0) + 1;
            if (outcome!.includes("UNCODED")) finding(seed, "uncoded", outcome!);
            if (Number(ms) > slowMs) finding(seed, "slow", `${ms} ms (${outcome})`);
        },
        onStopped: finding,
    });
    report.seconds = (Date.now() - t0) / 1000;
    return report;
}
