// Package backendtest is the conformance suite every engine.Backend must
// pass. Run exercises each Backend method through the interface alone
// (Upload, the operation, Download), so it runs unchanged against the CPU
// backend, the CUDA backend, or the CUDA backend on a CPU emulator.
//
// Every result is compared with a float64 reference written here, with
// naive loops and independently of any backend (ref.go). The references'
// backward formulas are themselves verified by central finite differences
// of their forward functions (ref_test.go), so a backend that agrees with
// them agrees with calculus, not merely with another implementation.
//
// The checks are built to catch the bugs backends actually have:
//   - inputs at ragged sizes (1, 3, 17, 33, 65, ...) so vector tails and
//     tile edges are exercised;
//   - every tensor is a view at a random offset inside a larger buffer
//     whose guard elements are verified afterwards, so out-of-window writes
//     and ignored offsets fail;
//   - overwritten outputs are pre-filled with NaN, so unwritten elements
//     fail;
//   - accumulating (+=) gradient outputs are pre-filled with random values,
//     and nil gradient outputs are passed to check that "not needed" works;
//   - aliasing the operations allow (Add/Mul/MulCols/Activation in place,
//     CrossEntropy's dlogits == logits) is exercised.
//
// Errors are relative norms, ‖got − ref‖ / ‖ref‖, held to Options.Tol
// (1e-5 for float32 by default); the few looser bounds say why.
package backendtest
