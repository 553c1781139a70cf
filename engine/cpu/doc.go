// Package cpu is gotune's pure-Go compute backend: it implements every
// operation of engine.Backend on host memory, spreading work across all
// cores with goroutines (GOMAXPROCS workers; small operations run inline).
//
// Storage is a Go slice per tensor buffer: []float32 for Float32, []uint16
// (the upper half of a float32, rounded to nearest even, NaN kept NaN) for
// BFloat16 and []int32 for Int32. Arithmetic is always float32. Gemm and
// Embedding read BFloat16 operands directly (converting while packing or
// gathering), so a large frozen bfloat16 weight is never expanded whole;
// other operations convert BFloat16 operands to float32 scratch copies and
// round results back.
//
// Matrix multiplication packs op(A) and op(B) into cache-sized panels and
// runs a register-blocked micro-kernel over them, picked at start-up: an
// AVX-512F assembly kernel (12×32 tile) on amd64 CPUs and OSes that support
// it, else an AVX2/FMA one (6×16), else a portable 4×4 Go kernel (always
// under the purego build tag). The GOTUNE_CPU_KERNEL environment variable
// (KernelEnv) forces one; GemmKernel reports the choice. The two assembly
// kernels give bit-identical results. Attention is flash-style — one
// (batch, head, block of query rows) per task, scores for that block only,
// softmax with the exact row maximum, log-sum-exp saved for a backward
// pass that recomputes probabilities — built on the same gemm. The
// exponentials of attention and of the activations use a vectorised
// float32 exp accurate to about 1e-7 relative.
//
// All operations run synchronously: when a method returns its outputs are
// written, so Synchronize has nothing to wait for. Reductions (statistics,
// weight gradients summed over rows, global norms) split their work into
// chunks whose boundaries depend only on the problem size, never on the
// number of cores, and every gemm output element sums its products in a
// fixed order, so results are reproducible bit for bit from run to run.
//
// Statistics that decide numerical quality — softmax normalisers, norm
// means and variances, cross-entropy log-sum-exps and squared-norm
// reductions — accumulate in float64.
package cpu
