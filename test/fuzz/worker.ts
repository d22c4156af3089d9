// Fuzz worker (child process of test/fuzz/runner.ts): takes mutant files, in order, through
// load, tokenize, detokenize, pieces, a grammar + DRY sampler over the vocabulary, context,
// forward, generate, sample and state, and reports
// one line per step on stdout:
//   BEGIN <index>            before a mutant (so a crash or hang is pinned on it)
//   END <index> <outcomes>   after it: step=outcome pairs, outcome "ok", an ERR_ code, or
//                            UNCODED:<name> for an error that is not a LlamaError
// argv: <list file (one "index<TAB>path<TAB>vocabOnly" line per mutant)> <first index>
import { readFileSync } from "node:fs";
import { LlamaError, createSampler, loadModel, type Model } from "../../src/index.js";

const [listFile, firstArg] = process.argv.slice(2);
const first = Number(firstArg ?? 0);
const cases = readFileSync(listFile!, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => {
        const [i, file, vocabOnly] = l.split("\t");
        return { index: Number(i), file: file!, vocabOnly: vocabOnly === "1" };
    })
    .filter((c) => c.index >= first);

function code(err: unknown): string {
    if (err instanceof LlamaError) return err.code;
    return `UNCODED:${(err as Error)?.name ?? typeof err}:${String((err as Error)?.message ?? err).slice(0, 60).replace(/\s+/g, "_")}`;
}

async function step(out: string[], name: string, f: () => Promise<unknown>): Promise<boolean> {
    try {
        await f();
        out.push(`${name}=ok`);
        return true;
    } catch (err) {
        out.push(`${name}=${code(err)}`);
        return false;
    }
}

for (const c of cases) {
    process.stdout.write(`BEGIN ${c.index}\n`);
    const out: string[] = [];
    let model: Model | undefined;
    try {
        if (!(await step(out, "load", async () => (model = await loadModel(c.file, { vocabOnly: c.vocabOnly }))))) continue;
        const m = model!;
        let tokens: Int32Array = new Int32Array(0);
        await step(out, "tokenize", async () => (tokens = await m.tokenize("Once upon a time, über 42 🦙\n<|im_start|>", { parseSpecial: true })));
        await step(out, "detokenize", () => m.detokenize(tokens.length ? tokens : [0]));
        await step(out, "pieces", async () => m.tokenPieces(tokens.length ? tokens : [0]));
        // Sampler stages that read the vocabulary when built or run: the grammar (every token's
        // text against the rules), DRY (tokenizes its sequence breakers, reads every piece).
        await step(out, "constrained", async () => {
            const s = await createSampler(m, { grammar: 'root ::= [a-z ]+ | "<" [a-z|_]+ ">"', dryMultiplier: 0.8, temperature: 0.7, seed: 1 });
            try {
                const logits = new Float32Array(m.info.vocabSize);
                for (let i = 0; i < logits.length; i++) logits[i] = ((i * 2654435761) % 1000) / 100;
                for (let i = 0; i < 3; i++) await s.sample(logits);
            } finally {
                await s.dispose();
            }
        });
        if (c.vocabOnly) continue;
        const ctx = await m.createContext({ contextSize: 64, threads: 1 }).catch((err: unknown) => {
            out.push(`context=${code(err)}`);
            return undefined;
        });
        if (!ctx) continue;
        out.push("context=ok");
        const prompt = tokens.length ? Array.from(tokens.slice(0, 16)) : [1];
        await step(out, "forward", () => ctx.forward({ tokens: prompt, sequence: 0 }));
        await step(out, "sample", () => ctx.sample(0, { temperature: 0.7, seed: 1 }));
        await step(out, "generate", async () => {
            for await (const _ of ctx.generate(prompt.slice(0, 2), { maxTokens: 3, temperature: 0 })) { /* drain */ }
        });
        await step(out, "state", async () => {
            const s = await ctx.saveState();
            await ctx.loadState(s!);
        });
        await step(out, "dispose", () => ctx.dispose());
    } catch (err) {
        out.push(`harness=${code(err)}`);
    } finally {
        if (model) await step(out, "free", () => model!.dispose());
        process.stdout.write(`END ${c.index} ${out.join(" ")}\n`);
    }
}
