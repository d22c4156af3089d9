// Sampling benchmark (issue 4): µs per sampled token for typical chains over 32K and 128K
// vocabularies; generation tokens/s on stories260K, llamafuse's native loop vs node-llama-cpp
// (same model, same threads, same run). Targets, reported and not asserted: ≥ 2x node-llama-cpp.
// Run (after npm run build): node dist/bench/sampling.js is not built from here; use
//   npx tsc && node --input-type=module -e "import('./dist/bench/sampling.js').then(async m => console.log(m.formatSamplingRows((await m.runSamplingBench()).rows)))"
// or through tsx: tsx bench/sampling.bench.ts [--json] [--threads 1,2] [--reps 5] [--tokens 256]
import { parseArgs } from "node:util";
import { formatSamplingRows, runSamplingBench } from "../src/bench/sampling.js";

export { runSamplingBench, formatSamplingRows } from "../src/bench/sampling.js";
export type { SamplingBenchOptions, SamplingBenchRow } from "../src/bench/sampling.js";

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
    const { values } = parseArgs({ options: { json: { type: "boolean" }, threads: { type: "string" }, reps: { type: "string" }, tokens: { type: "string" } } });
    const { meta, rows } = await runSamplingBench({
        threads: values.threads?.split(",").map(Number),
        reps: values.reps ? Number(values.reps) : undefined,
        tokens: values.tokens ? Number(values.tokens) : undefined,
    });
    if (values.json) console.log(JSON.stringify({ meta, rows }, null, 2));
    else {
        console.log(`sampling benchmark: ${meta.machine.cpu}, ${meta.machine.cores} cores, threads as listed; medians of repeated runs`);
        console.log(formatSamplingRows(rows));
    }
}
