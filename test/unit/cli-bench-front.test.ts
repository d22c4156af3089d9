// `llamafuse bench` is a front: the suites live in bench/ of a source checkout, outside the
// package's dist. Where they are absent (an installed package) it must say so with a code,
// and in this checkout it must find them and the tsx that runs them.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { BENCH_ENTRY, BENCH_NOT_SHIPPED, benchRunner } from "../../src/cli/bench.js";
import { LlamaError } from "../../src/errors.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const tmp = mkdtempSync(path.join(tmpdir(), "llamafuse-bench-front-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("llamafuse bench front", () => {
    it("finds bench/cli.ts and tsx in this checkout", () => {
        expect(BENCH_ENTRY).toBe(path.join(repoRoot, "bench", "cli.ts"));
        expect(existsSync(BENCH_ENTRY)).toBe(true);
        const r = benchRunner(repoRoot);
        expect(r.entry).toBe(BENCH_ENTRY);
        expect(r.loader).toMatch(/^file:\/\/.*node_modules\/tsx\//);
    });

    it("in a package without bench/ (as npm installs it): ERR_UNSUPPORTED saying where the suites are", () => {
        writeFileSync(path.join(tmp, "package.json"), JSON.stringify({ name: "llamafuse", version: "0.0.0" }));
        let err: unknown;
        try {
            benchRunner(tmp);
        } catch (e) {
            err = e;
        }
        expect(err).toBeInstanceOf(LlamaError);
        expect((err as LlamaError).code).toBe("ERR_UNSUPPORTED");
        expect((err as LlamaError).message).toBe(BENCH_NOT_SHIPPED);
    });
});
