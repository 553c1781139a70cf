package backendtest

import (
	"testing"

	"github.com/gotune/gotune/engine"
)

// Run checks every operation of b against the float64 references. Each
// operation family is a subtest (t.Run), so `-run 'Backend/Gemm'` selects
// one.
func Run(t *testing.T, b engine.Backend, opts Options) {
	if b.Name() == "" {
		t.Errorf("Name() is empty")
	}
	checks := []struct {
		name string
		fn   func(h *harness)
	}{
		{"Memory", checkMemory},
		{"MemoryCounters", checkMemoryCounters},
		{"BFloat16", checkBFloat16},
		{"BFloat16Ops", checkBFloat16Ops},
		{"CopyBlock", checkCopyBlock},
		{"Gemm", checkGemm},
		{"GemmBackward", checkGemmBackward},
		{"Bias", checkBias},
		{"Elementwise", checkElementwise},
		{"Reductions", checkReductions},
		{"Activation", checkActivation},
		{"GLU", checkGLU},
		{"Embedding", checkEmbedding},
		{"RMSNorm", checkRMSNorm},
		{"LayerNorm", checkLayerNorm},
		{"RoPE", checkRoPE},
		{"Attention", checkAttention},
		{"AttentionOptions", checkAttentionOptions},
		{"CrossEntropy", checkCrossEntropy},
		{"AdamW", checkAdamW},
		// Append new checks: each check's inputs are seeded by its position.
		{"QuantGemm", checkQuantGemm},
		{"Dropout", checkDropout},
	}
	for i, c := range checks {
		run(t, b, opts, c.name, uint64(i+1), c.fn)
	}
	if err := b.Synchronize(); err != nil {
		t.Errorf("Synchronize after the suite: %v", err)
	}
}
