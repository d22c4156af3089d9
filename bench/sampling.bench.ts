// Sampling benchmark (issue 4): µs per sampled token for typical chains over 32K and 128K
// vocabularies; generation tokens/s on stories260K, llamafuse's native loop vs node-llama-cpp
// (same model, same threads, same run, alternating runs), wall-clock and per CPU-second.
// Targets, reported and not asserted: ≥ 2x node-llama-cpp, ≥ 0.9x llama-bench tg.
// Run: tsx bench/sampling.bench.ts [--json] [--threads 1,2] [--reps 5] [--tokens 256]
// With LLAMA_BENCH=/path/to/llama-bench, llama.cpp's own tg is measured in the same run.
// The logic lives in bench/suites/sampling.ts (shared with `llamafuse bench sampling`).
import { parseArgs } from "node:util";
import { formatSamplingRows, runSamplingBench } from "./suites/sampling.js";

export { runSamplingBench, formatSamplingRows } from "./suites/sampling.js";
export type { SamplingBenchOptions, SamplingBenchRow } from "./suites/sampling.js";

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
