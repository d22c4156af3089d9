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
//  - fan-out: rules that each use an optional rule twice, nested k deep, give 2^k parser stacks
//    at once, compared pairwise (creation took 11 s at k = 16, 45 minutes at k = 20). Bounded by
//    kMaxGrammarStacks, counted on the parsed rules.
// Parse errors come back with llama.cpp's detail in the message instead of on stderr.
// Every failure is a CodedError ERR_INVALID_GRAMMAR.
#pragma once

#include <string>

struct llama_vocab;

namespace llamafuse {

constexpr int kMaxGrammarDepth = 256;
constexpr double kMaxRepetitionStates = 4096;
// Tokens are slower than the build: with every stack taking the same characters (the 2^k
// grammar), stories260K's 512-token vocabulary sampled a token in 0.35 s at 256 stacks, 6 s at
// 1,024 and over 25 s at 2,048 on a loaded 2-core machine (the build: 20 ms at 4,096).
constexpr double kMaxGrammarStacks = 1024;

void grammar_check(const llama_vocab * vocab, const std::string & gbnf, const std::string & root = "root");

} // namespace llamafuse
