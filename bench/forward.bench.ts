// Forward benchmark (issue 3): pp, tg and per-call overhead, llamafuse vs node-llama-cpp.
// Run: npm run bench:forward [-- --json] [-- --threads 1,2] [-- --model file.gguf]
import { parseArgs } from "node:util";
import { availableParallelism, cpus } from "node:os";
import { formatForwardRows, runForwardBench } from "./suites/forward.js";

const { values } = parseArgs({ options: { json: { type: "boolean" }, threads: { type: "string" }, model: { type: "string" }, reps: { type: "string" } } });
const threads = values.threads?.split(",").map(Number);
const rows = await runForwardBench({ model: values.model, threads, reps: values.reps ? Number(values.reps) : undefined });
if (values.json) console.log(JSON.stringify(rows, null, 2));
else {
    console.log(`forward benchmark: ${cpus()[0]?.model ?? "cpu"}, ${availableParallelism()} cores; medians of repeated runs (small shared machines are noisy)`);
    console.log(formatForwardRows(rows));
}
