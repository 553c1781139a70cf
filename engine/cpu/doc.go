// Package cpu is gotune's pure-Go compute backend: it implements every
// operation of engine.Backend on host memory, spreading work across all
// cores with goroutines.
//
// Storage is a Go slice per tensor buffer: []float32 for Float32, []uint16
// (the upper half of a float32, rounded to nearest even) for BFloat16 and
// []int32 for Int32. Arithmetic is always float32; operations that receive
// BFloat16 operands convert them to float32 scratch copies, compute, and
// round the results back, so BFloat16 works everywhere but is fastest as a
// storage format for frozen weights and checkpoints.
//
// All operations run synchronously: when a method returns its outputs are
// written, so Synchronize has nothing to wait for. Reductions (statistics,
// weight gradients summed over rows, global norms) split their work into
// chunks whose boundaries depend only on the problem size, never on the
// number of cores, so results are bit-for-bit reproducible from one run and
// one machine to the next.
//
// Statistics that decide numerical quality — softmax normalisers, norm
// variances, cross-entropy log-sum-exps and squared-norm reductions — are
// accumulated in float64; inner products of matrix multiplication and
// attention stay in float32 with several partial accumulators.
package cpu
