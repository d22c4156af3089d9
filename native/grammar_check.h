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
// Parse errors come back with llama.cpp's detail in the message instead of on stderr.
// Every failure is a CodedError ERR_INVALID_GRAMMAR.
#pragma once

#include <string>

struct llama_vocab;

namespace llamafuse {

constexpr int kMaxGrammarDepth = 256;
constexpr double kMaxRepetitionStates = 4096;

void grammar_check(const llama_vocab * vocab, const std::string & gbnf, const std::string & root = "root");

} // namespace llamafuse
