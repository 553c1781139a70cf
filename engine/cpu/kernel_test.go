package cpu

import (
	"testing"

	"github.com/gotune/gotune/engine/backendtest"
)

// TestPortableKernel runs the conformance suite with the pure-Go gemm
// micro-kernel forced, so the fallback stays correct on machines whose
// CPUs select the assembly kernel (and vice versa in TestConformance).
func TestPortableKernel(t *testing.T) {
	if activeKernel.mr == goKernel.mr && activeKernel.nr == goKernel.nr {
		t.Skip("the portable kernel is already the active one (TestConformance covers it)")
	}
	saved := activeKernel
	activeKernel = goKernel
	defer func() { activeKernel = saved }()
	backendtest.Run(t, New(), backendtest.Options{Short: true})
}
