// Beam search as the scheduler runs it (native/scheduler.cpp): the live beams of one search,
// each on its own sequence, expanded together after every shared decode step. The rules are
// src/beam-search.ts's contract: every live beam's 2*width best continuations (log-softmax of
// its logits, float64) ranked together by summed log-probability; an end-of-generation token
// finishes its parent's hypothesis; the first child of a beam keeps its sequence, the others
// take free ones (a copy of the parent's cells); a stop string (matched on the bytes)
// finishes a hypothesis cut before the match; the search ends at maxTokens, when no beam is
// live, or when no live beam scores above the worst of `width` finished ones.
#pragma once

#include "llama.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llamafuse {

// A token's text as generation releases it (no special-token rendering).
std::string token_text_piece(const llama_vocab * vocab, llama_token t);

// The log-sum-exp of a logits row (float64, max-shifted), and in `top` its k best tokens with
// their log-probabilities (logit - lse), best first (ties: lower id first). Shared by the
// beams' ranking and generate's logProbs.
double row_log_probs(const float * row, int32_t n_vocab, int32_t k, std::vector<std::pair<llama_token, double>> & top);

struct BeamHypothesis {
    std::vector<llama_token> tokens;
    std::string bytes;
    double log_prob = 0.0, score = 0.0;
    std::string reason; // "eog" | "stop" | "maxTokens" | "contextFull" | "aborted"
};

struct BeamSearchState {
    struct Beam {
        llama_seq_id seq = 0;
        std::vector<llama_token> tokens;
        std::string bytes;
        double log_prob = 0.0;
    };

    std::vector<llama_seq_id> seqs; // seqs[0] holds the prompt
    int32_t width = 1, max_tokens = 1;
    double length_penalty = 1.0;
    bool stop_on_eog = true;
    std::vector<std::string> stops;

    std::vector<Beam> live;
    std::vector<BeamHypothesis> finished;
    int32_t steps = 0;
    bool over = false; // no more steps: the hypotheses are final

    double score(double log_prob, size_t length) const;

    // One expansion. rows[i]: next-token logits of live[i]; the first call (nothing live yet)
    // takes the prompt's last row as one beam on seqs[0]. Returns the (from, to) sequence
    // copies to make in the cache before the live beams' last tokens are decoded.
    std::vector<std::pair<llama_seq_id, llama_seq_id>> expand(const std::vector<const float *> & rows, int32_t n_vocab, const llama_vocab * vocab);

    // Ends the search: the live beams become hypotheses with this reason.
    void end(const char * reason);

    // The best `width` hypotheses, best score first.
    std::vector<BeamHypothesis> result() const;
};

} // namespace llamafuse
