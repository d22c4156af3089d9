// Tokenizing and detokenizing with llama.cpp's vocabulary, with its failure modes turned into
// CodedErrors: shared by the async workers (model.cpp) and the synchronous short-input calls
// (tokenizeSync / detokenizeSync), so both behave the same.
#pragma once

#include "llama.h"

#include <string>
#include <vector>

namespace llamafuse {

// Synchronous calls take inputs up to these sizes (longer ones would block the event loop for
// more than a few hundred microseconds; the async calls take any size).
constexpr size_t kSyncTokenizeMaxBytes = 4096;
constexpr size_t kSyncDetokenizeMaxTokens = 1024;

std::vector<llama_token> tokenize_text(const llama_vocab * vocab, const std::string & text, bool add_special, bool parse_special);
std::string detokenize_tokens(const llama_vocab * vocab, const std::vector<llama_token> & tokens, bool remove_special, bool unparse_special);

} // namespace llamafuse
