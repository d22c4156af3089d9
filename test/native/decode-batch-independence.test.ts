// A decode step of several sequences gives each sequence exactly (bit for bit) the logits it
// gets decoded alone, on Q4_0, Q8_0, Q4_K_M (Q4_K and Q6_K) and Q5_K_M (Q5_K and Q6_K)
// weights. Where the CPU has AMX, ggml keeps such weights in its AMX buffer and picks a
// kernel by the step's row count: ggml's VNNI kernel for 1 row, native/patches/0016's pair
// tile kernel for 2 to 8 (a decode step of a few streams), 0009's tile kernel for 9 to 16, and
// 0016's pair kernel 8 rows at a time for 17 or more (prompts). They must agree exactly, or a stream's text would depend on which other streams
// share its steps. The pair kernels take K blocks two at a time: the second shape's widths
// (224, 480) have an odd number of 32-wide blocks.
// Without AMX, on a CPU with AVX2 ggml keeps Q4_0 weights repacked eight columns at a time
// (its CPU_REPACK buffer): ggml's 1-row kernel takes single rows (each sequence alone), and
// native/kernels/cpu/matmul_q4_0 (patch 0017's hook, AVX-512 VNNI) every step of 2 or more
// rows, 8 at a time, then 4, then the 1-3 past a multiple of 4; its call counter shows it
// ran. Q4_K weights likewise (q4_K_8x8, matmul_q4_k), and Q5_K and Q6_K weights, which ggml
// keeps as stored on x86, go through its generic matmul: its vec_dot for one row,
// native/kernels/cpu/matmul_q5_k / matmul_q6_k (patch 0018's hook) for 2 or more. Q8_0
// weights, also kept as stored: its vec_dot for one row, native/kernels/cpu/matmul_q8_0 for
// steps of 2-16 rows (0018 claims them from llamafile's sgemm), sgemm for prompts past 16.
// (Elsewhere every step runs ggml's generic CPU matmul.)
// The attention is ggml's here: the fused kernels take a tiled path for a batch of several
// tokens and a dot-form one for a single token, whose float rounding may differ in the last
// bit (Q8_0-quantized activations then magnify that to ~1e-2 in the logits of a random-weight
// model), and what is tested is the matmul.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { binding } from "../../src/binding.js";
import { loadModel, type Model } from "../../src/index.js";
import { cachedSynthModel } from "../helpers/synth-cache.js";

const SHAPES = {
    "even blocks": { layers: 2, embedding: 256, heads: 8, headsKv: 2, headDim: 32, ff: 512, vocab: "llama-spm" as const, seed: 5 },
    "odd blocks": { layers: 2, embedding: 224, heads: 7, headsKv: 1, headDim: 32, ff: 480, vocab: "llama-spm" as const, seed: 6 },
};
type Kernel = "q4_0" | "q4_k" | "q5_k" | "q6_k" | "q8_0";
const dev = binding() as unknown as { devBindings?: boolean; matmulQuantAvailable?: Record<Kernel, boolean>; matmulQuantCalls?: (type: Kernel) => number };
// our batch kernels run in these models where this build has them and ggml's AMX buffer
// (which takes Q4_0, Q4_K, Q5_K, Q6_K and Q8_0 weights first) is not in play
const oursRuns = (kernel: Kernel) => !!dev.devBindings && dev.matmulQuantAvailable?.[kernel] === true && !/\bamx_int8\b/.test(readFileSync("/proc/cpuinfo", "utf8"));
const KERNELS = { q4_0: ["q4_0"], q8_0: ["q8_0"], q4_k_m: ["q4_k", "q6_k"], q5_k_m: ["q5_k", "q6_k"] } as const;
const SEQUENCES = 16;
const STEP_SIZES = [2, 3, 5, 8, 9, 16];

/** Index of the first element that differs (NaN never equals), or -1. */
function firstDifference(a: Float32Array, b: Float32Array): number {
    if (a.length !== b.length) return 0;
    for (let i = 0; i < a.length; i++) if (!(a[i] === b[i])) return i;
    return -1;
}

// Q4_K_M and Q5_K_M on the even shape only: K-quants need rows of whole 256-value blocks
const CASES = [
    ...(["q4_0", "q8_0"] as const).flatMap((type) => (Object.keys(SHAPES) as (keyof typeof SHAPES)[]).map((shape) => [type, shape] as const)),
    ["q4_k_m", "even blocks"] as const,
    ["q5_k_m", "even blocks"] as const,
];

describe.each(CASES)("%s weights, %s: a sequence's logits do not depend on the step it shares", (type, shape) => {
    let model: Model;
    beforeAll(async () => {
        model = await loadModel(await cachedSynthModel({ ...SHAPES[shape], type }));
    });
    afterAll(async () => {
        await model?.dispose();
    });

    it(`steps of ${STEP_SIZES.join(", ")} sequences equal each sequence decoded alone, bit for bit`, async () => {
        const ctx = await model.createContext({ contextSize: 2048, sequences: SEQUENCES, threads: 2, attention: "ggml" });
        try {
            // Each sequence gets its own history (prefilled alone, so the same in both arms).
            const history = Array.from({ length: SEQUENCES }, (_, s) => Array.from({ length: 6 + (s % 5) }, (_, i) => 100 + 37 * s + 11 * i));
            for (let s = 0; s < SEQUENCES; s++) await ctx.forward({ sequence: s, tokens: history[s]! });
            const kernels = KERNELS[type].filter(oursRuns);
            const calls0 = kernels.map((k) => dev.matmulQuantCalls!(k));
            for (const n of STEP_SIZES) {
                const next = (s: number) => [2000 + 13 * s + n];
                const together = await ctx.forward(Array.from({ length: n }, (_, s) => ({ sequence: s, tokens: next(s) })));
                for (let s = 0; s < n; s++) await ctx.kv.remove(s, history[s]!.length);
                for (let s = 0; s < n; s++) {
                    const alone = await ctx.forward({ sequence: s, tokens: next(s) });
                    await ctx.kv.remove(s, history[s]!.length);
                    const a = together.logits(s), b = alone.logits(s);
                    const at = firstDifference(a, b);
                    expect(at, `step of ${n}, sequence ${s}: logit ${at} is ${a[at]} together, ${b[at]} alone`).toBe(-1);
                }
            }
            kernels.forEach((k, i) => expect(dev.matmulQuantCalls!(k) - calls0[i]!, `${k} kernel calls`).toBeGreaterThan(0));
        } finally {
            await ctx.dispose();
        }
    });

    it("a 43-token prompt in one forward (five groups of 8 rows and one of 3) equals it fed token by token, bit for bit", async () => {
        const prompt = Array.from({ length: 43 }, (_, i) => 300 + 29 * i);
        const ctx = await model.createContext({ contextSize: 256, sequences: 2, threads: 2, attention: "ggml" });
        try {
            const whole = await ctx.forward({ sequence: 0, tokens: prompt, logits: "all" });
            for (let i = 0; i < prompt.length; i++) {
                const one = await ctx.forward({ sequence: 1, tokens: [prompt[i]!] });
                const a = whole.logits(0, i), b = one.logits(1);
                const at = firstDifference(a, b);
                expect(at, `position ${i}: logit ${at} is ${a[at]} in the prompt, ${b[at]} token by token`).toBe(-1);
            }
        } finally {
            await ctx.dispose();
        }
    });
});
