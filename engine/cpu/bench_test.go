package cpu_test

import "testing"

// flopMeter reports a benchmark's arithmetic throughput: GFLOP/s of wall
// time and, where the OS reports CPU time, GFLOP per CPU-second (all
// threads together; divide GFLOP/s by it to see how many cores were busy).
type flopMeter struct {
	b    *testing.B
	cpu0 float64
}

// startFlops resets the timer and starts measuring CPU time.
func startFlops(b *testing.B) flopMeter {
	b.ResetTimer()
	return flopMeter{b: b, cpu0: cpuSeconds()}
}

// report records the metrics for flopsPerOp floating-point operations per
// iteration.
func (m flopMeter) report(flopsPerOp float64) {
	total := flopsPerOp * float64(m.b.N)
	m.b.ReportMetric(total/m.b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if cpu := cpuSeconds() - m.cpu0; m.cpu0 > 0 && cpu > 0 {
		m.b.ReportMetric(total/cpu/1e9, "GFLOP/cpu-s")
	}
}
