//go:build !unix

package cpu_test

// cpuSeconds is unavailable here; reportFlops then omits GFLOP/cpu-s.
func cpuSeconds() float64 { return 0 }
