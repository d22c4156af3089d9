#include "grammar_check.h"

#include "common.h"

// llama.cpp's grammar parser (an internal header of the pinned tree, linked in statically):
// parsing with it here means the rules analysed are exactly the ones llama.cpp will run.
#include "llama-grammar.h"  // llama.cpp/src/, on the include path (deps/ or an installed package's vendor/)

#include <algorithm>
#include <map>
#include <unordered_map>
#include <vector>

namespace llamafuse {

[[noreturn]] static void bad_grammar(const std::string & why) { throw CodedError("ERR_INVALID_GRAMMAR", "invalid GBNF grammar: " + why); }

// ---- 1. nesting depth, on the text (before anything recursive runs) ----------------------------
// Also measures nested bounded repetitions: each item's "states" is the product of (max + 1) over
// the bounded repetitions around it; a rule's is the largest of its items'. Rule references are
// followed (cycles count once).

namespace {

struct TextScan {
    const std::string & s;
    size_t i = 0;
    explicit TextScan(const std::string & src) : s(src) {}
    bool at_end() const { return i >= s.size(); }
    char peek(size_t k = 0) const { return i + k < s.size() ? s[i + k] : '\0'; }

    void skip_space() {
        while (!at_end()) {
            char c = s[i];
            if (c == '#') { while (!at_end() && s[i] != '\n' && s[i] != '\r') ++i; }
            else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') ++i;
            else break;
        }
    }
    void skip_quoted(char close) { // after the opening quote or bracket
        while (!at_end() && s[i] != close) i += (s[i] == '\\' && i + 1 < s.size()) ? 2 : 1;
        if (!at_end()) ++i;
    }
    static bool word_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'; }
};

struct RuleText {
    double states = 1;               // of the items directly in the rule (before following refs)
    std::vector<std::pair<std::string, double>> refs; // referenced rule, factor around the reference
};

} // namespace

static std::map<std::string, RuleText> scan_text(const std::string & gbnf) {
    TextScan t(gbnf);
    std::map<std::string, RuleText> rules;
    RuleText * cur = nullptr;
    // Per open group: the repetition factor applied to the whole group, known only at ")".
    // Items inside record their factor relative to the group; closing multiplies it in.
    struct Group { size_t first_ref; double states; };
    std::vector<Group> groups;
    int depth = 0;
    // The last item: its refs range and its states, for a repetition operator that follows.
    size_t item_ref_begin = 0;
    double item_states = 1;
    bool have_item = false;

    auto apply_factor = [&](double f) {
        if (!cur || !have_item) return;
        for (size_t k = item_ref_begin; k < cur->refs.size(); ++k) cur->refs[k].second *= f;
        item_states *= f;
        if (groups.empty()) cur->states = std::max(cur->states, item_states);
        else groups.back().states = std::max(groups.back().states, item_states);
    };
    auto item = [&](size_t ref_begin, double states) {
        item_ref_begin = ref_begin;
        item_states = states;
        have_item = true;
        if (!cur) return;
        if (groups.empty()) cur->states = std::max(cur->states, states);
        else groups.back().states = std::max(groups.back().states, states);
    };

    while (true) {
        t.skip_space();
        if (t.at_end()) break;
        const char c = t.peek();
        if (TextScan::word_char(c)) {
            size_t b = t.i;
            while (!t.at_end() && TextScan::word_char(t.peek())) ++t.i;
            std::string name = gbnf.substr(b, t.i - b);
            size_t save = t.i;
            t.skip_space();
            if (depth == 0 && t.peek() == ':' && t.peek(1) == ':' && t.peek(2) == '=') {
                t.i += 3;
                cur = &rules[name];
                have_item = false;
                continue;
            }
            t.i = save;
            if (cur) {
                cur->refs.emplace_back(name, 1.0);
                item(cur->refs.size() - 1, 1);
            }
        } else if (c == '"') { ++t.i; t.skip_quoted('"'); item(cur ? cur->refs.size() : 0, 1); }
        else if (c == '[') { ++t.i; t.skip_quoted(']'); item(cur ? cur->refs.size() : 0, 1); }
        else if (c == '<') { ++t.i; t.skip_quoted('>'); item(cur ? cur->refs.size() : 0, 1); }
        else if (c == '!') { ++t.i; }
        else if (c == '.') { ++t.i; item(cur ? cur->refs.size() : 0, 1); }
        else if (c == '(') {
            ++t.i;
            if (++depth > kMaxGrammarDepth) bad_grammar("groups are nested more than " + std::to_string(kMaxGrammarDepth) + " deep");
            groups.push_back({cur ? cur->refs.size() : 0, 1});
            have_item = false;
        } else if (c == ')') {
            ++t.i;
            if (depth > 0) --depth;
            if (!groups.empty()) {
                Group g = groups.back();
                groups.pop_back();
                item(g.first_ref, g.states);
            }
        } else if (c == '|') { ++t.i; have_item = false; }
        else if (c == '*' || c == '+') { ++t.i; apply_factor(1); } // tail recursion: no new states
        else if (c == '?') { ++t.i; apply_factor(2); }
        else if (c == '{') {
            ++t.i;
            size_t close = gbnf.find('}', t.i);
            std::string body = gbnf.substr(t.i, close == std::string::npos ? std::string::npos : close - t.i);
            t.i = close == std::string::npos ? gbnf.size() : close + 1;
            size_t comma = body.find(',');
            std::string max_s = comma == std::string::npos ? body : body.substr(comma + 1);
            std::string min_s = comma == std::string::npos ? body : body.substr(0, comma);
            double mx = strtod(max_s.c_str(), nullptr), mn = strtod(min_s.c_str(), nullptr);
            bool unbounded = comma != std::string::npos && max_s.find_first_not_of(" \t") == std::string::npos;
            apply_factor(unbounded ? 1 : std::max(1.0, mx - mn + 1));
        } else {
            ++t.i; // anything else is llama.cpp's parser's to reject
        }
    }
    return rules;
}

static double rule_states(const std::map<std::string, RuleText> & rules, const std::string & name,
                          std::map<std::string, double> & memo, std::vector<std::string> & stack) {
    auto m = memo.find(name);
    if (m != memo.end()) return m->second;
    auto r = rules.find(name);
    if (r == rules.end() || std::find(stack.begin(), stack.end(), name) != stack.end()) return 1; // undefined, or a cycle
    stack.push_back(name);
    double best = r->second.states;
    for (const auto & [ref, factor] : r->second.refs) {
        best = std::max(best, factor * rule_states(rules, ref, memo, stack));
        if (best > 1e12) break;
    }
    stack.pop_back();
    return memo[name] = best;
}

// ---- 2. parse with llama.cpp's parser, keeping its error message --------------------------------

static const char * skip_space(const char * pos) {
    while (*pos == ' ' || *pos == '\t' || *pos == '#' || *pos == '\r' || *pos == '\n') {
        if (*pos == '#') while (*pos && *pos != '\r' && *pos != '\n') pos++;
        else pos++;
    }
    return pos;
}

// llama_grammar_parser::parse() with its catch replaced: the same steps, but the error detail
// goes into the exception instead of onto stderr (a library does not print).
static void parse_rules(llama_grammar_parser & p, const std::string & gbnf) {
    try {
        const char * pos = skip_space(gbnf.c_str());
        while (*pos) pos = p.parse_rule(pos);
        for (const auto & rule : p.rules) {
            if (rule.empty()) throw std::runtime_error("a rule is referenced but never defined");
            for (const auto & e : rule) {
                if (e.type == LLAMA_GRETYPE_RULE_REF && (e.value >= p.rules.size() || p.rules[e.value].empty())) {
                    for (const auto & kv : p.symbol_ids)
                        if (kv.second == e.value) throw std::runtime_error("undefined rule '" + kv.first + "'");
                    throw std::runtime_error("undefined rule");
                }
            }
        }
    } catch (const std::exception & e) {
        std::string why = e.what();
        if (why.size() > 200) why = why.substr(0, 200) + "...";
        bad_grammar(why);
    }
}

// ---- 3. left recursion through nullable prefixes ------------------------------------------------

// Nullable rules, by fixpoint: a rule is nullable when one alternate is all nullable refs.
static std::vector<bool> nullable_rules(const llama_grammar_rules & rules) {
    const size_t n = rules.size();
    std::vector<bool> nullable(n, false);
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t r = 0; r < n; ++r) {
            if (nullable[r]) continue;
            bool alt_ok = true;
            for (const auto & e : rules[r]) {
                if (e.type == LLAMA_GRETYPE_END || e.type == LLAMA_GRETYPE_ALT) {
                    if (alt_ok) { nullable[r] = changed = true; break; }
                    alt_ok = true;
                } else if (!(e.type == LLAMA_GRETYPE_RULE_REF && e.value < n && nullable[e.value])) {
                    alt_ok = false;
                }
            }
        }
    }
    return nullable;
}

static void check_left_recursion(const llama_grammar_parser & p, const std::vector<bool> & nullable) {
    const llama_grammar_rules & rules = p.rules;
    const size_t n = rules.size();
    // Edges r -> s: s can be the first thing r matches (everything before s in the alternate
    // can match nothing). tail: s ends its alternate. llama.cpp expands rules on a stack and
    // skips stacks it has seen, so a cycle of tail edges (r ::= x? r | ..., which its own
    // repetitions `(x? y)+` become, as in common/chat's tool-call grammars) returns to a stack
    // it has seen and ends. A cycle through an edge with something after it pushes that
    // something each time round and grows the stack for ever: that is the hang to refuse.
    struct Edge { uint32_t to; bool tail; };
    std::vector<std::vector<Edge>> first(n);
    for (size_t r = 0; r < n; ++r) {
        const auto & alts = rules[r];
        bool prefix_nullable = true;
        for (size_t i = 0; i < alts.size(); ++i) {
            const auto & e = alts[i];
            if (e.type == LLAMA_GRETYPE_END || e.type == LLAMA_GRETYPE_ALT) { prefix_nullable = true; continue; }
            if (!prefix_nullable) continue;
            if (e.type == LLAMA_GRETYPE_RULE_REF && e.value < n) {
                const bool tail = i + 1 < alts.size() && (alts[i + 1].type == LLAMA_GRETYPE_END || alts[i + 1].type == LLAMA_GRETYPE_ALT);
                first[r].push_back({e.value, tail});
                prefix_nullable = nullable[e.value];
            } else {
                prefix_nullable = false;
            }
        }
    }
    // Strongly connected components (Kosaraju, iterative: a recursive walk could be as deep as
    // the rule count); a non-tail edge inside one component lies on a growing cycle.
    std::vector<std::vector<uint32_t>> back(n);
    for (size_t r = 0; r < n; ++r) for (const Edge & e : first[r]) back[e.to].push_back((uint32_t) r);
    std::vector<uint32_t> order;
    std::vector<uint8_t> seen(n, 0);
    for (size_t start = 0; start < n; ++start) {
        if (seen[start]) continue;
        std::vector<std::pair<uint32_t, size_t>> st{{(uint32_t) start, 0}};
        seen[start] = 1;
        while (!st.empty()) {
            auto & [r, k] = st.back();
            if (k < first[r].size()) {
                uint32_t s = first[r][k++].to;
                if (!seen[s]) { seen[s] = 1; st.push_back({s, 0}); }
            } else {
                order.push_back(r);
                st.pop_back();
            }
        }
    }
    std::vector<int32_t> comp(n, -1);
    int32_t n_comp = 0;
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        if (comp[*it] >= 0) continue;
        std::vector<uint32_t> st{*it};
        comp[*it] = n_comp;
        while (!st.empty()) {
            uint32_t r = st.back();
            st.pop_back();
            for (uint32_t s : back[r]) if (comp[s] < 0) { comp[s] = n_comp; st.push_back(s); }
        }
        ++n_comp;
    }
    for (size_t r = 0; r < n; ++r) {
        for (const Edge & e : first[r]) {
            if (e.tail || comp[e.to] != comp[r]) continue;
            std::string name = "#" + std::to_string(e.to);
            for (const auto & kv : p.symbol_ids) if (kv.second == e.to) name = kv.first;
            bad_grammar("left recursion through rule '" + name + "' (possibly behind rules that can match nothing); llama.cpp cannot run a left-recursive grammar");
        }
    }
}

// ---- 4. stacks one step fans out into ------------------------------------------------------------
// llama.cpp keeps one stack of rule positions per way the text so far can go on. At creation
// and after every character it expands the rule reference on top of each stack into all of the
// rule's alternates (through rules that can match nothing, into what follows them), and checks
// each new stack against all the others. Two counts, on the parsed rules:
//  - stacks: how many distinct stacks one position expands into. An enum of n strings is n;
//    the build compares them pairwise (16,384 built in 0.8 s here), tokens stay fast because
//    each stack takes different characters (1,000 strings: 19 ms a token on stories260K).
//  - entries: how many of those stacks enter one and the same rule, i.e. share their top and
//    differ only below. Those all take the same characters, and each re-expands into all the
//    others after every character. Rules that each use a nullable rule twice, nested k deep
//    (r1 ::= r0 r0, r2 ::= r1 r1, ...), give 2^k: a token took 0.35 s at 2^8 and 6 s at 2^10,
//    and creating the sampler 11 s at 2^16 (about 45 minutes at 2^20).
// Per position: a reference to rule q enters q once, plus q's own entries, plus (q nullable)
// what the next position enters; a rule sums its alternates. A cycle counts nothing on the way
// round (llama.cpp's seen-set ends it too; growing ones are refused above). Sparse per-rule
// maps, with a work budget: a grammar too large to count within it is let through.

static bool is_alt_end(const llama_grammar_element & e) { return e.type == LLAMA_GRETYPE_END || e.type == LLAMA_GRETYPE_ALT; }

namespace {

struct FanOut {
    double stacks = 0;   // the most distinct stacks one position expands into
    double entries = 0;  // the most of them that enter one rule
    bool counted = true; // false: over the work budget, not counted
};

class FanOutCounter {
public:
    FanOutCounter(const llama_grammar_rules & rules, const std::vector<bool> & nullable)
        : rules_(rules), nullable_(nullable), n_(rules.size()), stacks_(n_, 0), enters_(n_), state_(n_, 0) {}

    FanOut run(uint32_t root) {
        FanOut out;
        // Post-order over the references a rule can start with, iteratively (chains of rules
        // can be long): a rule is counted after the rules it starts with.
        for (uint32_t start = 0; start < n_ && out.counted; ++start) {
            if (state_[start]) continue;
            std::vector<std::pair<uint32_t, std::vector<uint32_t>>> walk;
            walk.push_back({start, leading_refs(start)});
            state_[start] = 1;
            while (!walk.empty()) {
                auto & top = walk.back();
                if (!top.second.empty()) {
                    const uint32_t q = top.second.back();
                    top.second.pop_back();
                    if (state_[q] == 0) {
                        state_[q] = 1;
                        walk.push_back({q, leading_refs(q)}); // `top` is not used after this
                    }
                    continue;
                }
                const uint32_t r = top.first;
                walk.pop_back();
                count_rule(r);
                state_[r] = 2;
                if (work_ > kBudget) { out.counted = false; return out; }
            }
        }
        // The root, which llama.cpp expands at creation (no reference to it is needed).
        if (root < n_ && state_[root] == 2) {
            out.stacks = stacks_[root];
            for (const auto & kv : enters_[root]) out.entries = std::max(out.entries, kv.second);
        }
        // Every position that starts a run of references (the first of an alternate, or the
        // one after a terminal or a non-nullable reference): what the run expands into.
        for (const auto & rule : rules_) {
            bool run_start = true;
            for (size_t i = 0; i < rule.size(); ++i) {
                const auto & e = rule[i];
                if (is_alt_end(e)) { run_start = true; continue; }
                const bool ref = e.type == LLAMA_GRETYPE_RULE_REF && e.value < n_;
                if (run_start) {
                    Map m;
                    const double st = sequence(rule, i, m);
                    out.stacks = std::max(out.stacks, st);
                    for (const auto & kv : m) out.entries = std::max(out.entries, kv.second);
                    if (work_ > kBudget) { out.counted = false; return out; }
                }
                run_start = !(ref && nullable_[e.value]);
            }
        }
        return out;
    }

private:
    using Map = std::unordered_map<uint32_t, double>;
    static constexpr double kCap = 1e18;
    static constexpr size_t kBudget = 20'000'000; // map entries touched

    std::vector<uint32_t> leading_refs(uint32_t r) const {
        std::vector<uint32_t> out;
        bool prefix_nullable = true;
        for (const auto & e : rules_[r]) {
            if (is_alt_end(e)) { prefix_nullable = true; continue; }
            if (!prefix_nullable) continue;
            if (e.type == LLAMA_GRETYPE_RULE_REF && e.value < n_) { out.push_back(e.value); prefix_nullable = nullable_[e.value]; }
            else prefix_nullable = false;
        }
        return out;
    }

    void add(Map & into, uint32_t key, double v) {
        double & x = into[key];
        x = std::min(kCap, x + v);
        ++work_;
    }

    // From position i of `rule` to the end of its alternate: the distinct stacks, and into
    // `m` the rules entered (with how many of those stacks enter each).
    double sequence(const llama_grammar_rule & rule, size_t i, Map & m) {
        double st = 0;
        for (; i < rule.size() && !is_alt_end(rule[i]); ++i) {
            const auto & e = rule[i];
            if (!(e.type == LLAMA_GRETYPE_RULE_REF && e.value < n_)) return std::min(kCap, st + 1); // a terminal: one stack, ends the run
            const uint32_t q = e.value;
            if (state_[q] == 2) {
                st = std::min(kCap, st + stacks_[q]);
                add(m, q, 1);
                for (const auto & kv : enters_[q]) add(m, kv.first, kv.second);
            }
            if (!nullable_[q]) return st;
        }
        return st;
    }

    void count_rule(uint32_t r) {
        const auto & rule = rules_[r];
        double st = 0;
        Map m;
        bool alt_start = true;
        for (size_t i = 0; i < rule.size(); ++i) {
            if (alt_start) st = std::min(kCap, st + sequence(rule, i, m));
            alt_start = is_alt_end(rule[i]);
        }
        stacks_[r] = st;
        enters_[r] = std::move(m);
    }

    const llama_grammar_rules & rules_;
    const std::vector<bool> & nullable_;
    const size_t n_;
    std::vector<double> stacks_;
    std::vector<Map> enters_;
    std::vector<uint8_t> state_; // 0 new, 1 on the walk, 2 counted
    size_t work_ = 0;
};

} // namespace

void grammar_check(const llama_vocab * vocab, const std::string & gbnf, const std::string & root) {
    std::map<std::string, RuleText> text_rules = scan_text(gbnf); // throws on depth first
    std::map<std::string, double> memo;
    std::vector<std::string> stack;
    const double states = rule_states(text_rules, root, memo, stack);
    if (states > kMaxRepetitionStates) {
        bad_grammar("nested bounded repetitions such as (x{0,20}){0,20} multiply into about " + std::to_string((long long) std::min(states, 1e15)) +
                    " parser states (the limit is " + std::to_string((long long) kMaxRepetitionStates) +
                    "), which makes every token slower than the last; nest fewer bounded repetitions or use * and +");
    }
    llama_grammar_parser parser(vocab);
    parse_rules(parser, gbnf);
    if (parser.symbol_ids.find(root) == parser.symbol_ids.end()) bad_grammar("no rule named '" + root + "'");
    const std::vector<bool> nullable = nullable_rules(parser.rules);
    check_left_recursion(parser, nullable);
    const FanOut f = FanOutCounter(parser.rules, nullable).run(parser.symbol_ids.at(root));
    if (f.entries > kMaxGrammarEntries) {
        bad_grammar("the grammar can be in one rule " + std::to_string((long long) std::min(f.entries, 1e15)) +
                    " ways at once (the limit is " + std::to_string((long long) kMaxGrammarEntries) +
                    "; each of them takes the same characters, and llama.cpp's time per character grows with the square of that), "
                    "typically from rules that each use an optional rule more than once, nested deep; make fewer parts optional or use * and +");
    }
    if (f.stacks > kMaxGrammarStacks) {
        bad_grammar("the grammar can be at " + std::to_string((long long) std::min(f.stacks, 1e15)) +
                    " places at once (the limit is " + std::to_string((long long) kMaxGrammarStacks) +
                    "; llama.cpp compares them pairwise at every step); split it, or use fewer alternatives");
    }
}

} // namespace llamafuse
