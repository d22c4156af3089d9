// `llamafuse/synth`: synthetic GGUF models with random weights and real vocabularies, and the
// GGUF reader/writer they are built on. A sub-export, so tooling stays out of the core API.

export { synthModel, planSynthModel, synthPresets, defaultVocabDir, resolveSynthOptions } from "./synth.js";
export type {
    SynthOptions, SynthResult, SynthPreset, SynthType, SynthArchitecture, SynthShape, SynthPlan, SynthTensor,
    ResolvedSynthOptions,
} from "./synth.js";
export { readGguf, parseGguf, readTensorBytes } from "./gguf/reader.js";
export type { GgufFile } from "./gguf/reader.js";
export { writeGguf, encodeGgufHeader } from "./gguf/writer.js";
export type { GgufTensorSource, WriteGgufOptions, EncodedHeader } from "./gguf/writer.js";
export { GgmlType, GgufValueType, tensorByteSize } from "./gguf/types.js";
export type { GgufMetadata, GgufValue, GgufTensorInfo, GgmlTypeId } from "./gguf/types.js";
export {
    quantizeQ4_0, quantizeQ8_0, dequantizeQ4_0, dequantizeQ8_0, f32ToF16Bits, f16BitsToF32,
} from "./gguf/quant.js";
