// No import cycles among the modules that run: a cycle makes a module's exports undefined
// while its partner evaluates (an error that depends on which file was imported first), and
// the library's import order must not depend on that. Type-only imports are erased by tsc
// and do not count; dynamic import() runs after evaluation and does not count either.
// Parsed with TypeScript's own parser, so `import { type A }` and `export type` are seen as
// the compiler sees them.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

function tsFiles(dir: string): string[] {
    return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        const p = path.join(dir, e.name);
        return e.isDirectory() ? tsFiles(p) : e.name.endsWith(".ts") && !e.name.endsWith(".d.ts") ? [p] : [];
    });
}

/** The relative modules a file imports at evaluation time (static, not type-only). */
function runtimeImports(file: string, text = readFileSync(file, "utf8")): string[] {
    const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
    const out: string[] = [];
    for (const st of sf.statements) {
        let spec: ts.Expression | undefined;
        if (ts.isImportDeclaration(st)) {
            const c = st.importClause;
            const typeOnly = c !== undefined && (c.isTypeOnly || (!c.name && c.namedBindings !== undefined && ts.isNamedImports(c.namedBindings) && c.namedBindings.elements.length > 0 && c.namedBindings.elements.every((e) => e.isTypeOnly)));
            if (!typeOnly) spec = st.moduleSpecifier;
        } else if (ts.isExportDeclaration(st) && st.moduleSpecifier) {
            const typeOnly = st.isTypeOnly || (st.exportClause !== undefined && ts.isNamedExports(st.exportClause) && st.exportClause.elements.length > 0 && st.exportClause.elements.every((e) => e.isTypeOnly));
            if (!typeOnly) spec = st.moduleSpecifier;
        }
        if (spec && ts.isStringLiteral(spec) && spec.text.startsWith(".")) {
            out.push(path.resolve(path.dirname(file), spec.text.replace(/\.js$/, ".ts")));
        }
    }
    return out;
}

/** Strongly connected components with more than one file, or a file that imports itself (Tarjan). */
function cycles(graph: Map<string, string[]>): string[][] {
    let next = 0;
    const index = new Map<string, number>(), low = new Map<string, number>(), stack: string[] = [], onStack = new Set<string>();
    const found: string[][] = [];
    const visit = (v: string): void => {
        index.set(v, next);
        low.set(v, next++);
        stack.push(v);
        onStack.add(v);
        for (const w of graph.get(v) ?? []) {
            if (!graph.has(w)) continue;
            if (!index.has(w)) {
                visit(w);
                low.set(v, Math.min(low.get(v)!, low.get(w)!));
            } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
        }
        if (low.get(v) === index.get(v)) {
            const scc: string[] = [];
            let w: string;
            do {
                w = stack.pop()!;
                onStack.delete(w);
                scc.push(w);
            } while (w !== v);
            if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.sort());
        }
    };
    for (const v of graph.keys()) if (!index.has(v)) visit(v);
    return found;
}

function graphOf(dirs: string[]): Map<string, string[]> {
    const files = dirs.flatMap((d) => tsFiles(path.join(repoRoot, d)));
    return new Map(files.map((f) => [f, runtimeImports(f)]));
}

const rel = (c: string[][]) => c.map((scc) => scc.map((f) => path.relative(repoRoot, f)));

describe("import cycles", () => {
    it("the checker sees a value cycle, and not one made only of type imports", () => {
        const a = path.join(repoRoot, "a.ts"), b = path.join(repoRoot, "b.ts");
        const value = new Map([[a, runtimeImports(a, `import { x } from "./b.js";`)], [b, runtimeImports(b, `export { y } from "./a.js";`)]]);
        expect(rel(cycles(value))).toEqual([["a.ts", "b.ts"]]);
        const typeOnly = new Map([
            [a, runtimeImports(a, `import type { X } from "./b.js"; import { type Z } from "./b.js";`)],
            [b, runtimeImports(b, `import { y } from "./a.js"; export type { W } from "./a.js"; const m = await import("./a.js");`)],
        ]);
        expect(cycles(typeOnly)).toEqual([]);
    });

    it("src/ (the library, the CLI) has none", () => {
        expect(rel(cycles(graphOf(["src"])))).toEqual([]);
    });

    it("bench/ (the suites and their entry points) has none", () => {
        expect(rel(cycles(graphOf(["bench"])))).toEqual([]);
    });
});
