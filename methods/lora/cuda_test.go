package lora

import (
	"slices"
	"testing"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/internal/methodtest"
)

// TestFusedOnCUDA trains golden LoRA and DoRA runs (LLaMA, Qwen2 and
// GPT-2's Conv1D projections) on the CUDA backend (the emulator under make
// test) and on the CPU: logits, gradients, the 3 steps' losses and
// gradient norms and the trained tensors must agree, every layer must go
// through the fused LoRA kernels, and nothing may fall back to the host.
func TestFusedOnCUDA(t *testing.T) {
	names := []string{"dora", "gpt2-dora", "gpt2-lora", "lora", "qwen2-dora", "qwen3-lora", "olmo2-lora", "granite-lora", "mistral-swa-lora", "qwen2-swa-lora",
		"phi3-lora", "phi3-dora", "glm-lora", "glm4-lora", "gemma2-lora", "gemma3-lora"}
	var sets []*golden.MethodSet
	for _, s := range methodtest.Sets(t, methodtest.Root, "lora") {
		if slices.Contains(names, s.Meta.Name) {
			sets = append(sets, s)
		}
	}
	if len(sets) != len(names) {
		t.Fatalf("found %d of the golden sets %v", len(sets), names)
	}
	methodtest.CheckCUDA(t, sets, func(m model.Model, dir string, frozen bool) (train.Saver, error) {
		return Load(m, dir, LoadOptions{Frozen: frozen})
	}, "LoRAForward", "LoRABackward")
}
