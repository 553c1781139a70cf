package methodtest

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/lora"
	"github.com/gotune/gotune/methods/prefix"
	"github.com/gotune/gotune/methods/prompt"
)

// packingMethods are the methods packing must leave exact: full
// fine-tuning (also with gradient checkpointing, which reruns each
// layer's packed forward, and in bf16 mixed precision), LoRA (B drawn away from zero, so A has a
// gradient) and prefix tuning (whose keys every packed example sees).
var packingMethods = []struct {
	name  string
	apply func(m model.Model) error
	// cpuOnly: the variant is the model's own logic, the same on every
	// backend, so the emulator's time is spent on the others.
	cpuOnly bool
}{
	{name: "full", apply: func(model.Model) error { return nil }},
	{name: "full-grad-checkpoint", cpuOnly: true, apply: func(m model.Model) error {
		m.SetGradCheckpoint(true)
		return nil
	}},
	{name: "full-bf16", cpuOnly: true, apply: func(m model.Model) error {
		return m.(engine.PrecisionModel).SetPrecision(engine.PrecisionBF16)
	}},
	{name: "lora", apply: func(m model.Model) error {
		if _, err := lora.Apply(m, lora.Config{R: 4, Alpha: 8, Targets: lora.DefaultTargets(m)}); err != nil {
			return err
		}
		Randomize(m, 3, 0.3, "lora_B")
		return nil
	}},
	{name: "prefix", apply: func(m model.Model) error {
		_, err := prefix.Apply(m, prefix.Config{NumVirtualTokens: 3})
		return err
	}},
}

// TestPacking checks that a packed batch gives every example its
// unpacked loss and the same gradients, for each method, for RoPE (LLaMA),
// learned positions (GPT-2) and per-layer RoPE tables and windows (the
// golden Gemma 3: local RoPE and a window of 3 on its sliding layers), on
// the CPU and on the CUDA backend (the emulator under make test).
func TestPacking(t *testing.T) {
	backends := []struct {
		name string
		open func(t *testing.T) engine.Backend
	}{
		{"cpu", func(*testing.T) engine.Backend { return cpu.New() }},
		{"cuda", func(t *testing.T) engine.Backend { return CUDABackend(t) }},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			be := b.open(t)
			for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2, hfconfig.ArchGemma3} {
				for _, meth := range packingMethods {
					if meth.cpuOnly && b.name != "cpu" {
						continue
					}
					if arch == hfconfig.ArchGemma3 && meth.name == "prefix" {
						continue // refused: TestPackingRefusesPrefixUnderWindows
					}
					t.Run(arch+"/"+meth.name, func(t *testing.T) {
						m := packingModel(t, be, arch)
						require.NoError(t, meth.apply(m))
						worst := CheckPacking(t, m, 1e-5)
						t.Logf("largest relative difference: %.3g", worst)
					})
				}
			}
		})
	}
}

// packingModel returns TinyOn's model of arch, or for Gemma 3 the golden
// gemma3 model.
func packingModel(t *testing.T, be engine.Backend, arch string) model.Model {
	t.Helper()
	if arch != hfconfig.ArchGemma3 {
		return TinyOn(t, be, arch, 5)
	}
	m, err := model.Load(filepath.Join("..", "..", "..", "testdata", "golden", "gemma3"), be)
	require.NoError(t, err)
	return m
}

// TestPackingRefusedWithVirtualTokens checks that prompt tuning, whose
// virtual tokens sit in front of each sequence, refuses packed batches.
func TestPackingRefusedWithVirtualTokens(t *testing.T) {
	m := Tiny(t, hfconfig.ArchLlama, 5)
	_, err := prompt.ApplyPromptTuning(m, prompt.TuningConfig{NumVirtualTokens: 2})
	require.NoError(t, err)
	hb := onlyBatch(t, PackingData(m.Config().VocabSize, 1), true)
	_, err = train.ForwardBatch(m, hb, true, 1)
	require.ErrorContains(t, err, "packed batches cannot be used with 2 virtual tokens")
}

// TestPackingRefusesPrefixUnderWindows checks that prefix tuning refuses
// packed batches on a model whose sliding windows would hide part of the
// prefix: the kernels measure a window by places in the packed sequence,
// so an example packed after another would lose prefix keys it sees
// unpacked.
func TestPackingRefusesPrefixUnderWindows(t *testing.T) {
	m := packingModel(t, cpu.New(), hfconfig.ArchGemma3)
	_, err := prefix.Apply(m, prefix.Config{NumVirtualTokens: 3})
	require.NoError(t, err)
	hb := onlyBatch(t, PackingData(m.Config().VocabSize, 1), true)
	_, err = train.ForwardBatch(m, hb, true, 1)
	require.ErrorContains(t, err, "packed batches cannot be used with a 3-token prefix on layer 0's sliding window of 3")
}
