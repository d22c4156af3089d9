// Random GBNF grammars for fuzzing sampler creation (test/fuzz/grammar-slice.test.ts): a root
// and up to 12 rules, each rule referring only to later ones (so that most grammars are not
// left-recursive by construction), with groups, optional parts, *, +, bounded repetitions,
// character classes and empty alternatives. Repetitions of nullable parts still make
// llama.cpp's own left-recursion check fire, and the nesting makes fan-out: both are outcomes
// to reach. Each grammar is a pure function of its seed.
import { Rng } from "./mutate.js";

export function randomGrammar(seed: number): string {
    const r = new Rng(seed);
    const nRules = 1 + r.int(12);
    const item = (depth: number, me: number): string => {
        const x = r.int(100);
        if (x < 25) return `"${"abcxyz"[r.int(6)]!.repeat(1 + r.int(2))}"`;
        if (x < 35) return `[a-${"cxz"[r.int(3)]}]`;
        if (x < 40) return '("" | "k")';
        if (x < 45) return ".";
        if (x < 70) return me + 1 >= nRules ? '"e"' : `r${me + 1 + r.int(nRules - me - 1)}`;
        if (depth < 3) return `(${alternates(depth + 1, me)})`;
        return '"q"';
    };
    const sequence = (depth: number, me: number): string => {
        const parts: string[] = [];
        for (let n = 1 + r.int(3); n > 0; n--) {
            let it = item(depth, me);
            const q = r.int(100);
            if (q < 15) it += "?";
            else if (q < 25) it += "*";
            else if (q < 32) it += "+";
            else if (q < 38) {
                const a = r.int(4);
                it += `{${a},${a + r.int(4)}}`;
            } else if (q < 40) it += `{${r.int(3)}}`;
            parts.push(it);
        }
        return parts.join(" ");
    };
    const alternates = (depth: number, me: number): string => Array.from({ length: 1 + r.int(3) }, () => sequence(depth, me)).join(" | ");
    let g = `root ::= ${alternates(0, -1)}\n`;
    for (let i = 0; i < nRules; i++) g += `r${i} ::= ${alternates(0, i)}\n`;
    return g;
}
