package engine

import "fmt"

// MemoryStats are a backend's memory counters, in bytes.
type MemoryStats struct {
	// InUse is the storage of the backend's live tensors.
	InUse uint64
	// Peak is the largest InUse since the backend was opened or
	// ResetPeakMemory was last called.
	Peak uint64
	// Reserved is what the backend holds from the system: InUse plus
	// any cache of freed blocks (the CUDA allocator's), so at least InUse.
	Reserved uint64
}

// MemoryReporter is implemented by backends that track the memory of
// their tensors (both of gotune's do; see each backend for what it
// counts). The trainer reports the peak of every step through it.
type MemoryReporter interface {
	// MemoryStats returns the current counters.
	MemoryStats() MemoryStats
	// ResetPeakMemory sets Peak to the current InUse, so the next
	// MemoryStats reports the peak of what ran in between.
	ResetPeakMemory()
}

// OutOfMemoryError is the error a backend records when a tensor
// allocation fails for lack of device memory.
type OutOfMemoryError struct {
	// Device names the backend, e.g. "cuda:0 NVIDIA H100".
	Device string
	// Requested is the size of the allocation that failed.
	Requested uint64
	// Stats are the backend's counters when it failed.
	Stats MemoryStats
	// Err is the driver's error.
	Err error
}

// Error says what was asked for and what was in use, in MiB.
func (e *OutOfMemoryError) Error() string {
	return fmt.Sprintf("out of device memory allocating %s (%s in use, peak %s)",
		FormatMiB(e.Requested), FormatMiB(e.Stats.InUse), FormatMiB(e.Stats.Peak))
}

// Unwrap returns the driver's error.
func (e *OutOfMemoryError) Unwrap() error { return e.Err }

// FormatMiB writes a byte count in MiB: one decimal from 1 MiB on
// ("12.5 MiB"), three significant digits below ("0.0123 MiB").
func FormatMiB(bytes uint64) string {
	mib := float64(bytes) / (1 << 20)
	if mib < 1 {
		return fmt.Sprintf("%.3g MiB", mib)
	}
	return fmt.Sprintf("%.1f MiB", mib)
}
