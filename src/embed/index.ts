// Embeddings and reranking: model.createEmbeddingContext() → embed() / rank().
export { EmbeddingContext, createEmbeddingContext } from "./context.js";
export type { EmbedOptions, EmbedInput } from "./context.js";
export type { EmbeddingContextOptions, NormalizeMode } from "./options.js";
export type { PoolingType } from "./native.js";
