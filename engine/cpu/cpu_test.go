package cpu_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/backendtest"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/stretchr/testify/require"
)

// TestConformance runs the backend conformance suite on the CPU backend.
func TestConformance(t *testing.T) {
	backendtest.Run(t, cpu.New(), backendtest.Options{})
}

// TestMemoryReleasedByGC checks that a tensor dropped without Free stops
// counting once the garbage collector reclaims it.
func TestMemoryReleasedByGC(t *testing.T) {
	b := cpu.New()
	x := b.Alloc(engine.Float32, 1<<20)
	require.Equal(t, uint64(4<<20), b.MemoryStats().InUse)
	runtime.KeepAlive(x)
	require.Eventually(t, func() bool {
		runtime.GC()
		return b.MemoryStats().InUse == 0
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, uint64(4<<20), b.MemoryStats().Peak)
}
