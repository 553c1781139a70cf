package cuda

import (
	"testing"

	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/internal/ckpttest"
	"github.com/gotune/gotune/methods/adapter"
	"github.com/gotune/gotune/methods/lora"
	"github.com/stretchr/testify/require"
)

// TestGradCheckpointBitIdentical requires gradient checkpointing to leave
// every loss and gradient bit-identical on this backend too (the CPU
// backend's test covers every method; here the CUDA kernels, the fused
// LoRA ones included, recompute). The products are kept too small for
// split-K GEMMs, whose atomic adds make this backend's sums depend on
// thread timing (two runs of a larger model differ in the last bits with
// or without checkpointing), so only checkpointing can change a bit here.
func TestGradCheckpointBitIdentical(t *testing.T) {
	b := testBackend(t)
	sizes := hfconfig.Sizes{VocabSize: 64, Hidden: 32, Layers: 3, Heads: 4, KVHeads: 2, Intermediate: 48, MaxPos: 32}
	for _, tc := range []struct {
		name  string
		apply ckpttest.Method
	}{
		{name: "full"},
		{name: "lora-dropout", apply: func(m model.Model) error {
			_, err := lora.Apply(m, lora.Config{R: 4, Alpha: 8, Dropout: 0.25, Targets: []string{lora.AllLinear}, Seed: 3})
			return err
		}},
		{name: "adapter-pfeiffer", apply: func(m model.Model) error {
			_, err := adapter.Apply(m, adapter.Config{Variant: adapter.Pfeiffer, BottleneckSize: 8, Activation: "relu", Scaling: 1, Seed: 4})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := hfconfig.NewLlama(sizes)
			require.NoError(t, err)
			ckpttest.RequireBitIdentical(t, b, ckpttest.NewSetup(cfg, tc.apply), ckpttest.Shape{B: 2, T: 6, Passes: 2})
		})
	}
}
