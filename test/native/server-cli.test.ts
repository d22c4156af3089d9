// `llamafuse serve` as a user runs it: its first stdout line names the address (port 0 picks
// one), the API key is enforced, a completion equals the library's greedy text, and SIGTERM
// shuts it down cleanly. Runs the TypeScript CLI through tsx (no build of dist/ needed).
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/index.js";
import { MODELS, repoRoot } from "../helpers/models.js";

const children: ReturnType<typeof spawn>[] = [];
afterAll(() => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});

describe("llamafuse serve", () => {
    it("prints its address first, checks the key, serves greedy text, and exits on SIGTERM", async () => {
        const child = spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "src", "cli", "index.ts"), "serve", MODELS.stories260K, "--port", "0", "--slots", "2", "--threads", "1", "--api-key", "k1"], {
            cwd: repoRoot, env: { ...process.env, LLAMAFUSE_API_KEY: "" }, stdio: ["ignore", "pipe", "pipe"],
        });
        children.push(child);
        let stderr = "";
        child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
        const first = await new Promise<string>((resolve, reject) => {
            const rl = createInterface({ input: child.stdout! });
            rl.once("line", resolve);
            child.once("exit", (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
            setTimeout(() => reject(new Error(`no address line in 60 s: ${stderr}`)), 60_000);
        });
        const m = /^listening on (http:\/\/127\.0\.0\.1:(\d+))$/.exec(first);
        expect(m, first).not.toBeNull();
        const base = m![1]!;
        expect(Number(m![2])).toBeGreaterThan(0);

        expect((await fetch(`${base}/v1/models`)).status).toBe(401);
        expect((await fetch(`${base}/health`)).status).toBe(200);
        const res = await fetch(`${base}/v1/completions`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: "Bearer k1" },
            body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 20, temperature: 0 }),
        });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { choices: { text: string }[] };

        const model = await loadModel(MODELS.stories260K);
        const ctx = await model.createContext({ threads: 1, contextSize: 256 });
        let expected = "";
        for await (const s of ctx.generate(await model.tokenize("Once upon a time", { parseSpecial: true }), { temperature: 0, maxTokens: 20 })) expected += s.text;
        await model.dispose();
        expect(body.choices[0]!.text).toBe(expected);

        const code = await new Promise<number | null>((resolve) => {
            child.once("exit", (c) => resolve(c));
            child.kill("SIGTERM");
        });
        expect(code).toBe(0);
    });
});
