package devicepeaks

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		name  string
		match string
		bf16  float64
	}{
		{"NVIDIA H100 80GB HBM3", "H100", 989},
		{"NVIDIA H100 PCIe", "H100 PCIe", 756},
		{"NVIDIA H200", "H200", 989},
		{"NVIDIA A100-SXM4-40GB", "A100", 312},
		{"NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB", 312},
	} {
		p, ok := Lookup(tc.name)
		assert.True(t, ok, tc.name)
		assert.Equal(t, tc.match, p.Match, tc.name)
		assert.Equal(t, tc.bf16, p.BF16TFLOPS, tc.name)
	}
	_, ok := Lookup("gotune CPU emulator")
	assert.False(t, ok)
}
