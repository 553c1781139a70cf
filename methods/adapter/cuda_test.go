package adapter

import (
	"testing"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/internal/methodtest"
)

// TestFusedOnCUDA trains every bottleneck-adapter golden run (Houlsby,
// Pfeiffer and parallel on LLaMA, Houlsby on GPT-2) on the CUDA backend
// (the emulator under make test) and on the CPU: logits, gradients, the 3
// steps' losses and gradient norms and the trained tensors must agree,
// the adapters must run through the fused kernels, and nothing may fall
// back to the host.
func TestFusedOnCUDA(t *testing.T) {
	methodtest.CheckCUDA(t, methodtest.Sets(t, methodtest.Root, "adapter"), func(m model.Model, dir string, frozen bool) (train.Saver, error) {
		return Load(m, dir, LoadOptions{Frozen: frozen})
	}, "AdapterForward", "AdapterBackward")
}
