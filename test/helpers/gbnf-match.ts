// A small, independent GBNF recognizer for tests: does a grammar (llama.cpp's GBNF syntax:
// literals, [classes], rule refs, groups, |, *, +, ?, {m,n}) accept a whole string? Matching
// computes every end position reachable from a start, memoized per (rule, position), so
// it needs no backtracking. Enough for grammars that are not left-recursive.
type Node =
    | { t: "lit"; cps: number[] }
    | { t: "cls"; neg: boolean; ranges: [number, number][] }
    | { t: "ref"; name: string }
    | { t: "alt"; alts: Node[][] }
    | { t: "rep"; node: Node; min: number; max: number };

function parseEscape(s: string, i: number): [number, number] {
    const c = s[i + 1]!;
    const simple: Record<string, number> = { n: 10, r: 13, t: 9, "\\": 92, '"': 34, "[": 91, "]": 93, "-": 45 };
    if (c in simple) return [simple[c]!, i + 2];
    const len = c === "x" ? 2 : c === "u" ? 4 : c === "U" ? 8 : 0;
    if (!len) throw new Error(`bad escape \\${c}`);
    return [parseInt(s.slice(i + 2, i + 2 + len), 16), i + 2 + len];
}

function parseRules(g: string): Map<string, Node> {
    const rules = new Map<string, Node>();
    const src = g.replace(/#[^\n]*/g, "");
    let i = 0;
    const ws = () => {
        while (i < src.length && /[ \t\n]/.test(src[i]!)) i++;
    };
    const inlineWs = () => {
        while (i < src.length && /[ \t]/.test(src[i]!)) i++;
    };
    const name = () => {
        const m = /^[a-zA-Z0-9-]+/.exec(src.slice(i));
        if (!m) throw new Error(`expected a name at ${i}`);
        i += m[0].length;
        return m[0];
    };
    const alt = (nested: boolean): Node => {
        const alts: Node[][] = [[]];
        for (;;) {
            nested ? ws() : inlineWs();
            const c = src[i];
            if (c === undefined || c === "\n" || c === ")") break;
            if (c === "|") {
                i++;
                alts.push([]);
                continue;
            }
            let atom: Node;
            if (c === '"') {
                const cps: number[] = [];
                i++;
                while (src[i] !== '"') {
                    if (src[i] === "\\") {
                        const [cp, j] = parseEscape(src, i);
                        cps.push(cp);
                        i = j;
                    } else {
                        const cp = src.codePointAt(i)!;
                        cps.push(cp);
                        i += cp > 0xffff ? 2 : 1;
                    }
                }
                i++;
                atom = { t: "lit", cps };
            } else if (c === "[") {
                i++;
                const neg = src[i] === "^";
                if (neg) i++;
                const ranges: [number, number][] = [];
                const one = () => {
                    if (src[i] === "\\") {
                        const [cp, j] = parseEscape(src, i);
                        i = j;
                        return cp;
                    }
                    const cp = src.codePointAt(i)!;
                    i += cp > 0xffff ? 2 : 1;
                    return cp;
                };
                while (src[i] !== "]") {
                    const lo = one();
                    if (src[i] === "-" && src[i + 1] !== "]") {
                        i++;
                        ranges.push([lo, one()]);
                    } else ranges.push([lo, lo]);
                }
                i++;
                atom = { t: "cls", neg, ranges };
            } else if (c === "(") {
                i++;
                atom = alt(true);
                ws();
                if (src[i] !== ")") throw new Error(`expected ) at ${i}`);
                i++;
            } else atom = { t: "ref", name: name() };
            const q = src[i];
            if (q === "*") (atom = { t: "rep", node: atom, min: 0, max: Infinity }), i++;
            else if (q === "+") (atom = { t: "rep", node: atom, min: 1, max: Infinity }), i++;
            else if (q === "?") (atom = { t: "rep", node: atom, min: 0, max: 1 }), i++;
            else if (q === "{") {
                const m = /^\{(\d+)(,(\d*))?\}/.exec(src.slice(i))!;
                const min = Number(m[1]);
                atom = { t: "rep", node: atom, min, max: m[2] === undefined ? min : m[3] ? Number(m[3]) : Infinity };
                i += m[0].length;
            }
            alts[alts.length - 1]!.push(atom);
        }
        return { t: "alt", alts };
    };
    for (;;) {
        ws();
        if (i >= src.length) break;
        const n = name();
        inlineWs();
        if (src.slice(i, i + 3) !== "::=") throw new Error(`expected ::= at ${i}`);
        i += 3;
        rules.set(n, alt(false));
    }
    return rules;
}

export function gbnfAccepts(grammar: string, text: string, root = "root"): boolean {
    const rules = parseRules(grammar);
    const cps = Array.from(text, (c) => c.codePointAt(0)!);
    const memo = new Map<string, Set<number>>();
    const match = (node: Node, pos: number): Set<number> => {
        switch (node.t) {
            case "lit": {
                for (let k = 0; k < node.cps.length; k++) if (cps[pos + k] !== node.cps[k]) return new Set();
                return new Set([pos + node.cps.length]);
            }
            case "cls": {
                const c = cps[pos];
                if (c === undefined) return new Set();
                const inside = node.ranges.some(([lo, hi]) => c >= lo && c <= hi);
                return inside !== node.neg ? new Set([pos + 1]) : new Set();
            }
            case "ref": {
                const key = `${node.name}@${pos}`;
                const hit = memo.get(key);
                if (hit) return hit;
                const rule = rules.get(node.name);
                if (!rule) throw new Error(`undefined rule ${node.name}`);
                memo.set(key, new Set()); // no left recursion: a re-entry at the same place matches nothing
                const out = match(rule, pos);
                memo.set(key, out);
                return out;
            }
            case "alt": {
                const out = new Set<number>();
                for (const seq of node.alts) {
                    let cur = new Set([pos]);
                    for (const item of seq) {
                        const next = new Set<number>();
                        for (const p of cur) for (const q of match(item, p)) next.add(q);
                        cur = next;
                        if (cur.size === 0) break;
                    }
                    for (const p of cur) out.add(p);
                }
                return out;
            }
            case "rep": {
                const out = new Set<number>();
                let cur = new Set([pos]);
                if (node.min === 0) out.add(pos);
                const seen = new Set<number>();
                for (let n = 1; n <= node.max && cur.size > 0; n++) {
                    const next = new Set<number>();
                    for (const p of cur) for (const q of match(node.node, p)) next.add(q);
                    cur = new Set([...next].filter((p) => n < node.min || !seen.has(p)));
                    if (n >= node.min) for (const p of cur) (out.add(p), seen.add(p));
                }
                return out;
            }
        }
    };
    return match({ t: "ref", name: root }, 0).has(cps.length);
}
