package cpu_test

import (
	"testing"

	"github.com/gotune/gotune/engine/backendtest"
	"github.com/gotune/gotune/engine/cpu"
)

// TestConformance runs the backend conformance suite on the CPU backend.
func TestConformance(t *testing.T) {
	backendtest.Run(t, cpu.New(), backendtest.Options{})
}
