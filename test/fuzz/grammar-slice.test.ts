// Random grammars (test/fuzz/grammars.ts) through sampler creation and sampling, in a child
// process: each must build and sample or be refused with a coded error, none may crash the
// process or take long (the checks in native/grammar_check.h bound depth, left recursion,
// nested repetitions and fan-out before llama.cpp builds anything).
import { describe, expect, it } from "vitest";
import { MODELS, haveModels } from "../helpers/models.js";
import { runInChild } from "../native/hardening-child.js";
import { randomGrammar } from "./grammars.js";

const FIRST = 1, COUNT = 150;

describe.skipIf(!haveModels())("grammar fuzz slice", () => {
    it(`${COUNT} random grammars from seed ${FIRST}: built and sampled, or refused with a code; none slow`, () => {
        const grammars = Array.from({ length: COUNT }, (_, i) => randomGrammar(FIRST + i));
        const o = runInChild(`
            const model = await lf.loadModel(${JSON.stringify(MODELS.stories260K)});
            const logits = new Float32Array(model.info.vocabSize);
            for (let i = 0; i < logits.length; i++) logits[i] = ((i * 2654435761) % 1000) / 100;
            const out = [];
            for (const grammar of ${JSON.stringify(grammars)}) {
                const t0 = Date.now();
                let outcome = "ok";
                try {
                    const s = await lf.createSampler(model, { grammar, temperature: 0.7, seed: 1 });
                    try {
                        for (let i = 0; i < 4; i++) await s.sample(logits);
                    } catch (e) {
                        outcome = "sample:" + (e instanceof lf.LlamaError ? e.code : "UNCODED " + e);
                    }
                    await s.dispose();
                } catch (e) {
                    outcome = e instanceof lf.LlamaError ? e.code : "UNCODED " + e;
                }
                out.push({ outcome, ms: Date.now() - t0 });
            }
            return out;
        `, { timeoutMs: 300_000 });
        expect(o.signal, o.output).toBeNull();
        const results = o.result as { outcome: string; ms: number }[];
        expect(results, o.output).toHaveLength(COUNT);
        const counts: Record<string, number> = {};
        results.forEach((r, i) => {
            counts[r.outcome] = (counts[r.outcome] ?? 0) + 1;
            expect(r.outcome, `seed ${FIRST + i}:\n${grammars[i]}`).toMatch(/^(ok|(sample:)?ERR_[A-Z_]+)$/);
            expect(r.ms, `seed ${FIRST + i}:\n${grammars[i]}`).toBeLessThan(5_000);
        });
        console.log(`grammar fuzz seeds ${FIRST}..${FIRST + COUNT - 1}: ${JSON.stringify(counts)}`);
        // The slice reaches both sides of the checks.
        expect(counts.ok ?? 0).toBeGreaterThan(10);
        expect(counts.ERR_INVALID_GRAMMAR ?? 0).toBeGreaterThan(10);
    }, 320_000);
});
