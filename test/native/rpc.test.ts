// llama.cpp's RPC backend on loopback: a second process runs `llamafuse rpc-server`; a model
// loaded here with rpcServers and every layer offloaded computes the same logits as the
// same model run locally. A dead endpoint is an error, not a crash.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import { binding } from "../../src/binding.js";
import { loadModel, LlamaError } from "../../src/index.js";
import { MODELS, repoRoot } from "../helpers/models.js";

const hasRpc = (binding() as unknown as { hasRpc?: boolean }).hasRpc === true;
const children: ReturnType<typeof spawn>[] = [];
afterAll(() => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});

function freePort(): Promise<number> {
    return new Promise((resolve) => {
        const s = createServer();
        s.listen(0, "127.0.0.1", () => {
            const port = (s.address() as { port: number }).port;
            s.close(() => resolve(port));
        });
    });
}

// attention: "ggml" on both sides: the server computes with ggml's own kernels (llamafuse's
// fused attention hooks only this process's contexts), so both runs use the same kernels.
async function logitsOf(options: Record<string, unknown>): Promise<Float32Array[]> {
    const model = await loadModel(MODELS.stories260K, options);
    try {
        const ctx = await model.createContext({ contextSize: 256, threads: 1, attention: "ggml" });
        const tokens = await model.tokenize("Once upon a time, there was a little");
        const out = await ctx.forward({ sequence: 0, tokens, logits: "all" });
        return Array.from(tokens, (_, i) => Float32Array.from(out.logits(0, i)));
    } finally {
        await model.dispose();
    }
}

describe.skipIf(!hasRpc)("RPC backend", () => {
    it("a model on another process's backend gives the local logits", async () => {
        const port = await freePort();
        const child = spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "src", "cli", "index.ts"), "rpc-server", "--port", String(port), "--threads", "1"], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
        children.push(child);
        let stderr = "";
        child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
        const line = await new Promise<string>((resolve, reject) => {
            const rl = createInterface({ input: child.stdout! });
            rl.on("line", (l) => l.startsWith("listening on") && resolve(l));
            child.once("exit", (code) => reject(new Error(`rpc-server exited with ${code}: ${stderr}`)));
            setTimeout(() => reject(new Error(`rpc-server did not start: ${stderr}`)), 60_000);
        });
        expect(line).toBe(`listening on 127.0.0.1:${port}`);

        const local = await logitsOf({});
        const remote = await logitsOf({ rpcServers: [`127.0.0.1:${port}`], gpuLayers: -1 });
        expect(remote.length).toBe(local.length);
        let worst = 0;
        for (let i = 0; i < local.length; i++) for (let j = 0; j < local[i]!.length; j++) worst = Math.max(worst, Math.abs(local[i]![j]! - remote[i]![j]!));
        console.log(`RPC vs local: largest logit difference ${worst} over ${local.length} positions`);
        expect(worst).toBeLessThan(1e-5); // 0 here: the same kernels on the same thread count
        child.kill("SIGTERM");
    });

    it("an endpoint that does not answer, or is malformed, is an error", async () => {
        const port = await freePort();
        const err = await loadModel(MODELS.stories260K, { rpcServers: [`127.0.0.1:${port}`] } as never).then(() => null, (e: unknown) => e);
        expect(err).toBeInstanceOf(LlamaError);
        expect((err as LlamaError).message).toMatch(/cannot reach the RPC server/);
        await expect(loadModel(MODELS.stories260K, { rpcServers: ["nope"] } as never)).rejects.toThrow(/rpcServers\[0\]/);
    });
});
