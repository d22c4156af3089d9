// Prebuilt addon against this machine's source build: pp128 and tg32 on the synthetic
// Llama-3.2-1B Q4_0 shape, same thread count, each addon in its own process, the two run in
// alternation (ABBA order per pair, so drifting load hits both alike), medians over all reps.
// Run: npm run bench:prebuilt [-- --prebuilt prebuilds/linux-x64/llamafuse-icelake.node]
//        [-- --source build/Release/llamafuse.node] [-- --threads 1] [-- --pairs 4] [-- --model f.gguf]
// Default prebuilt: the level this CPU would load (prebuilds/, npm run build:prebuilt).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { prebuiltAddon } from "../src/prebuilt.js";
import { MODEL_1B } from "./suites/rows.js";
import { median } from "./suites/stats.js";
import { cachedSynthModel } from "../src/synth-cache.js";

const root = path.resolve(import.meta.dirname, "..");
const { values } = parseArgs({
    options: {
        prebuilt: { type: "string" },
        source: { type: "string" },
        threads: { type: "string", default: "1" },
        pairs: { type: "string", default: "4" },
        reps: { type: "string", default: "3" },
        model: { type: "string" },
        entry: { type: "string" },
    },
});
const prebuilt = values.prebuilt ?? prebuiltAddon(root)?.path;
const source = values.source ?? path.join(root, "build", "Release", "llamafuse.node");
if (!prebuilt || !existsSync(prebuilt)) throw new Error("no prebuilt addon: run npm run build:prebuilt (or pass --prebuilt)");
if (!existsSync(source)) throw new Error(`no source build at ${source}: run npm run build (or pass --source)`);
const model = values.model ?? (await cachedSynthModel(MODEL_1B, { name: "bench-1b" }));
// the library code both addons run under: this checkout's dist/ unless --entry names another
const entry = values.entry ?? pathToFileURL(path.join(root, "dist", "index.js")).href;

interface ChildResult {
    addon: { path: string; build: string; variant: string | null };
    pp: number[];
    tg: number[];
    ppCpu: number[];
    tgCpu: number[];
}

function run(addon: string): ChildResult {
    const out = execFileSync(process.execPath, [path.join(root, "bench", "prebuilt-child.mjs"), entry, model, values.threads!, values.reps!], {
        env: { ...process.env, LLAMAFUSE_ADDON: addon },
        encoding: "utf8",
    });
    return JSON.parse(out.trim().split("\n").at(-1)!) as ChildResult;
}

type Series = "pp" | "tg" | "ppCpu" | "tgCpu";
const SERIES: Series[] = ["pp", "tg", "ppCpu", "tgCpu"];
const empty = () => ({ pp: [] as number[], tg: [] as number[], ppCpu: [] as number[], tgCpu: [] as number[] });
const results = { source: empty(), prebuilt: empty() };
let variant: string | null = null;
for (let p = 0; p < Number(values.pairs); p++) {
    const order = p % 2 === 0 ? (["source", "prebuilt"] as const) : (["prebuilt", "source"] as const);
    for (const which of order) {
        const r = run(which === "source" ? source : prebuilt);
        if (which === "prebuilt") variant = r.addon.variant;
        for (const k of SERIES) results[which][k].push(...r[k]);
        console.error(`pair ${p + 1} ${which}: pp ${median(r.pp).toFixed(1)} t/s (${median(r.ppCpu).toFixed(1)} per CPU s), tg ${median(r.tg).toFixed(2)} t/s (${median(r.tgCpu).toFixed(2)} per CPU s)`);
    }
}
const row = (test: Series) => {
    const s = median(results.source[test]);
    const b = median(results.prebuilt[test]);
    const name = { pp: "pp128 (wall)", tg: "tg32 (wall)", ppCpu: "pp128 (CPU time)", tgCpu: "tg32 (CPU time)" }[test];
    return { test: name, threads: Number(values.threads), sourceTokS: +s.toFixed(2), prebuiltTokS: +b.toFixed(2), ratio: +(b / s).toFixed(3), n: results.source[test].length };
};
console.log(JSON.stringify({ model: path.basename(model), prebuilt: path.relative(root, prebuilt), variant, source: path.relative(root, source), rows: SERIES.map(row) }, null, 2));
