// npm run fuzz -- --count N --seed S [--timeout MS] [--keep DIR] [--json FILE] [--grammars]
// Structure-aware GGUF fuzzing (test/fuzz/): N mutants from seeds S..S+N-1, each through load,
// tokenize, context, forward, generate, sample and state in a child process. Exits 1 on any
// crash, hang or uncoded error, listing each with the seed that reproduces it.
// --grammars: N random GBNF grammars instead, through sampler creation and sampling; a grammar
// over 5 s also counts as a finding.
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { runGrammarFuzz } from "./grammar-runner.js";
import { runFuzz } from "./runner.js";

const { values } = parseArgs({
    options: {
        count: { type: "string", default: "200" },
        seed: { type: "string", default: "1" },
        timeout: { type: "string", default: "30000" },
        keep: { type: "string" },
        json: { type: "string" },
        grammars: { type: "boolean", default: false },
    },
});
const count = Number(values.count), seed = Number(values.seed), timeoutMs = Number(values.timeout);
if (!Number.isInteger(count) || count < 1 || !Number.isInteger(seed) || seed < 0 || !(timeoutMs > 0)) {
    console.error("usage: npm run fuzz -- --count N --seed S [--timeout MS] [--keep DIR] [--json FILE] [--grammars]");
    process.exit(2);
}
if (values.grammars) {
    const g = await runGrammarFuzz({ count, seed, timeoutMs, log: (s) => console.log(s) });
    const kinds = (k: string) => g.findings.filter((f) => f.kind === k).length;
    console.log(`\n${g.count} grammars (seeds ${seed}..${seed + count - 1}) in ${g.seconds.toFixed(0)} s: ` +
        `${kinds("crash")} crashes, ${kinds("hang")} hangs, ${kinds("uncoded")} uncoded errors, ${kinds("slow")} slow`);
    for (const [k, n] of Object.entries(g.outcomes).sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(6)}  ${k}`);
    if (values.json) writeFileSync(values.json, JSON.stringify(g, null, 2));
    process.exit(g.findings.length > 0 ? 1 : 0);
}
const report = await runFuzz({ count, seed, timeoutMs, keepDir: values.keep, log: (s) => console.log(s) });
const top = Object.entries(report.outcomes).sort((a, b) => b[1] - a[1]).slice(0, 25);
console.log(`\n${report.count} mutants (seeds ${seed}..${seed + count - 1}) in ${report.seconds.toFixed(0)} s: ` +
    `${report.crashes} crashes, ${report.hangs} hangs, ${report.uncoded} uncoded errors`);
for (const [k, n] of top) console.log(`  ${String(n).padStart(6)}  ${k}`);
if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2));
process.exit(report.crashes + report.hangs + report.uncoded > 0 ? 1 : 0);
