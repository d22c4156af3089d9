// The addon's sources must build from an installed package, where llama.cpp is the vendored
// copy in vendor/llama.cpp and there is no deps/: llama.cpp's headers come through the
// include path CMake sets from LLAMA_CPP_DIR, never through a relative path into deps/ (two
// files did that, and the LLAMAFUSE_BUILD_FROM_SOURCE=1 install failed on them).
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

function sources(dir: string): string[] {
    return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) return e.name === "patches" ? [] : sources(p);
        return /\.(c|cc|cpp|h|hpp|cu|cuh)$/.test(e.name) ? [p] : [];
    });
}

describe("native includes", () => {
    it("no native source includes a file through deps/ (missing from an installed package)", () => {
        const offending: string[] = [];
        for (const file of [...sources(path.join(repoRoot, "native")), path.join(repoRoot, "CMakeLists.txt")]) {
            readFileSync(file, "utf8").split("\n").forEach((line, i) => {
                if (/^\s*#\s*include\s*[<"][^">]*deps\//.test(line)) offending.push(`${path.relative(repoRoot, file)}:${i + 1}: ${line.trim()}`);
            });
        }
        expect(offending).toEqual([]);
    });
});
