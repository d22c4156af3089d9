// Attention kernel benchmark (issue 5): llamafuse's fused CPU kernel vs ggml's FLASH_ATTN_EXT
// kernel on identical tensors in this process (see bench/suites/attention.ts).
// Run: npm run bench:attention [-- --quick] [-- --json] [-- --threads N] [-- --cpu-clock]
// --cpu-clock times by process CPU time instead of wall time: steadier with --threads 1 when
// other processes share the machine.
import { parseArgs } from "node:util";
import { cpus } from "node:os";
import { ATTENTION_TABLE_HEADER, formatAttentionRow, QUICK_OPTIONS, runAttentionBenchDetailed } from "./suites/attention.js";

const { values } = parseArgs({ options: { json: { type: "boolean" }, quick: { type: "boolean" }, threads: { type: "string" }, "cpu-clock": { type: "boolean" } } });
const threads = values.threads === undefined ? 2 : Number(values.threads);
if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads needs a positive integer, got ${values.threads}`);
// the table goes to stderr with --json, so stdout is the JSON alone
const log = (s: string) => (values.json ? process.stderr : process.stdout).write(s + "\n");
log(`attention kernel: llamafuse fused vs ggml, ${cpus()[0]?.model ?? "cpu"}, ${threads} threads, median ${values["cpu-clock"] ? "CPU" : "wall"} µs per op${values.quick ? " (quick)" : ""}`);
log(ATTENTION_TABLE_HEADER);
const res = await runAttentionBenchDetailed({ ...(values.quick ? QUICK_OPTIONS : {}), threads, clock: values["cpu-clock"] ? "cpu" : "wall", onRow: (r) => log(formatAttentionRow(r)) });
log(`read bandwidth (${threads} threads, measured in this run): ${res.bandwidthGBs.toFixed(2)} GB/s; decode: 8 KV heads, prefill: 1 KV head`);
if (values.json) process.stdout.write(JSON.stringify(res.rows, null, 2) + "\n");
