//go:build !unix

package methods_test

// cpuSeconds is unavailable here; the benchmark then omits cpu-ms/op.
func cpuSeconds() float64 { return 0 }
