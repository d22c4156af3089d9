// Runs a risky case in a child process, through the public API (tsx as loader), so that a
// crash fails the test that caused it, with its signal and output, instead of killing the test
// runner. The case is the body of an async function that gets `lf` (the llamafuse module) and
// returns a JSON-able value; an error it throws comes back as { error: { code, message, name } }.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { repoRoot } from "../helpers/models.js";

export interface ChildOutcome {
    signal: NodeJS.Signals | null;
    status: number | null;
    /** What the case returned, or { error } for what it threw; undefined if it never said. */
    result: unknown;
    output: string;
    timedOut: boolean;
}

const scratch = mkdtempSync(path.join(tmpdir(), "llamafuse-child-"));
process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));
let counter = 0;

export function runInChild(body: string, options: { timeoutMs?: number; env?: Record<string, string>; nodeArgs?: string[] } = {}): ChildOutcome {
    const file = path.join(scratch, `case-${process.pid}-${counter++}.mts`);
    const index = pathToFileURL(path.join(repoRoot, "src", "index.ts")).href;
    writeFileSync(
        file,
        `import * as lf from ${JSON.stringify(index)};
const say = (v) => process.stdout.write("\\nRESULT " + JSON.stringify(v, (k, x) => (typeof x === "bigint" ? String(x) : x)) + "\\n");
try {
    say(await (async () => {
${body}
    })());
} catch (err) {
    say({ error: { code: err?.code, message: String(err?.message ?? err), name: err?.name } });
}
`,
    );
    const r = spawnSync(process.execPath, [...(options.nodeArgs ?? []), "--import", "tsx", file], {
        cwd: repoRoot,
        encoding: "utf8",
        timeout: options.timeoutMs ?? 60_000,
        env: { ...process.env, ...options.env },
        maxBuffer: 64 << 20,
    });
    const line = r.stdout?.split("\n").reverse().find((l) => l.startsWith("RESULT "));
    return {
        signal: r.signal,
        status: r.status,
        result: line ? JSON.parse(line.slice(7)) : undefined,
        output: `signal=${r.signal} status=${r.status}\n--- stdout\n${r.stdout?.slice(-4000)}\n--- stderr\n${r.stderr?.slice(-4000)}`,
        timedOut: (r.error as NodeJS.ErrnoException | undefined)?.code === "ETIMEDOUT",
    };
}

/** The coded error a case threw, or "ok" when it returned normally. */
export function outcomeCode(o: ChildOutcome): string {
    const r = o.result as { error?: { code?: string } } | undefined;
    return r?.error ? String(r.error.code) : "ok";
}
