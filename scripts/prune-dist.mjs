#!/usr/bin/env node
// npm pack / npm publish (prepack): removes from dist/ what no file in src/ compiles to any
// more. tsc never deletes, so a checkout that built before a file moved (src/bench/ went to
// bench/suites/, outside the library) would otherwise ship the stale copy. Only orphans go:
// dist/ stays usable for whoever runs the CLI from this checkout meanwhile.
import { existsSync, readdirSync, rmSync, rmdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const src = path.join(root, "src");
const dist = path.join(root, "dist");

/** The source a compiled file comes from: dist/a/b.js, .d.ts, .js.map, .d.ts.map -> src/a/b.ts. */
function sourceOf(rel) {
    const m = /^(.*)\.(js|js\.map|d\.ts|d\.ts\.map)$/.exec(rel);
    return m ? path.join(src, `${m[1]}.ts`) : null;
}

function prune(dir, rel = "") {
    let removed = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
        const r = path.join(rel, e.name);
        const p = path.join(dir, e.name);
        if (e.isDirectory()) {
            removed += prune(p, r);
            if (readdirSync(p).length === 0) rmdirSync(p);
        } else {
            const from = sourceOf(r);
            if (from && !existsSync(from)) {
                rmSync(p);
                removed++;
            }
        }
    }
    return removed;
}

// a tree without src/ (an unpacked tarball) has nothing to compare against: leave it alone
if (existsSync(src) && existsSync(dist)) {
    const removed = prune(dist);
    if (removed) console.log(`llamafuse: removed ${removed} stale file(s) from dist/ (their sources moved or went)`);
}
