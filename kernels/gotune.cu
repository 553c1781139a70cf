// gotune.cu: the one translation unit nvcc compiles into gotune.fatbin (and
// g++ into the emulator): every kernel source, included once.
#include "elementwise.cu"
#include "reduce.cu"
#include "gemm.cu"
#include "attention.cu"
#include "attention_tc.cu"
#include "gemm_q.cu"
