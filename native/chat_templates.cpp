#include "chat_templates.h"

#include "abort_guard.h"
#include "model.h"
#include "tokenize.h"

#include "chat.h" // llama.cpp's common/chat.h
#include "json-schema-to-grammar.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>

using json = common_json;

// From common/log.h, declared here: "log.h" in this folder is the addon's own log.
void common_log_set_verbosity_thold(int verbosity);

namespace llamafuse {

// ---- helpers -------------------------------------------------------------------------------------

static json parse_json_arg(const std::string & text, const char * what) {
    try {
        return json::parse(text);
    } catch (const std::exception & e) {
        throw CodedError("ERR_INVALID_OPTION", std::string(what) + " is not valid JSON: " + e.what());
    }
}

static const char * trigger_type_name(common_grammar_trigger_type t) {
    switch (t) {
        case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN: return "token";
        case COMMON_GRAMMAR_TRIGGER_TYPE_WORD: return "word";
        case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN: return "pattern";
        case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL: return "patternFull";
    }
    return "unknown";
}

// The vocabulary's control (and unknown) tokens: exactly the special tokens llama.cpp's
// tokenizer matches only when asked to parse special text.
static std::vector<std::pair<std::string, llama_token>> control_tokens_of(const llama_vocab * vocab) {
    std::vector<std::pair<std::string, llama_token>> out;
    const int32_t n = llama_vocab_n_tokens(vocab);
    for (llama_token id = 0; id < n; ++id) {
        if (!(llama_vocab_get_attr(vocab, id) & (LLAMA_TOKEN_ATTR_CONTROL | LLAMA_TOKEN_ATTR_UNKNOWN))) continue;
        const char * text = llama_vocab_get_text(vocab, id);
        if (text && *text) out.emplace_back(text, id);
    }
    std::stable_sort(out.begin(), out.end(), [](const auto & a, const auto & b) { return a.first.size() > b.first.size(); });
    return out;
}

// A special token's text ("" when the vocabulary has none), as templates see bos_token/eos_token.
static std::string special_text(const llama_vocab * vocab, llama_token t) {
    if (t == LLAMA_TOKEN_NULL) return "";
    char buf[256];
    int32_t n = llama_token_to_piece(vocab, t, buf, sizeof buf, 0, true);
    return n > 0 ? std::string(buf, n) : std::string();
}

// ---- create ---------------------------------------------------------------------------------------

class ChatTemplatesCreateWorker : public PromiseWorker {
public:
    ChatTemplatesCreateWorker(const Napi::CallbackInfo & info, NativeModel * m)
        : PromiseWorker(info.Env(), info[0].As<Napi::Object>()), m_(m) {
        Napi::Object o = info[1].As<Napi::Object>();
        source_ = get_str(o, "source");
        builtin_ = get_bool(o, "builtin");
    }

protected:
    void run() override {
        if (m_->disposed()) throw CodedError("ERR_DISPOSED", "the model is disposed");
        auto st = std::make_shared<ChatTemplatesState>();
        st->vocab = m_->vocab();
        st->use_jinja = !builtin_;
        AbortGuard guard;
        try {
            // A built-in name is kept as the template "source"; llama.cpp's non-Jinja path
            // renders by that name. Otherwise the source is Jinja and is compiled here.
            // No model is passed: with one, llama.cpp strips a leading BOS from the rendering
            // (to add it back as a token). Rendered text keeps it here, as Hugging Face's
            // apply_chat_template does, and tokenizeSegments adds BOS only when it is missing.
            st->tmpls = {common_chat_templates_init(nullptr, source_, special_text(st->vocab, llama_vocab_bos(st->vocab)),
                                                    special_text(st->vocab, llama_vocab_eos(st->vocab))).release(),
                         common_chat_templates_free};
        } catch (const CodedError &) {
            throw;
        } catch (const std::exception & e) {
            throw CodedError("ERR_INVALID_TEMPLATE", std::string("the chat template does not compile: ") + e.what());
        }
        st->control_tokens = control_tokens_of(st->vocab);
        state_ = std::move(st);
    }

    Napi::Value result(Napi::Env env) override {
        Napi::Object obj = addon_data(env).construct("NativeChatTemplates");
        NativeChatTemplates::Unwrap(obj)->state = std::move(state_);
        return obj;
    }

private:
    NativeModel * m_;
    std::string source_;
    bool builtin_ = false;
    std::shared_ptr<ChatTemplatesState> state_;
};

// ---- apply ----------------------------------------------------------------------------------------

// Renders OpenAI-shaped messages. The request is one JSON object (the shape of llama-server's
// chat request, resolved and validated by src/chat/): messages, tools, toolChoice,
// addGenerationPrompt, jsonSchema, parallelToolCalls, enableThinking, kwargs, nowMs.
class ChatApplyWorker : public PromiseWorker {
public:
    ChatApplyWorker(Napi::Env env, Napi::Object owner, std::shared_ptr<ChatTemplatesState> st, std::string request)
        : PromiseWorker(env, owner), st_(std::move(st)), request_(std::move(request)) {}

protected:
    void run() override {
        json req = parse_json_arg(request_, "the chat request");
        common_chat_templates_inputs in;
        try {
            in.messages = common_chat_msgs_parse_oaicompat(req.at("messages"));
            if (req.contains("tools") && !req.at("tools").is_null()) in.tools = common_chat_tools_parse_oaicompat(req.at("tools"));
        } catch (const std::exception & e) {
            throw CodedError("ERR_INVALID_OPTION", e.what());
        }
        in.tool_choice = common_chat_tool_choice_parse_oaicompat(req.value("toolChoice", std::string("auto")));
        in.add_generation_prompt = req.value("addGenerationPrompt", true);
        in.parallel_tool_calls = req.value("parallelToolCalls", false);
        in.enable_thinking = req.value("enableThinking", true);
        in.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
        in.use_jinja = st_->use_jinja;
        if (req.contains("jsonSchema") && !req.at("jsonSchema").is_null()) in.json_schema = req.at("jsonSchema").dump();
        if (req.contains("kwargs")) {
            for (const auto & [k, v] : req.at("kwargs").items()) in.chat_template_kwargs[k] = v.dump();
        }
        if (req.contains("nowMs")) {
            in.now = std::chrono::system_clock::time_point(std::chrono::milliseconds(req.at("nowMs").get<int64_t>()));
        }
        AbortGuard guard;
        common_chat_params p;
        try {
            p = common_chat_templates_apply(st_->tmpls.get(), in);
        } catch (const CodedError &) {
            throw;
        } catch (const std::exception & e) {
            // raise_exception() in a template, an unsupported construct, a bad message shape.
            throw CodedError("ERR_TEMPLATE_RENDER", std::string("the chat template failed to render: ") + e.what());
        }
        json triggers = json::array();
        for (const auto & t : p.grammar_triggers) {
            triggers.push_back({{"type", trigger_type_name(t.type)}, {"value", t.value}, {"token", (int32_t) t.token}});
        }
        json out = json::object();
        out["prompt"] = p.prompt;
        out["format"] = (int) p.format;
        out["formatName"] = std::string(common_chat_format_name(p.format));
        out["grammar"] = p.grammar;
        out["grammarLazy"] = p.grammar_lazy;
        out["grammarTriggers"] = triggers;
        out["preservedTokens"] = p.preserved_tokens;
        out["additionalStops"] = p.additional_stops;
        out["generationPrompt"] = p.generation_prompt;
        out["parser"] = p.parser;
        out["supportsThinking"] = p.supports_thinking;
        out["thinkingStartTag"] = p.thinking_start_tag;
        out["thinkingEndTags"] = p.thinking_end_tags;
        result_ = out.dump_safe();
    }

    Napi::Value result(Napi::Env env) override { return Napi::String::New(env, result_); }

private:
    std::shared_ptr<ChatTemplatesState> st_;
    std::string request_;
    std::string result_;
};

// ---- parse ----------------------------------------------------------------------------------------

// A reply's parser: the format's parameters and its PEG arena, loaded from the JSON that apply
// returned. Loading is most of a parse (with four tools the arena is ~15 KB of JSON and takes
// ~1.8 ms, the parse of a short reply microseconds), and a streamed reply is parsed after every
// token with the same parameters, so the last few loaded are kept, by their exact text.
struct LoadedReplyParser {
    std::mutex mu; // parses on the main thread and on workers may share one
    common_chat_parser_params pp;
};

static std::shared_ptr<LoadedReplyParser> load_reply_parser(const std::string & params) {
    // Never destroyed: a worker thread may still be parsing while the process exits and
    // static destructors run.
    static std::mutex & mu = *new std::mutex();
    static auto & recent = *new std::list<std::pair<std::string, std::shared_ptr<LoadedReplyParser>>>(); // newest first
    constexpr size_t KEEP = 8;
    {
        std::lock_guard<std::mutex> lock(mu);
        for (auto it = recent.begin(); it != recent.end(); ++it) {
            if (it->first == params) {
                recent.splice(recent.begin(), recent, it);
                return recent.front().second;
            }
        }
    }
    json pj = parse_json_arg(params, "the parser parameters");
    auto loaded = std::make_shared<LoadedReplyParser>();
    common_chat_parser_params & pp = loaded->pp;
    const int format = pj.value("format", 0);
    if (format < 0 || format >= COMMON_CHAT_FORMAT_COUNT) throw CodedError("ERR_INVALID_OPTION", "unknown chat format");
    pp.format = (common_chat_format) format;
    pp.reasoning_format = pj.value("parseReasoning", true) ? COMMON_REASONING_FORMAT_DEEPSEEK : COMMON_REASONING_FORMAT_NONE;
    pp.generation_prompt = pj.value("generationPrompt", std::string());
    pp.parse_tool_calls = pj.value("parseToolCalls", true);
    const std::string parser = pj.value("parser", std::string());
    if (!parser.empty()) {
        AbortGuard guard;
        try {
            pp.parser.load(parser);
        } catch (const std::exception & e) {
            throw CodedError("ERR_CHAT_PARSE", std::string("the reply does not parse in the template's format: ") + e.what());
        }
    }
    std::lock_guard<std::mutex> lock(mu);
    recent.emplace_front(params, loaded);
    if (recent.size() > KEEP) recent.pop_back();
    return loaded;
}

// Parses model output into { content, reasoning, toolCalls } (JSON) with the format's own
// parser (the PEG arena that apply returned). Throws CodedError.
static std::string parse_reply(const std::string & text, bool partial, const std::string & params) {
    std::shared_ptr<LoadedReplyParser> loaded = load_reply_parser(params);
    std::lock_guard<std::mutex> lock(loaded->mu);
    AbortGuard guard;
    try {
        common_chat_msg msg = common_chat_parse(text, partial, loaded->pp);
        json out = json::object();
        out["content"] = msg.content;
        out["reasoning"] = msg.reasoning_content;
        json calls = json::array();
        for (const auto & c : msg.tool_calls) calls.push_back({{"id", c.id}, {"name", c.name}, {"arguments", c.arguments}});
        out["toolCalls"] = calls;
        return out.dump_safe();
    } catch (const CodedError &) {
        throw;
    } catch (const std::exception & e) {
        throw CodedError("ERR_CHAT_PARSE", std::string("the reply does not parse in the template's format: ") + e.what());
    }
}

class ChatParseWorker : public PromiseWorker {
public:
    ChatParseWorker(Napi::Env env, Napi::Object owner, std::string text, bool partial, std::string params)
        : PromiseWorker(env, owner), text_(std::move(text)), partial_(partial), params_(std::move(params)) {}

protected:
    void run() override { result_ = parse_reply(text_, partial_, params_); }

    Napi::Value result(Napi::Env env) override { return Napi::String::New(env, result_); }

private:
    std::string text_;
    bool partial_;
    std::string params_;
    std::string result_;
};

// ---- tokenize -------------------------------------------------------------------------------------

// Tokenizes a rendered prompt given as segments: template text, where control-token text
// becomes control tokens, and message text, where it never does. Control tokens are cut out
// of template segments; every maximal run of remaining text (template and message text
// together) is tokenized as one piece without special parsing. That is exactly how llama.cpp
// tokenizes a whole string with special parsing on (partition on special tokens, then each
// raw fragment on its own), so a prompt whose messages hold no control-token text gets the
// same tokens as whole-string tokenization, and one whose messages do gets them as plain text.
static void append_plain(const llama_vocab * vocab, const std::string & text, std::vector<llama_token> & out) {
    std::vector<llama_token> buf(text.size() + 8);
    AbortGuard guard;
    int32_t n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), buf.data(), (int32_t) buf.size(), false, false);
    if (n < 0) {
        buf.resize(-n);
        n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), buf.data(), (int32_t) buf.size(), false, false);
    }
    if (n < 0) throw CodedError("ERR_NATIVE", "tokenization failed");
    out.insert(out.end(), buf.begin(), buf.begin() + n);
}

static std::vector<llama_token> tokenize_segments(const ChatTemplatesState & st, const std::vector<std::string> & segs,
                                                  const std::vector<bool> & plain, bool add_special) {
    const llama_vocab * vocab = st.vocab;
    std::vector<llama_token> out;
    // first byte -> control tokens starting with it, longest first
    std::unordered_map<unsigned char, std::vector<const std::pair<std::string, llama_token> *>> by_first;
    for (const auto & ct : st.control_tokens) by_first[(unsigned char) ct.first[0]].push_back(&ct);

    std::string run_text;
    auto flush = [&]() {
        if (run_text.empty()) return;
        append_plain(vocab, run_text, out);
        run_text.clear();
    };
    for (size_t s = 0; s < segs.size(); ++s) {
        const std::string & seg = segs[s];
        if (plain[s]) {
            run_text += seg;
            continue;
        }
        size_t i = 0;
        while (i < seg.size()) {
            const std::pair<std::string, llama_token> * hit = nullptr;
            auto it = by_first.find((unsigned char) seg[i]);
            if (it != by_first.end()) {
                for (const auto * ct : it->second) {
                    if (seg.compare(i, ct->first.size(), ct->first) == 0) {
                        hit = ct;
                        break;
                    }
                }
            }
            if (!hit) {
                run_text += seg[i++];
                continue;
            }
            flush();
            out.push_back(hit->second);
            i += hit->first.size();
        }
    }
    flush();
    // BOS/EOS as the vocabulary asks, unless the template already wrote them.
    const llama_token bos = llama_vocab_bos(vocab), eos = llama_vocab_eos(vocab);
    if (add_special && llama_vocab_get_add_bos(vocab) && bos != LLAMA_TOKEN_NULL && (out.empty() || out.front() != bos)) {
        out.insert(out.begin(), bos);
    }
    if (add_special && llama_vocab_get_add_eos(vocab) && eos != LLAMA_TOKEN_NULL && (out.empty() || out.back() != eos)) {
        out.push_back(eos);
    }
    return out;
}

static Napi::Int32Array to_int32_array(Napi::Env env, const std::vector<llama_token> & tokens) {
    Napi::Int32Array a = Napi::Int32Array::New(env, tokens.size());
    std::copy(tokens.begin(), tokens.end(), a.Data());
    return a;
}

class ChatTokenizeWorker : public PromiseWorker {
public:
    ChatTokenizeWorker(Napi::Env env, Napi::Object owner, std::shared_ptr<ChatTemplatesState> st,
                       std::vector<std::string> segs, std::vector<bool> plain, bool add_special, NativeModel * m)
        : PromiseWorker(env, owner), st_(std::move(st)), segs_(std::move(segs)), plain_(std::move(plain)),
          add_special_(add_special), m_(m) {}

protected:
    void run() override {
        if (m_->disposed()) throw CodedError("ERR_DISPOSED", "the model is disposed");
        out_ = tokenize_segments(*st_, segs_, plain_, add_special_);
    }

    Napi::Value result(Napi::Env env) override { return to_int32_array(env, out_); }

private:
    std::shared_ptr<ChatTemplatesState> st_;
    std::vector<std::string> segs_;
    std::vector<bool> plain_;
    bool add_special_;
    NativeModel * m_;
    std::vector<llama_token> out_;
};

// ---- the class ------------------------------------------------------------------------------------

Napi::Function NativeChatTemplates::define(Napi::Env env) {
    Napi::Function fn = DefineClass(env, "NativeChatTemplates", {
        StaticMethod("create", &NativeChatTemplates::Create),
        InstanceMethod("apply", &NativeChatTemplates::Apply),
        InstanceMethod("parse", &NativeChatTemplates::Parse),
        InstanceMethod("parseSync", &NativeChatTemplates::ParseSync),
        InstanceMethod("tokenizeSegments", &NativeChatTemplates::TokenizeSegments),
        InstanceMethod("tokenizeSegmentsSync", &NativeChatTemplates::TokenizeSegmentsSync),
        InstanceMethod("source", &NativeChatTemplates::Source),
        InstanceMethod("caps", &NativeChatTemplates::Caps),
        InstanceMethod("controlTokenTexts", &NativeChatTemplates::ControlTokenTexts),
        InstanceMethod("dispose", &NativeChatTemplates::Dispose),
    });
    addon_data(env).set_constructor("NativeChatTemplates", fn);
    return fn;
}

NativeChatTemplates::NativeChatTemplates(const Napi::CallbackInfo & info) : Napi::ObjectWrap<NativeChatTemplates>(info) {}

// create(model, { source, builtin }): source "" means the model's own template.
Napi::Value NativeChatTemplates::Create(const Napi::CallbackInfo & info) {
    NativeModel * m = NativeModel::Unwrap(info[0].As<Napi::Object>());
    if (m->disposed()) return rejected(info.Env(), "ERR_DISPOSED", "the model is disposed");
    return (new ChatTemplatesCreateWorker(info, m))->start();
}

Napi::Value NativeChatTemplates::Apply(const Napi::CallbackInfo & info) {
    if (!state) return rejected(info.Env(), "ERR_DISPOSED", "the chat templates are disposed");
    return (new ChatApplyWorker(info.Env(), info.This().As<Napi::Object>(), state, info[0].As<Napi::String>().Utf8Value()))->start();
}

Napi::Value NativeChatTemplates::Parse(const Napi::CallbackInfo & info) {
    if (!state) return rejected(info.Env(), "ERR_DISPOSED", "the chat templates are disposed");
    return (new ChatParseWorker(info.Env(), info.This().As<Napi::Object>(), info[0].As<Napi::String>().Utf8Value(),
                                info[1].As<Napi::Boolean>().Value(), info[2].As<Napi::String>().Utf8Value()))->start();
}

// parseSync(text, partial, params): the same on the calling thread, for a short reply with a
// small parser (a streamed reply's first tokens), where handing the work to a worker thread
// and back costs more than the parse.
static constexpr size_t kSyncParseMaxTextBytes = 1024;
static constexpr size_t kSyncParseMaxParamsBytes = 16384;

Napi::Value NativeChatTemplates::ParseSync(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!state) throw make_error(env, "ERR_DISPOSED", "the chat templates are disposed");
    const std::string text = info[0].As<Napi::String>().Utf8Value();
    const std::string params = info[2].As<Napi::String>().Utf8Value();
    if (text.size() > kSyncParseMaxTextBytes || params.size() > kSyncParseMaxParamsBytes) {
        throw make_error(env, "ERR_INVALID_OPTION", "parseSync takes replies of at most " + std::to_string(kSyncParseMaxTextBytes) +
                                                        " bytes and parsers of at most " + std::to_string(kSyncParseMaxParamsBytes) + "; use parse()");
    }
    try {
        return Napi::String::New(env, parse_reply(text, info[1].As<Napi::Boolean>().Value(), params));
    } catch (const CodedError & e) {
        throw make_error(env, e.code, e.what());
    }
}

// The segments (info[1]) and their plain flags (info[2]) of a tokenizeSegments call; returns
// their total size in bytes.
static size_t read_segments(const Napi::CallbackInfo & info, std::vector<std::string> & segs, std::vector<bool> & plain) {
    Napi::Array s = info[1].As<Napi::Array>(), p = info[2].As<Napi::Array>();
    segs.resize(s.Length());
    plain.resize(s.Length());
    size_t bytes = 0;
    for (uint32_t i = 0; i < s.Length(); ++i) {
        segs[i] = s.Get(i).As<Napi::String>().Utf8Value();
        plain[i] = p.Get(i).As<Napi::Boolean>().Value();
        bytes += segs[i].size();
    }
    return bytes;
}

// tokenizeSegments(model, segments: string[], plain: boolean[], addSpecial)
Napi::Value NativeChatTemplates::TokenizeSegments(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!state) return rejected(env, "ERR_DISPOSED", "the chat templates are disposed");
    NativeModel * m = NativeModel::Unwrap(info[0].As<Napi::Object>());
    if (m->disposed()) return rejected(env, "ERR_DISPOSED", "the model is disposed");
    std::vector<std::string> s;
    std::vector<bool> p;
    read_segments(info, s, p);
    return (new ChatTokenizeWorker(env, info[0].As<Napi::Object>(), state, std::move(s), std::move(p), info[3].As<Napi::Boolean>().Value(), m))->start();
}

// tokenizeSegmentsSync(model, segments, plain, addSpecial): the same on the calling thread, for
// at most kSyncTokenizeMaxBytes in all: the part of a chat prompt that changed since the last
// turn is usually this short, and a worker round trip would cost more than tokenizing it.
Napi::Value NativeChatTemplates::TokenizeSegmentsSync(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!state) throw make_error(env, "ERR_DISPOSED", "the chat templates are disposed");
    NativeModel * m = NativeModel::Unwrap(info[0].As<Napi::Object>());
    if (m->disposed()) throw make_error(env, "ERR_DISPOSED", "the model is disposed");
    std::vector<std::string> s;
    std::vector<bool> p;
    if (read_segments(info, s, p) > kSyncTokenizeMaxBytes) {
        throw make_error(env, "ERR_INVALID_OPTION", "tokenizeSegmentsSync takes at most " + std::to_string(kSyncTokenizeMaxBytes) + " bytes; use tokenizeSegments()");
    }
    try {
        return to_int32_array(env, tokenize_segments(*state, s, p, info[3].As<Napi::Boolean>().Value()));
    } catch (const CodedError & e) {
        throw make_error(env, e.code, e.what());
    }
}

Napi::Value NativeChatTemplates::Source(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!state) throw make_error(env, "ERR_DISPOSED", "the chat templates are disposed");
    std::string variant = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    return Napi::String::New(env, common_chat_templates_source(state->tmpls.get(), variant));
}

Napi::Value NativeChatTemplates::Caps(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!state) throw make_error(env, "ERR_DISPOSED", "the chat templates are disposed");
    Napi::Object out = Napi::Object::New(env);
    for (const auto & [k, v] : common_chat_templates_get_caps(state->tmpls.get())) out.Set(k, Napi::Boolean::New(env, v));
    return out;
}

Napi::Value NativeChatTemplates::ControlTokenTexts(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!state) throw make_error(env, "ERR_DISPOSED", "the chat templates are disposed");
    Napi::Array out = Napi::Array::New(env, state->control_tokens.size());
    for (size_t i = 0; i < state->control_tokens.size(); ++i) out.Set((uint32_t) i, Napi::String::New(env, state->control_tokens[i].first));
    return out;
}

Napi::Value NativeChatTemplates::Dispose(const Napi::CallbackInfo & info) {
    state.reset(); // workers in flight keep their own reference
    return info.Env().Undefined();
}

void chat_log_install() {
    const char * env = getenv("LLAMAFUSE_LOG");
    if (!env || !*env || std::string(env) == "0") common_log_set_verbosity_thold(-1);
}

Napi::Value chat_builtin_templates(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    std::vector<const char *> names(128);
    int32_t n = llama_chat_builtin_templates(names.data(), names.size());
    if (n > (int32_t) names.size()) {
        names.resize(n);
        n = llama_chat_builtin_templates(names.data(), names.size());
    }
    Napi::Array out = Napi::Array::New(env, n);
    for (int32_t i = 0; i < n; ++i) out.Set((uint32_t) i, Napi::String::New(env, names[i]));
    return out;
}

// ---- JSON schema -> GBNF ------------------------------------------------------------------------------

Napi::Value json_schema_to_gbnf(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    try {
        json schema = json::parse(info[0].As<Napi::String>().Utf8Value());
        return Napi::String::New(env, json_schema_to_grammar(schema));
    } catch (const std::exception & e) {
        throw make_error(env, "ERR_INVALID_OPTION", std::string("the JSON schema cannot be turned into a grammar: ") + e.what());
    }
}

} // namespace llamafuse
