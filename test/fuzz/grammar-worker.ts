// Grammar fuzz worker (child of test/fuzz/grammar-runner.ts): for each seed from <first> to
// <last>, builds a sampler from randomGrammar(seed) on stories260K and samples 4 tokens from
// fixed logits. One line per grammar on stdout:
//   BEGIN <seed>               before it (a crash or hang is pinned on it)
//   END <seed> <outcome> <ms>  outcome "ok", an ERR_ code (sample:ERR_... if sampling failed),
//                              or UNCODED:<name> for an error that is not a LlamaError
import { LlamaError, createSampler, loadModel } from "../../src/index.js";
import { MODELS } from "../helpers/models.js";
import { randomGrammar } from "./grammars.js";

const [firstArg, lastArg] = process.argv.slice(2);
const first = Number(firstArg), last = Number(lastArg);
const code = (err: unknown) => (err instanceof LlamaError ? err.code : `UNCODED:${(err as Error)?.name ?? typeof err}`);

const model = await loadModel(MODELS.stories260K);
const logits = new Float32Array(model.info.vocabSize);
for (let i = 0; i < logits.length; i++) logits[i] = ((i * 2654435761) % 1000) / 100;
for (let seed = first; seed <= last; seed++) {
    process.stdout.write(`BEGIN ${seed}\n`);
    const t0 = Date.now();
    let outcome = "ok";
    try {
        const s = await createSampler(model, { grammar: randomGrammar(seed), temperature: 0.7, seed: 1 });
        try {
            for (let i = 0; i < 4; i++) await s.sample(logits);
        } catch (err) {
            outcome = `sample:${code(err)}`;
        }
        await s.dispose();
    } catch (err) {
        outcome = code(err);
    }
    process.stdout.write(`END ${seed} ${outcome} ${Date.now() - t0}\n`);
}
await model.dispose();
