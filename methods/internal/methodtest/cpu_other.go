//go:build !unix

package methodtest

// cpuSeconds is unavailable here; BenchStep then omits cpu-ms/op.
func cpuSeconds() float64 { return 0 }
