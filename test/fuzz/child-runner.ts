// What both fuzz runners do with their workers: run cases first..last in a child process (a
// tsx script that prints "BEGIN <id>" before each case and "END <id> <fields...>" after it),
// and when a worker dies in a case (a crash) or prints no END within the timeout (a hang,
// killed), report that case and start a new worker after it, until every case has run.
import { spawn } from "node:child_process";
import { repoRoot } from "../helpers/models.js";

export interface ChildCasesOptions {
    /** The worker script, run as `node --import tsx <worker> ...args(next)`. */
    worker: string;
    /** The worker's arguments for a run that starts at case `next`. */
    args: (next: number) => string[];
    first: number;
    last: number;
    /** Longest a case may take from its BEGIN. */
    timeoutMs: number;
    /** Longest a worker may take to start before its first BEGIN. @default timeoutMs */
    startupMs?: number;
    /** What the cases are, in a finding's text ("cases", "grammars"). */
    noun: string;
    /** A case ended: its id and the END line's other fields. */
    onEnd: (id: number, fields: string[]) => void;
    /** A case stopped its worker. */
    onStopped: (id: number, kind: "crash" | "hang", detail: string) => void;
}

export async function runCasesInChildren(o: ChildCasesOptions): Promise<void> {
    let next = o.first;
    while (next <= o.last) {
        next = await new Promise<number>((resolve) => {
            const child = spawn(process.execPath, ["--import", "tsx", o.worker, ...o.args(next)], {
                cwd: repoRoot,
                stdio: ["ignore", "pipe", "pipe"],
            });
            let current = -1, after = next, buf = "", stderr = "", hung = false;
            let timer: NodeJS.Timeout | undefined;
            const arm = (ms: number) => {
                clearTimeout(timer);
                timer = setTimeout(() => {
                    hung = true;
                    child.kill("SIGKILL");
                }, ms);
            };
            // Starting a worker (tsx compiling the sources, loading the addon) is not a case.
            arm(o.startupMs ?? o.timeoutMs);
            child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
            child.stdout.on("data", (d: Buffer) => {
                buf += d.toString();
                let nl;
                while ((nl = buf.indexOf("\n")) >= 0) {
                    const [tag, id, ...fields] = buf.slice(0, nl).split(" ");
                    buf = buf.slice(nl + 1);
                    if (tag === "BEGIN") {
                        current = Number(id);
                        stderr = ""; // a crash's detail is what this case wrote
                        arm(o.timeoutMs);
                    } else if (tag === "END") {
                        o.onEnd(Number(id), fields);
                        current = -1;
                        after = Number(id) + 1;
                    }
                }
            });
            child.on("exit", (codeNum, signal) => {
                clearTimeout(timer);
                if (current >= 0) {
                    o.onStopped(current, hung ? "hang" : "crash", hung ? `no END within ${o.timeoutMs} ms` : `exit ${codeNum} signal ${signal}: ${stderr.trim().slice(-400)}`);
                    resolve(current + 1);
                } else if (after <= o.last) {
                    // Ended between cases (died at startup?): count it against the next one so the run moves on.
                    o.onStopped(after, "crash", `worker exit ${codeNum} signal ${signal} between ${o.noun}: ${stderr.trim().slice(-400)}`);
                    resolve(after + 1);
                } else {
                    resolve(after);
                }
            });
        });
    }
}
