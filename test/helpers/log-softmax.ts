// The float64 reference for log-probabilities: log-softmax of a logits row, computed here
// independently of the native code (max-shifted, summed in float64).
export function logSoftmax64(row: Float32Array): Float64Array {
    let max = -Infinity;
    for (const x of row) if (x > max) max = x;
    let sum = 0;
    for (const x of row) sum += Math.exp(x - max);
    const lse = max + Math.log(sum);
    return Float64Array.from(row, (x) => x - lse);
}

/** The k most likely tokens of a log-probability row, best first (ties: lower id). */
export function topK(lp: Float64Array, k: number): { token: number; logProb: number }[] {
    const ids = Array.from(lp.keys()).sort((a, b) => lp[b]! - lp[a]! || a - b);
    return ids.slice(0, k).map((token) => ({ token, logProb: lp[token]! }));
}
