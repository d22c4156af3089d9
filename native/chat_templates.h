// NativeChatTemplates: a model's chat templates, compiled by llama.cpp's common/chat (its own
// Jinja engine), and what goes with them: rendering OpenAI-shaped messages (with the grammar,
// lazy-grammar triggers and parser the format needs for tool calls), parsing a reply back
// into content, reasoning and tool calls, and tokenizing a rendered prompt so that message
// text never turns into control tokens. Everything that can take a millisecond runs on a worker.
#pragma once

#include "common.h"

#include "llama.h"

#include <memory>
#include <string>
#include <vector>

struct common_chat_templates;

namespace llamafuse {

// What every worker of one NativeChatTemplates shares; workers hold it by shared_ptr so a
// dispose() while one runs does not free it under them.
struct ChatTemplatesState {
    std::unique_ptr<common_chat_templates, void (*)(common_chat_templates *)> tmpls{nullptr, nullptr};
    bool use_jinja = true;        // false: a llama.cpp built-in template name (no Jinja)
    const llama_vocab * vocab = nullptr;
    // Texts of the vocabulary's control tokens, longest first (as llama.cpp's own
    // special-token partition orders them): only template text may produce these.
    std::vector<std::pair<std::string, llama_token>> control_tokens;
};

class NativeChatTemplates : public Napi::ObjectWrap<NativeChatTemplates> {
public:
    static Napi::Function define(Napi::Env env);
    NativeChatTemplates(const Napi::CallbackInfo & info);

    std::shared_ptr<ChatTemplatesState> state;

private:
    static Napi::Value Create(const Napi::CallbackInfo & info);
    Napi::Value Apply(const Napi::CallbackInfo & info);
    Napi::Value Parse(const Napi::CallbackInfo & info);
    Napi::Value ParseSync(const Napi::CallbackInfo & info);
    Napi::Value TokenizeSegmentsSync(const Napi::CallbackInfo & info);
    Napi::Value TokenizeSegments(const Napi::CallbackInfo & info);
    Napi::Value Source(const Napi::CallbackInfo & info);
    Napi::Value Caps(const Napi::CallbackInfo & info);
    Napi::Value ControlTokenTexts(const Napi::CallbackInfo & info);
    Napi::Value Dispose(const Napi::CallbackInfo & info);
};

// common/'s own log (separate from llama.cpp's): silent unless LLAMAFUSE_LOG is set, since a
// library does not print; its errors reach the caller as exceptions.
void chat_log_install();

// llama.cpp's built-in (non-Jinja) template names.
Napi::Value chat_builtin_templates(const Napi::CallbackInfo & info);

// llama.cpp's common/json-schema-to-grammar: a JSON schema (as JSON text) to GBNF.
Napi::Value json_schema_to_gbnf(const Napi::CallbackInfo & info);

} // namespace llamafuse
