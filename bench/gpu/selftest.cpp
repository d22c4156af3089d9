// CPU self-test of the harness's host side: f16 and q8_0 conversions, the float64
// reference on cases with known answers, the comparison (NaN and unwritten-zero
// detection), and the float32 model of the kernels' algorithm against the reference.
// Runs anywhere (no GPU): `fattn_bench --cpu-selftest`, or the g++-built `selftest`.

#include "selftest.h"
#include "emulate.h"
#include "reference.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

namespace fattn_bench {
namespace {

int g_fail = 0;
int g_pass = 0;

void check(bool ok, const char * what) {
    if (ok) {
        ++g_pass;
    } else {
        ++g_fail;
        std::printf("  FAIL %s\n", what);
    }
}

void test_f16() {
    check(float_to_half(1.0f) == 0x3c00, "f16(1) == 0x3c00");
    check(float_to_half(-2.0f) == 0xc000, "f16(-2) == 0xc000");
    check(float_to_half(65504.0f) == 0x7bff, "f16(65504) == 0x7bff");
    check(float_to_half(65520.0f) == 0x7c00, "f16(65520) rounds to inf");
    check(float_to_half(-INFINITY) == 0xfc00, "f16(-inf) == 0xfc00");
    check(float_to_half(5.960464477539063e-08f) == 0x0001, "smallest subnormal");
    check(float_to_half(1.0f + 1.0f / 2048.0f) == 0x3c00, "tie rounds to even (down)");
    check(float_to_half(1.0f + 3.0f / 2048.0f) == 0x3c02, "tie rounds to even (up)");
    bool round_trip = true;
    for (uint32_t h = 0; h < 0x10000u; ++h) {
        const uint16_t x = (uint16_t) h;
        const bool nan = (x & 0x7c00u) == 0x7c00u && (x & 0x3ffu) != 0;
        if (nan) continue;
        if (float_to_half(half_to_float(x)) != x) {
            round_trip = false;
            break;
        }
    }
    check(round_trip, "every non-NaN half survives half->float->half");
    check(std::isnan(half_to_float(float_to_half(std::nanf("")))), "NaN stays NaN");
}

void test_q8_0() {
    rng g(7);
    float x[64];
    for (float & v : x) v = (float) g.uniform(-3.0, 3.0);
    uint8_t q[68];
    quantize_row_q8_0(x, q, 64);
    double y[64];
    dequantize_row_q8_0(q, y, 64);
    bool ok = true;
    for (int b = 0; b < 2; ++b) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[b * 32 + j]));
        const double d = amax / 127.0;
        for (int j = 0; j < 32; ++j) {
            // half a quantum, plus the f16 rounding of the scale times 127
            if (std::fabs(y[b * 32 + j] - x[b * 32 + j]) > 0.5 * d + 127.0 * d / 1024.0) ok = false;
        }
    }
    check(ok, "q8_0 round trip within half a quantum");
}

problem small(kv_kind type) {
    problem p;
    p.D = 64;
    p.n_tokens = 3;
    p.n_head = 4;
    p.n_head_kv = 2;
    p.n_kv = 37;
    p.type = type;
    return p;
}

// Known answers: one visible key gives its V row; identical K rows give the mean of V.
void test_reference_known() {
    for (kv_kind type : {kv_kind::f16, kv_kind::q8_0}) {
        problem p = small(type);
        p.n_kv_valid = 1;   // only key 0 visible
        host_data d = make_data(p, 11);
        std::vector<double> ref = reference(p, d);
        double err = 0.0;
        std::vector<double> row(p.D);
        for (int t = 0; t < p.n_tokens; ++t) {
            for (int h = 0; h < p.n_head; ++h) {
                const int kvh = h / (p.n_head / p.n_head_kv);
                const uint8_t * v = d.v.data() + (size_t) kvh * p.row_bytes();   // key 0
                if (type == kv_kind::f16) {
                    for (int i = 0; i < p.D; ++i) {
                        uint16_t hv;
                        std::memcpy(&hv, v + 2 * i, 2);
                        row[i] = half_to_float(hv);
                    }
                } else {
                    dequantize_row_q8_0(v, row.data(), p.D);
                }
                for (int i = 0; i < p.D; ++i) {
                    err = std::fmax(err, std::fabs(ref[((size_t) t * p.n_head + h) * p.D + i] - row[i]));
                }
            }
        }
        check(err < 1e-12, "one visible key: output is its V row (GQA head mapping)");
    }
    {
        problem p = small(kv_kind::f16);
        p.mask = false;
        host_data d = make_data(p, 12);
        // make every K row equal: all scores equal, softmax uniform
        for (size_t r = 1; r < d.k.size() / p.row_bytes(); ++r) {
            std::memcpy(d.k.data() + r * p.row_bytes(), d.k.data(), p.row_bytes());
        }
        std::vector<double> ref = reference(p, d);
        double err = 0.0;
        for (int h = 0; h < p.n_head; ++h) {
            const int kvh = h / (p.n_head / p.n_head_kv);
            for (int i = 0; i < p.D; ++i) {
                double mean = 0.0;
                for (int j = 0; j < p.n_kv; ++j) {
                    uint16_t hv;
                    std::memcpy(&hv, d.v.data() + ((size_t) j * p.n_head_kv + kvh) * p.row_bytes() + 2 * i, 2);
                    mean += half_to_float(hv);
                }
                mean /= p.n_kv;
                err = std::fmax(err, std::fabs(ref[(size_t) h * p.D + i] - mean));
            }
        }
        check(err < 1e-12, "equal keys: output is the mean of V");
    }
    {
        // one key, a sink: out = v * e^x / (e^x + e^sink)
        problem p = small(kv_kind::f16);
        p.n_kv = 1;
        p.n_tokens = 1;
        p.sinks = true;
        host_data d = make_data(p, 13);
        std::vector<double> ref = reference(p, d);
        double err = 0.0;
        for (int h = 0; h < p.n_head; ++h) {
            const int kvh = h / (p.n_head / p.n_head_kv);
            double dot = 0.0;
            std::vector<double> v(p.D);
            for (int i = 0; i < p.D; ++i) {
                uint16_t kh, vh;
                std::memcpy(&kh, d.k.data() + (size_t) kvh * p.row_bytes() + 2 * i, 2);
                std::memcpy(&vh, d.v.data() + (size_t) kvh * p.row_bytes() + 2 * i, 2);
                dot += (double) d.q[(size_t) h * p.D + i] * half_to_float(kh);
                v[i] = half_to_float(vh);
            }
            const double x = dot / std::sqrt((double) p.D);
            const double w = std::exp(x) / (std::exp(x) + std::exp((double) d.sinks[h]));
            for (int i = 0; i < p.D; ++i) err = std::fmax(err, std::fabs(ref[(size_t) h * p.D + i] - w * v[i]));
        }
        check(err < 1e-12, "sink: one key weighted by e^x / (e^x + e^sink)");
    }
    {
        problem p = small(kv_kind::f16);
        p.masked_rows = {1};
        p.sinks = true;
        host_data d = make_data(p, 14);
        std::vector<double> ref = reference(p, d);
        bool zero = true;
        for (int i = 0; i < p.n_head * p.D; ++i) zero &= ref[(size_t) 1 * p.n_head * p.D + i] == 0.0;
        check(zero, "fully masked row (with sinks) is exactly 0");
    }
    {
        // soft-cap with a huge cap is the identity
        problem p = small(kv_kind::f16);
        host_data d = make_data(p, 15);
        std::vector<double> a = reference(p, d);
        p.softcap = 1e6f;
        std::vector<double> b = reference(p, d);
        double err = 0.0;
        for (size_t i = 0; i < a.size(); ++i) err = std::fmax(err, std::fabs(a[i] - b[i]));
        check(err < 1e-9, "soft-cap 1e6 is the identity");
    }
}

void test_compare() {
    problem p = small(kv_kind::f16);
    p.masked_rows = {2};
    host_data d = make_data(p, 21);
    std::vector<double> ref = reference(p, d);
    std::vector<float> out(ref.begin(), ref.end());
    check(compare(p, out, ref).pass(1e-6), "compare: exact copy passes");
    std::vector<float> bad = out;
    bad[5] = std::numeric_limits<float>::quiet_NaN();
    check(!compare(p, bad, ref).pass(1.0), "compare: a NaN (unwritten poison) fails at any tolerance");
    bad = out;
    bad[(size_t) 2 * p.n_head * p.D + 3] = 1e-30f;
    check(!compare(p, bad, ref).pass(1.0), "compare: a fully masked row that is not exactly 0 fails");
    bad = out;
    for (float & x : bad) x *= 1.01f;
    const compare_result c = compare(p, bad, ref);
    check(std::fabs(c.rel_l2 - 0.01) < 1e-4, "compare: rel L2 of a 1% scale error is 0.01");
    check(!compare(p, std::vector<float>(out.begin(), out.end() - 1), ref).pass(1.0), "compare: a short output fails");
}

// The kernels' algorithm, modelled in f32, against the f64 reference on the shapes the
// GPU harness uses: the decode model must land near f32 rounding, the prefill model
// (f16 Q and P) well inside the 5e-3 budget.
void test_emulation() {
    struct cfg { problem p; emulate_opts o; double tol; const char * what; };
    std::vector<cfg> cases;
    auto add = [&](problem p, emulate_opts o, double tol, const char * what) { cases.push_back({p, o, tol, what}); };

    problem dec;
    dec.D = 128; dec.n_tokens = 1; dec.n_head = 8; dec.n_head_kv = 2; dec.n_kv = 1000; dec.n_kv_valid = 977;
    add(dec, {32, 7, false, false}, 1e-5, "decode model, f16, 7 splits, padded tail");
    problem dq = dec; dq.type = kv_kind::q8_0; dq.sinks = true;
    add(dq, {32, 5, false, false}, 1e-5, "decode model, q8_0, sinks");
    problem da = dec; da.max_bias = 8.0f; da.softcap = 30.0f; da.n_tokens = 2; da.masked_rows = {1};
    add(da, {32, 4, false, false}, 1e-5, "decode model, ALiBi + soft-cap + masked row");
    problem pre;
    pre.D = 64; pre.n_tokens = 70; pre.n_head = 4; pre.n_head_kv = 1; pre.n_kv = 200; pre.causal = true;
    add(pre, {64, 1, true, true}, 5e-3, "prefill model, f16 Q and P, causal");
    problem pq = pre; pq.type = kv_kind::q8_0; pq.D = 128; pq.sinks = true; pq.masked_rows = {3};
    add(pq, {64, 1, true, true}, 5e-3, "prefill model, q8_0, sinks, masked row");

    for (const cfg & c : cases) {
        host_data d = make_data(c.p, 100 + (uint64_t) (&c - cases.data()));
        const std::vector<double> ref = reference(c.p, d);
        const std::vector<float> out = emulate(c.p, d, c.o);
        const compare_result r = compare(c.p, out, ref);
        std::printf("  %-48s rel_l2 %.2e (tol %.0e)  %s\n", c.what, r.rel_l2, c.tol, c.p.describe().c_str());
        check(r.pass(c.tol), c.what);
    }
}

} // namespace

int cpu_selftest() {
    std::printf("cpu selftest: f16 and q8_0 conversions, reference, compare, kernel algorithm model\n");
    test_f16();
    test_q8_0();
    test_reference_known();
    test_compare();
    test_emulation();
    std::printf("cpu selftest: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}

} // namespace fattn_bench
