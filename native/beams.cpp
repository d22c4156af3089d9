#include "beams.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace llamafuse {

std::string token_text_piece(const llama_vocab * vocab, llama_token t) {
    char buf[128];
    int32_t n = llama_token_to_piece(vocab, t, buf, sizeof buf, 0, false);
    if (n >= 0) return std::string(buf, (size_t) n);
    std::string big((size_t) -n, '\0');
    n = llama_token_to_piece(vocab, t, big.data(), (int32_t) big.size(), 0, false);
    big.resize((size_t) std::max(n, 0));
    return big;
}

double row_log_probs(const float * row, int32_t n_vocab, int32_t k, std::vector<std::pair<llama_token, double>> & top) {
    float max_l = -INFINITY;
    for (int32_t i = 0; i < n_vocab; ++i) max_l = std::max(max_l, row[i]);
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp((double) row[i] - (double) max_l);
    const double lse = (double) max_l + std::log(sum);
    top.clear();
    if (k <= 0) return lse;
    // One pass keeping the best k in order (k is small: 2 x beams, or OpenAI's 20).
    auto better = [&](llama_token a, llama_token b) { return row[a] > row[b] || (row[a] == row[b] && a < b); };
    std::vector<llama_token> best;
    best.reserve((size_t) k + 1);
    for (llama_token t = 0; t < n_vocab; ++t) {
        if ((int32_t) best.size() == k && !better(t, best.back())) continue;
        best.insert(std::upper_bound(best.begin(), best.end(), t, better), t);
        if ((int32_t) best.size() > k) best.pop_back();
    }
    for (llama_token t : best) top.emplace_back(t, (double) row[t] - lse);
    return lse;
}

namespace {

struct Candidate {
    size_t parent;
    llama_token token;
    double log_prob;
};

} // namespace

double BeamSearchState::score(double log_prob, size_t length) const {
    if (length_penalty == 0.0) return log_prob;
    return log_prob / std::pow((double) std::max<size_t>(1, length), length_penalty);
}

std::vector<std::pair<llama_seq_id, llama_seq_id>> BeamSearchState::expand(const std::vector<const float *> & rows, int32_t n_vocab, const llama_vocab * vocab) {
    std::vector<std::pair<llama_seq_id, llama_seq_id>> copies;
    if (live.empty()) live.push_back(Beam{seqs[0], {}, {}, 0.0});

    // Every live beam's best continuations, ranked together (a stable sort: ties keep beam order).
    std::vector<Candidate> cands;
    const int32_t k = std::min(2 * width, n_vocab);
    std::vector<std::pair<llama_token, double>> top;
    for (size_t i = 0; i < live.size(); ++i) {
        row_log_probs(rows[i], n_vocab, k, top);
        for (auto [t, lp] : top) cands.push_back({i, t, live[i].log_prob + lp});
    }
    std::stable_sort(cands.begin(), cands.end(), [](const Candidate & a, const Candidate & b) { return a.log_prob > b.log_prob; });
    std::vector<Candidate> chosen;
    for (const Candidate & c : cands) {
        if ((int32_t) chosen.size() == width) break;
        if (stop_on_eog && llama_vocab_is_eog(vocab, c.token)) {
            const Beam & p = live[c.parent];
            finished.push_back({p.tokens, p.bytes, c.log_prob, score(c.log_prob, p.tokens.size() + 1), "eog"});
            continue;
        }
        chosen.push_back(c);
    }

    // The first child of a beam keeps its sequence; the others take free ones, which get a
    // copy of the parent's cells before anything is appended.
    std::vector<bool> parent_busy(live.size(), false), taken(live.size(), false);
    for (const Candidate & c : chosen) parent_busy[c.parent] = true;
    std::vector<llama_seq_id> free;
    for (llama_seq_id s : seqs) {
        bool busy = false;
        for (size_t i = 0; i < live.size(); ++i) busy = busy || (parent_busy[i] && live[i].seq == s);
        if (!busy) free.push_back(s);
    }
    std::vector<Beam> next;
    for (const Candidate & c : chosen) {
        const Beam & p = live[c.parent];
        llama_seq_id seq = p.seq;
        if (taken[c.parent]) {
            seq = free.back();
            free.pop_back();
            copies.emplace_back(p.seq, seq);
        }
        taken[c.parent] = true;
        Beam b{seq, p.tokens, p.bytes + token_text_piece(vocab, c.token), c.log_prob};
        b.tokens.push_back(c.token);
        next.push_back(std::move(b));
    }

    // A beam whose text reached a stop string is finished, cut before the match.
    live.clear();
    for (Beam & b : next) {
        size_t at = std::string::npos;
        for (const std::string & stop : stops) at = std::min(at, b.bytes.find(stop));
        if (at != std::string::npos) {
            finished.push_back({b.tokens, b.bytes.substr(0, at), b.log_prob, score(b.log_prob, b.tokens.size()), "stop"});
        } else {
            live.push_back(std::move(b));
        }
    }
    if ((int32_t) finished.size() >= width && !live.empty()) {
        // Heuristic early end: no live beam scores above the worst of the best finished.
        std::vector<double> scores;
        for (const BeamHypothesis & h : finished) scores.push_back(h.score);
        std::sort(scores.begin(), scores.end(), std::greater<double>());
        const double worst = scores[(size_t) width - 1];
        double best_live = -std::numeric_limits<double>::infinity();
        for (const Beam & b : live) best_live = std::max(best_live, score(b.log_prob, b.tokens.size()));
        if (best_live <= worst) live.clear();
    }
    ++steps;
    if (live.empty() || steps >= max_tokens) end("maxTokens");
    return copies;
}

void BeamSearchState::end(const char * reason) {
    for (Beam & b : live) finished.push_back({b.tokens, b.bytes, b.log_prob, score(b.log_prob, b.tokens.size()), reason});
    live.clear();
    over = true;
}

std::vector<BeamHypothesis> BeamSearchState::result() const {
    std::vector<BeamHypothesis> out = finished;
    std::stable_sort(out.begin(), out.end(), [](const BeamHypothesis & a, const BeamHypothesis & b) { return a.score > b.score; });
    if ((int32_t) out.size() > width) out.resize((size_t) width);
    return out;
}

} // namespace llamafuse
