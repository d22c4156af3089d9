// Public exports only.
export { loadModel, Model } from "./model.js";
export type { LoadModelOptions, ModelInfo, TokenizeOptions, DetokenizeOptions } from "./model.js";
export { Context, ForwardResult, KvCache, defaultThreads, KV_TYPES } from "./context.js";
export type { ContextOptions, ForwardItem, ForwardOptions, LogitsMode, KvType, AttentionMode } from "./context.js";
export type { StateOptions } from "./state.js";
export { LlamaError } from "./errors.js";
export type { ErrorCode } from "./errors.js";
export { systemInfo, LLAMA_CPP_COMMIT } from "./system.js";
export { createSampler, resetSampling, resolveSampling, Sampler, RANDOM_SEED } from "./sampling.js";
export type { SamplingOptions, SampleResult, ResolvedSampling } from "./sampling.js";
export { jsonSchemaToGrammar } from "./json-schema.js";
export type { GenerateOptions, GenerateStep, GenerateSummary } from "./generate.js";
export type { BeamSearchOptions, BeamHypothesis } from "./beam-search.js";
export { kernelStats, kernelStatsReset } from "./attention.js";
export type { AttentionKernelStats } from "./attention.js";
export { synthModel, planSynthModel, synthPresets } from "./synth/index.js";
export type { SynthOptions, SynthResult, SynthPreset, SynthType } from "./synth/index.js";
