// Package devicepeaks holds the datasheet ceilings of common GPUs, found
// by device name, for benchmarks that set measured rates against them
// (model-FLOPs utilisation, a kernel's floor). The figures are dense (no
// sparsity) vendor numbers: leads, not measurements.
package devicepeaks

import "strings"

// Peaks are one device's datasheet ceilings.
type Peaks struct {
	// Match is the device-name substring the entry was found by.
	Match string
	// BF16TFLOPS is dense bfloat16 tensor-core throughput, F32TFLOPS
	// float32 (non-tensor) throughput, BandwidthGBs memory bandwidth.
	BF16TFLOPS, F32TFLOPS, BandwidthGBs float64
}

// table is searched in order and the first substring match wins, so
// specific names come before the families that contain them.
var table = []Peaks{
	{"H200", 989, 67, 4800},
	{"H100 PCIe", 756, 51, 2000},
	{"H100 NVL", 835, 60, 3900},
	{"H100", 989, 67, 3350},
	{"A100-SXM4-80GB", 312, 19.5, 2039},
	{"A100 80GB PCIe", 312, 19.5, 1935},
	{"A100", 312, 19.5, 1555},
	{"L40S", 362, 91.6, 864},
	{"A10", 125, 31.2, 600},
	{"RTX 4090", 165, 82.6, 1008},
}

// Lookup returns the ceilings of the device called name (as the driver
// reports it, e.g. "NVIDIA H100 80GB HBM3"), and false when no entry
// matches.
func Lookup(name string) (Peaks, bool) {
	for _, p := range table {
		if strings.Contains(name, p.Match) {
			return p, true
		}
	}
	return Peaks{}, false
}
