// model.estimateMemory() and loadModel({ gpuLayers: "auto" }) (llama.cpp's common/fit, no_alloc)
// against what llama.cpp actually allocates for the same model and context on the CPU: the
// weights (model.info.sizeBytes, llama_model_size), the KV cache (n_ctx * n_layer *
// (n_embd_k_gqa + n_embd_v_gqa) * bytes per element, worked out here from the model's shape)
// and the buffers of a live context (llama_get_memory_breakdown after createContext).
// Measured on this CPU build: the estimate equals the allocation to the byte for weights, KV
// and compute buffers on all four models (F32, F16, Q4_0 and Q8_0 weights) and both context
// shapes, so the bound is exact.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "../../src/index.js";
import { contextMemory, type MemoryEstimate } from "../../src/fit.js";
import { MODELS } from "../helpers/models.js";
import { cachedSynthModel } from "../helpers/synth-cache.js";

const BYTES_PER_KV_ELEMENT = { f16: 2, f32: 4 } as const;

// KV bytes from the model's shape alone: K and V rows of headsKv * headDim per layer and cell.
function kvBytes(model: Model, contextSize: number, kvType: keyof typeof BYTES_PER_KV_ELEMENT): number {
    const { layers, headsKv, headDim } = model.info;
    return contextSize * layers * 2 * headsKv * headDim * BYTES_PER_KV_ELEMENT[kvType];
}

function host(e: MemoryEstimate) {
    const h = e.devices.at(-1)!;
    expect(h.name).toBe("host");
    return h;
}

const SHAPES = [
    { contextSize: 512, kvType: "f16" as const },
    { contextSize: 2048, kvType: "f32" as const, batchSize: 256 },
];

describe("model.estimateMemory against llama.cpp's allocation (CPU)", () => {
    const models: Record<string, Model> = {};
    beforeAll(async () => {
        models.stories260K = await loadModel(MODELS.stories260K);
        // Quantized weights move to the CPU backend's extra buffer types (repacked, or AMX
        // tiles where the CPU has them), which are neither "host" buffers nor on a model device:
        // llama.cpp's common/fit dropped them (native/patches/0007). F16 weights move to the AMX
        // buffer too where the CPU has AMX (native/patches/0015).
        // Loaded without mmap: a mapped file's buffer spans the range from its first to its last
        // tensor, holes of the tensors moved elsewhere included, which the estimate does not count.
        models.synth = await loadModel(await cachedSynthModel({ layers: 2, embedding: 256, heads: 8, headsKv: 2, headDim: 64, ff: 512, vocab: "llama-spm", type: "f16", seed: 11 }), { useMmap: false });
        models.synthQ4_0 = await loadModel(await cachedSynthModel({ layers: 2, embedding: 256, heads: 8, headsKv: 2, headDim: 64, ff: 512, vocab: "llama-spm", type: "q4_0", seed: 11 }), { useMmap: false });
        models.tiny656KQ8_0 = await loadModel(MODELS.tiny656K, { useMmap: false });
    });
    afterAll(async () => {
        await Promise.all(Object.values(models).map((m) => m.dispose()));
    });

    for (const name of ["stories260K", "synth", "synthQ4_0", "tiny656KQ8_0"]) {
        for (const shape of SHAPES) {
            it(`${name} ${JSON.stringify(shape)}`, async () => {
                const model = models[name]!;
                const est = await model.estimateMemory(shape);
                // A CPU build (no GPU device): everything is in system memory, the one "host" entry.
                expect(est.devices).toHaveLength(1);
                const h = host(est);
                expect(h.totalMemory).toBeGreaterThan(0);
                expect(est.total).toBe(h.model + h.context + h.compute);

                // F32/F16 weights stay as they are in the file; repacked or AMX-tiled ones can
                // take more room than the file's blocks (the allocation check below is exact).
                if (name.startsWith("synthQ") || name.startsWith("tiny")) expect(h.model).toBeGreaterThanOrEqual(model.info.sizeBytes);
                else expect(h.model).toBe(model.info.sizeBytes);
                expect(h.context).toBe(kvBytes(model, shape.contextSize, shape.kvType));
                expect(h.compute).toBeGreaterThan(0);

                const ctx = await model.createContext(shape);
                try {
                    expect(ctx.contextSize).toBe(shape.contextSize);
                    const real = host(await ctx.enqueue((n) => contextMemory(n)));
                    expect({ model: h.model, context: h.context, compute: h.compute }).toEqual({ model: real.model, context: real.context, compute: real.compute });
                } finally {
                    await ctx.dispose();
                }
            });
        }
    }

    it("grows with the context as the KV formula says", async () => {
        const model = models.synth!;
        const [a, b] = await Promise.all([model.estimateMemory({ contextSize: 1024 }), model.estimateMemory({ contextSize: 4096 })]);
        expect(b.context - a.context).toBe(kvBytes(model, 4096, "f16") - kvBytes(model, 1024, "f16"));
        expect(b.model).toBe(a.model);
    });

    it("validates its options like createContext and refuses a disposed or vocab-only model", async () => {
        const model = models.stories260K!;
        await expect(model.estimateMemory({ contextSize: 0 })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
        await expect(model.estimateMemory({ bogus: 1 } as never)).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
        const vocab = await loadModel(MODELS.stories260K, { vocabOnly: true });
        await expect(vocab.estimateMemory()).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" });
        await vocab.dispose();
        const gone = await loadModel(MODELS.stories260K);
        await gone.dispose();
        await expect(gone.estimateMemory()).rejects.toMatchObject({ code: "ERR_DISPOSED" });
    });
});

describe('loadModel({ gpuLayers: "auto" })', () => {
    it("resolves to 0 layers on a CPU-only build and loads a working model", async () => {
        const model = await loadModel(MODELS.stories260K, { gpuLayers: "auto" });
        try {
            expect(model.gpuLayers).toBe(0);
            const ctx = await model.createContext({ contextSize: 256 });
            expect(ctx.contextSize).toBe(256);
            await ctx.dispose();
        } finally {
            await model.dispose();
        }
        const plain = await loadModel(MODELS.stories260K, { gpuLayers: 3 });
        expect(plain.gpuLayers).toBe(3);
        await plain.dispose();
    });

    it("validates gpuLayers and the fit options before loading anything", async () => {
        for (const gpuLayers of ["max", "AUTO", 1.5, -2, null]) {
            await expect(loadModel(MODELS.stories260K, { gpuLayers: gpuLayers as never })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION", message: expect.stringContaining("gpuLayers") });
        }
        await expect(loadModel(MODELS.stories260K, { gpuLayers: "auto", fitContextSize: 0 })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
        await expect(loadModel(MODELS.stories260K, { gpuLayers: "auto", fitMarginBytes: -1 })).rejects.toMatchObject({ code: "ERR_INVALID_OPTION" });
        await expect(loadModel(MODELS.stories260K, { gpuLayers: "auto", vocabOnly: true })).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" });
        await expect(loadModel("/nonexistent/model.gguf", { gpuLayers: "auto" })).rejects.toMatchObject({ code: "ERR_FILE_NOT_FOUND" });
    });

    it("gives ERR_OUT_OF_MEMORY, not a crash, when the model and context cannot fit", async () => {
        // A margin larger than any machine's memory.
        await expect(loadModel(MODELS.stories260K, { gpuLayers: "auto", fitMarginBytes: Number.MAX_SAFE_INTEGER })).rejects.toMatchObject({ code: "ERR_OUT_OF_MEMORY" });
        // A context whose KV cache alone is twice this machine's memory (16 KiB per cell: 8
        // layers * K and V * 512 f16 values), estimated without allocating it.
        const big = await cachedSynthModel({ layers: 8, embedding: 512, heads: 8, headsKv: 8, ff: 1024, vocab: "llama-spm", type: "f16", seed: 5 });
        const bigModel = await loadModel(big);
        let contextSize = 0;
        try {
            const hostTotal = (await bigModel.estimateMemory({ contextSize: 256 })).devices.at(-1)!.totalMemory;
            contextSize = Math.min(1 << 24, Math.ceil((2 * hostTotal) / kvBytes(bigModel, 256, "f16")) * 256);
            const est = await bigModel.estimateMemory({ contextSize });
            expect(est.context).toBe(kvBytes(bigModel, contextSize, "f16"));
            expect(est.total).toBeGreaterThan(hostTotal); // the premise, on a machine of up to 256 GiB
        } finally {
            await bigModel.dispose();
        }
        await expect(loadModel(big, { gpuLayers: "auto", fitContextSize: contextSize })).rejects.toMatchObject({ code: "ERR_OUT_OF_MEMORY", message: expect.stringContaining(`${contextSize} tokens`) });
        // The process lives on, and the same file fits with an ordinary context.
        const ok = await loadModel(big, { gpuLayers: "auto" });
        expect(ok.gpuLayers).toBe(0);
        await ok.dispose();
    });
});
