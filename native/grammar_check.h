// Checks a GBNF grammar before llama.cpp builds a sampler from it, for what llama.cpp's own
// parser and checks let through and then crash or hang on:
//  - nesting depth: the parser recurses once per "(" level; 20,000 levels overflowed the
//    native stack (SIGSEGV). Bounded by kMaxGrammarDepth before anything parses.
//  - left recursion behind a nullable prefix (root ::= x root "a" | "b", x ::= "c"?): llama.cpp
//    checks only a rule's first symbol, so this one passed and sampler creation looped forever,
//    allocating. Found here on the parsed rules (nullable rules by fixpoint, then a cycle search).
//  - nested bounded repetitions (("a"{0,20}){0,20}){0,20}: each level multiplies the parser
//    states alive at once (llama.cpp keeps one stack per state and compares them pairwise), so
//    each token took twice as long as the last. Bounded by kMaxRepetitionStates.
//  - fan-out: the stacks one position expands into, and how many of them enter the same rule
//    (those take the same characters and re-expand into each other after every one). Rules that
//    each use an optional rule twice, nested k deep, give 2^k of the latter (creation took 11 s
//    at k = 16, 45 minutes at k = 20; a token 6 s at k = 10). Bounded by kMaxGrammarEntries and
//    kMaxGrammarStacks, counted on the parsed rules.
// Parse errors come back with llama.cpp's detail in the message instead of on stderr.
// Every failure is a CodedError ERR_INVALID_GRAMMAR.
#pragma once

#include <string>

struct llama_vocab;

namespace llamafuse {

constexpr int kMaxGrammarDepth = 256;
constexpr double kMaxRepetitionStates = 4096;
// Stacks entering one rule: with 2^k of them (the nested grammar above) stories260K sampled a
// token in 0.35 s at 256, 6 s at 1,024 and over 25 s at 2,048 on a loaded 2-core machine.
constexpr double kMaxGrammarEntries = 128;
// Distinct stacks (an enum of n strings is n): built pairwise, 16,384 in 0.8 s; tokens stay fast
// (1,000 strings: 19 ms a token).
constexpr double kMaxGrammarStacks = 16384;
// Live parser stacks sharing one position, while sampling (native/sampling.cpp): checked
// before every token (text can drive an ambiguous grammar past what its rules show).
constexpr size_t kMaxLiveGrammarStacks = 512;

void grammar_check(const llama_vocab * vocab, const std::string & gbnf, const std::string & root = "root");

} // namespace llamafuse
