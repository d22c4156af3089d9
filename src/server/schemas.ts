// JSON Schemas of the request bodies, checked by fastify (ajv) before a handler runs. They
// follow the OpenAI API's shapes and bound every size and number, so that a handler sees
// only well-typed, reasonably sized values. Fields that OpenAI accepts but that change
// nothing here (user, store, metadata, ...) are accepted; anything else is a 400 that
// names it. Checks that need the model (token ids, context size) are in the handlers.

const MAX_TOKENS_LIMIT = 1 << 24;
const MAX_STOPS = 16;
const MAX_STOP_LENGTH = 1024;

const stop = {
    type: ["string", "array", "null"],
    maxLength: MAX_STOP_LENGTH,
    maxItems: MAX_STOPS,
    items: { type: "string", minLength: 1, maxLength: MAX_STOP_LENGTH },
} as const;

/** Sampling and length fields shared by chat and completions. */
const samplingProperties = {
    model: { type: "string", maxLength: 512 },
    max_tokens: { type: ["integer", "null"], minimum: 0, maximum: MAX_TOKENS_LIMIT },
    temperature: { type: ["number", "null"], minimum: 0, maximum: 2 },
    top_p: { type: ["number", "null"], minimum: 0, maximum: 1 },
    // llama-server's extensions, which many clients send.
    top_k: { type: "integer", minimum: 0, maximum: 1 << 24 },
    min_p: { type: "number", minimum: 0, maximum: 1 },
    repeat_penalty: { type: "number", exclusiveMinimum: 0, maximum: 100 },
    seed: { type: ["integer", "null"], minimum: -(2 ** 53), maximum: 2 ** 53 },
    stop,
    n: { type: ["integer", "null"], minimum: 1, maximum: 128 },
    stream: { type: ["boolean", "null"] },
    stream_options: {
        type: ["object", "null"],
        additionalProperties: false,
        properties: { include_usage: { type: "boolean" }, include_obfuscation: { type: "boolean" } },
    },
    presence_penalty: { type: ["number", "null"], minimum: -2, maximum: 2 },
    frequency_penalty: { type: ["number", "null"], minimum: -2, maximum: 2 },
    logit_bias: {
        type: ["object", "null"],
        maxProperties: 1024,
        propertyNames: { pattern: "^[0-9]{1,9}$" },
        additionalProperties: { type: "number", minimum: -100, maximum: 100 },
    },
    user: { type: "string", maxLength: 1024 },
    // Accepted for compatibility; they change nothing here.
    store: { type: ["boolean", "null"] },
    metadata: { type: ["object", "null"], maxProperties: 16, additionalProperties: { type: "string", maxLength: 512 } },
    service_tier: { type: ["string", "null"], maxLength: 64 },
} as const;

const textPart = {
    type: "object",
    required: ["type"],
    properties: {
        type: { type: "string", maxLength: 64 },
        text: { type: "string" },
    },
} as const;

const toolCall = {
    type: "object",
    required: ["id", "type", "function"],
    additionalProperties: false,
    properties: {
        id: { type: "string", maxLength: 256 },
        type: { const: "function" },
        function: {
            type: "object",
            required: ["name", "arguments"],
            additionalProperties: false,
            properties: { name: { type: "string", maxLength: 256 }, arguments: { type: "string" } },
        },
    },
} as const;

const message = {
    type: "object",
    required: ["role"],
    additionalProperties: false,
    properties: {
        role: { enum: ["system", "developer", "user", "assistant", "tool"] },
        content: { type: ["string", "array", "null"], maxItems: 256, items: textPart },
        name: { type: "string", maxLength: 256 },
        tool_calls: { type: "array", maxItems: 128, items: toolCall },
        tool_call_id: { type: "string", maxLength: 256 },
        // Some clients echo these back from earlier responses.
        refusal: { type: ["string", "null"] },
        reasoning_content: { type: ["string", "null"] },
    },
} as const;

const tool = {
    type: "object",
    required: ["type", "function"],
    additionalProperties: false,
    properties: {
        type: { const: "function" },
        function: {
            type: "object",
            required: ["name"],
            additionalProperties: false,
            properties: {
                name: { type: "string", minLength: 1, maxLength: 64, pattern: "^[a-zA-Z0-9_-]+$" },
                description: { type: "string", maxLength: 16384 },
                parameters: { type: "object" },
                strict: { type: ["boolean", "null"] },
            },
        },
    },
} as const;

const responseFormat = {
    type: "object",
    required: ["type"],
    additionalProperties: false,
    properties: {
        type: { enum: ["text", "json_object", "json_schema"] },
        json_schema: {
            type: "object",
            required: ["name"],
            additionalProperties: false,
            properties: {
                name: { type: "string", minLength: 1, maxLength: 64 },
                description: { type: "string", maxLength: 16384 },
                schema: { type: ["object", "boolean"] },
                strict: { type: ["boolean", "null"] },
            },
        },
        // llama-server's spelling: { type: "json_object", schema }.
        schema: { type: ["object", "boolean"] },
    },
} as const;

export const chatCompletionBody = {
    type: "object",
    required: ["messages"],
    additionalProperties: false,
    properties: {
        ...samplingProperties,
        messages: { type: "array", minItems: 1, maxItems: 4096, items: message },
        max_completion_tokens: { type: ["integer", "null"], minimum: 0, maximum: MAX_TOKENS_LIMIT },
        logprobs: { type: ["boolean", "null"] },
        top_logprobs: { type: ["integer", "null"], minimum: 0, maximum: 20 },
        response_format: responseFormat,
        tools: { type: "array", maxItems: 128, items: tool },
        tool_choice: {
            anyOf: [
                { enum: ["none", "auto", "required"] },
                {
                    type: "object",
                    required: ["type", "function"],
                    properties: { type: { const: "function" }, function: { type: "object", required: ["name"], properties: { name: { type: "string" } } } },
                },
            ],
        },
        parallel_tool_calls: { type: ["boolean", "null"] },
        reasoning_effort: { type: ["string", "null"], maxLength: 32 },
    },
} as const;

export const completionBody = {
    type: "object",
    required: ["prompt"],
    additionalProperties: false,
    properties: {
        ...samplingProperties,
        // A string, or token ids; a batch of several prompts is refused in the handler.
        prompt: {
            type: ["string", "array"],
            maxItems: 1 << 20,
            items: { type: ["string", "integer", "array"], minimum: 0, maximum: 2 ** 31 - 1, items: { type: "integer", minimum: 0, maximum: 2 ** 31 - 1 } },
        },
        logprobs: { type: ["integer", "null"], minimum: 0, maximum: 5 },
        echo: { type: ["boolean", "null"] },
        suffix: { type: ["string", "null"] },
        best_of: { type: ["integer", "null"], minimum: 1, maximum: 1 },
    },
} as const;

export const embeddingBody = {
    type: "object",
    required: ["input"],
    additionalProperties: false,
    properties: {
        model: { type: "string", maxLength: 512 },
        input: {
            type: ["string", "array"],
            maxItems: 2048,
            items: { type: ["string", "integer", "array"], minimum: 0, maximum: 2 ** 31 - 1, items: { type: "integer", minimum: 0, maximum: 2 ** 31 - 1 } },
        },
        encoding_format: { enum: ["float", "base64"] },
        dimensions: { type: "integer", minimum: 1, maximum: 1 << 16 },
        user: { type: "string", maxLength: 1024 },
    },
} as const;
