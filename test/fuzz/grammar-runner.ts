// Grammar fuzz runner: random grammars (test/fuzz/grammars.ts) from consecutive seeds through
// sampler creation and sampling in a child process (grammar-worker.ts); a grammar that kills
// the worker is a crash, one with no END within the timeout a hang, one over `slowMs` slow.
// A dead or hung worker is replaced and resumes after the grammar that stopped it.
import { spawn } from "node:child_process";
import path from "node:path";
import { repoRoot } from "../helpers/models.js";

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
    let next = o.seed;
    while (next <= last) {
        next = await new Promise<number>((resolve) => {
            const child = spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "test", "fuzz", "grammar-worker.ts"), String(next), String(last)], {
                cwd: repoRoot,
                stdio: ["ignore", "pipe", "pipe"],
            });
            let current = -1, after = next, buf = "", stderr = "", hung = false;
            let timer: NodeJS.Timeout | undefined;
            const arm = () => {
                clearTimeout(timer);
                timer = setTimeout(() => {
                    hung = true;
                    child.kill("SIGKILL");
                }, timeoutMs);
            };
            arm();
            child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
            child.stdout.on("data", (d: Buffer) => {
                buf += d.toString();
                let nl;
                while ((nl = buf.indexOf("\n")) >= 0) {
                    const [tag, seedText, outcome, ms] = buf.slice(0, nl).split(" ");
                    buf = buf.slice(nl + 1);
                    if (tag === "BEGIN") {
                        current = Number(seedText);
                        arm();
                    } else if (tag === "END") {
                        const seed = Number(seedText);
                        report.outcomes[outcome!] = (report.outcomes[outcome!] ?? 0) + 1;
                        if (outcome!.includes("UNCODED")) finding(seed, "uncoded", outcome!);
                        if (Number(ms) > slowMs) finding(seed, "slow", `${ms} ms (${outcome})`);
                        current = -1;
                        after = seed + 1;
                    }
                }
            });
            child.on("exit", (codeNum, signal) => {
                clearTimeout(timer);
                if (current >= 0) {
                    finding(current, hung ? "hang" : "crash", hung ? `no END within ${timeoutMs} ms` : `exit ${codeNum} signal ${signal}: ${stderr.trim().slice(-400)}`);
                    resolve(current + 1);
                } else if (after <= last) {
                    finding(after, "crash", `worker exit ${codeNum} signal ${signal} between grammars: ${stderr.trim().slice(-400)}`);
                    resolve(after + 1);
                } else {
                    resolve(after);
                }
            });
        });
    }
    report.seconds = (Date.now() - t0) / 1000;
    return report;
}
