// How the batch matmul kernels (matmul_q4_0, matmul_q4_k) walk one chunk's rows for a tile of
// columns: ggml quantizes the rows as groups of 4 interleaved, then the last 1-3 plain, and the
// kernels take 8 grouped rows at a time, then 4, then the plain ones together.
#pragma once

namespace llamafuse {
namespace cpu {

// Calls run.template rows<R, Grouped>(y) for each row tile: R rows from row y, Grouped when
// they are whole interleaved groups. The first call (y == 0) is the first over these columns.
template <class Run>
void for_each_row_tile(int groups, int rest, Run && run) {
    int y = 0;
    for (; y + 8 <= 4 * groups; y += 8) run.template rows<8, true>(y);
    if (y < 4 * groups) {
        run.template rows<4, true>(y);
        y += 4;
    }
    switch (rest) {
        case 1: run.template rows<1, false>(y); break;
        case 2: run.template rows<2, false>(y); break;
        case 3: run.template rows<3, false>(y); break;
        default: break;
    }
}

} // namespace cpu
} // namespace llamafuse
