// What each sequence of a context holds, token by token: mirror[s][p] is the token at
// position p of sequence s. Kept exact through forward, generate and the KV operations, so
// that a new prompt can reuse the longest prefix already in the cache (prompt cache). Where
// an operation leaves the cache in a shape a flat list cannot describe (a hole in the middle,
// shifted positions, a loaded state), the sequence becomes unknown (null) and the next
// prompt on it starts from an empty sequence: conservative, never wrong.

export class SequenceTokens {
    readonly #seqs: (number[] | null)[];

    constructor(sequences: number) {
        this.#seqs = Array.from({ length: sequences }, () => []);
    }

    /** A copy of what sequence `s` holds, or null when unknown. */
    get(s: number): Int32Array | null {
        const t = this.#seqs[s];
        return t ? Int32Array.from(t) : null;
    }

    /** Length of the longest common prefix of sequence `s` and `tokens` (0 when unknown). */
    commonPrefix(s: number, tokens: ArrayLike<number>): number {
        const t = this.#seqs[s];
        if (!t) return 0;
        const n = Math.min(t.length, tokens.length);
        let i = 0;
        while (i < n && t[i] === tokens[i]) i++;
        return i;
    }

    /** Tokens decoded at the end of sequence `s`. */
    append(s: number, tokens: ArrayLike<number>): void {
        const t = this.#seqs[s];
        if (!t) return;
        for (let i = 0; i < tokens.length; i++) t.push(tokens[i]!);
    }

    /** The sequence holds exactly `tokens` (after a prompt was matched and evaluated). */
    set(s: number, tokens: ArrayLike<number> | null): void {
        this.#seqs[s] = tokens ? Array.from(tokens) : null;
    }

    /** kv.remove(s, p0, p1) succeeded (s -1: every sequence; p -1: open end). */
    removed(s: number, p0: number, p1: number): void {
        if (s < 0) {
            for (let i = 0; i < this.#seqs.length; i++) this.removed(i, p0, p1);
            return;
        }
        const t = this.#seqs[s];
        if (!t) return;
        const a = Math.max(0, p0);
        if (a >= t.length) return;
        if (p1 < 0 || p1 >= t.length) t.length = a; // a tail: the list stays exact
        else if (p1 > a) this.#seqs[s] = null;       // a hole in the middle
    }

    /** kv.copy(src, dst, p0, p1): dst gets src's cells in [p0, p1). */
    copied(src: number, dst: number, p0: number, p1: number): void {
        if (src === dst) return;
        const from = this.#seqs[src], to = this.#seqs[dst];
        const whole = p0 <= 0 && (p1 < 0 || (from !== null && p1 >= from.length));
        // Exact only when an empty dst receives all of src; anything else may interleave cells.
        this.#seqs[dst] = from && to && to.length === 0 && whole ? [...from] : from && from.length === 0 ? to : null;
    }

    /** kv.keepOnly(s). */
    keptOnly(s: number): void {
        for (let i = 0; i < this.#seqs.length; i++) if (i !== s) this.#seqs[i] = [];
    }

    /** Positions moved (shift) or content replaced (state load): no longer a flat list we know. */
    invalidate(s: number): void {
        if (s < 0) this.#seqs.fill(null);
        else this.#seqs[s] = null;
    }

    clear(): void {
        for (let i = 0; i < this.#seqs.length; i++) this.#seqs[i] = [];
    }
}
