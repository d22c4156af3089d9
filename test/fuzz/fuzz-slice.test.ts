// The seeded slice of the GGUF fuzzer that CI runs (npm run fuzz -- --count N --seed S runs
// more): every mutant must end in coded outcomes, with no crash, hang or uncoded error. The
// seeds are fixed, so a failure here reproduces with `npm run fuzz -- --count 1 --seed <seed>`.
import { describe, expect, it } from "vitest";
import { haveModels } from "../helpers/models.js";
import { runFuzz } from "./runner.js";

describe.skipIf(!haveModels())("GGUF fuzz slice", () => {
    it("48 mutants from seed 100: no crash, hang or uncoded error", async () => {
        const report = await runFuzz({ count: 48, seed: 100, timeoutMs: 30_000 });
        const summary = report.findings.map((f) => `${f.kind} seed=${f.seed} ${f.source}: ${f.description} :: ${f.detail}`).join("\n");
        expect(report.crashes, summary).toBe(0);
        expect(report.hangs, summary).toBe(0);
        expect(report.uncoded, summary).toBe(0);
        // The slice reaches past loading: some mutants load and run forward.
        expect(report.outcomes["forward=ok"] ?? 0).toBeGreaterThan(0);
        expect(report.outcomes["load=ERR_INVALID_MODEL"] ?? 0).toBeGreaterThan(0);
    }, 600_000);
});
