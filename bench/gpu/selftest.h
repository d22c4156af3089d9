#pragma once
namespace fattn_bench {
// Checks the harness's host side with no GPU; returns 0 when everything passed.
int cpu_selftest();
}
