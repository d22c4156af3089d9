// g++-built runner of the CPU self-test (no CUDA toolkit needed): see Makefile `selftest`.
#include "selftest.h"
int main() { return fattn_bench::cpu_selftest(); }
