// The benchmarks' timing helpers: every round really runs every task, in alternation, and
// the figure is the median over the timed rounds (the warm-up round left out).
import { describe, expect, it } from "vitest";
import { interleavedMedianMs, median, medianMs } from "../../bench/suites/stats.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("bench stats", () => {
    it("median of odd and even counts", () => {
        expect(median([3, 1, 2])).toBe(2);
        expect(median([4, 1, 3, 2])).toBe(2.5);
    });

    it("interleavedMedianMs runs each task once per round, alternating, and takes the median of the timed rounds", async () => {
        const order: string[] = [];
        // Round 0 (warm-up) is slow; the timed rounds take 10, 60, 30 ms: median 30.
        const aTimes = [120, 10, 60, 30];
        let a = 0;
        const result = await interleavedMedianMs(
            {
                a: async () => {
                    order.push("a");
                    await sleep(aTimes[a++]!);
                },
                b: async () => {
                    order.push("b");
                    await sleep(5);
                },
            },
            3,
        );
        expect(order).toEqual(["a", "b", "a", "b", "a", "b", "a", "b"]);
        expect(result.a!).toBeGreaterThanOrEqual(29);
        expect(result.a!).toBeLessThan(59);
        expect(result.b!).toBeGreaterThanOrEqual(4);
        expect(result.b!).toBeLessThan(result.a!);
    });

    it("interleavedMedianMs reports a failing task", async () => {
        await expect(interleavedMedianMs({ bad: () => { throw new Error("boom"); } }, 1)).rejects.toThrow(/bad failed/);
    });

    it("medianMs calls the function at least the given number of times", async () => {
        let calls = 0;
        const ms = await medianMs("count", async () => { calls++; await sleep(2); }, { iterations: 5, warmup: false });
        expect(calls).toBeGreaterThanOrEqual(5);
        expect(ms).toBeGreaterThanOrEqual(1.5);
    });
});
