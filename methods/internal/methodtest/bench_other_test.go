//go:build !unix

package methodtest

// cpuSeconds is unavailable here; the benchmark then reports 0 cpu-ms/op.
func cpuSeconds() float64 { return 0 }
