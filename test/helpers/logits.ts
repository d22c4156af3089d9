// Small readings of a logits row shared by the parity tests.

/** The most likely token and its lead over the second (the margin a near-tie is judged by). */
export function top2(x: Float32Array): { best: number; gap: number } {
    let best = 0;
    let second = -Infinity;
    for (let i = 1; i < x.length; i++) {
        if (x[i]! > x[best]!) {
            second = x[best]!;
            best = i;
        } else if (x[i]! > second) second = x[i]!;
    }
    return { best, gap: x[best]! - second };
}
