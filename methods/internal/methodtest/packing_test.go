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

// packingModels are the models TestPacking checks: RoPE (LLaMA), learned
// positions (GPT-2), and the golden Phi-3 (partial rotary of the fused
// qkv_proj, longrope: the golden's original context of 6 is below the
// longest example, so packed and unpacked take the long factors) and
// GLM-4 (interleaved partial rotary, sandwich norms) and Gemma 3 (local
// RoPE tables and windows of 3 on its sliding layers, (1 + w) sandwich
// norms) checkpoints with redrawn weights.
var packingModels = []struct {
	name string
	make func(t *testing.T, be engine.Backend) model.Model
	// tol is the relative difference allowed between packed and
	// unpacked: float32 rounding of sums taken in another order.
	tol float64
	// cudaFullOnly: what the family adds (its RoPE layout, partial
	// rotary, longrope) is the same under every method, so on the
	// emulator full fine-tuning alone checks it.
	cudaFullOnly bool
	// windows: sliding windows shorter than the batch, under which
	// prefix tuning refuses packed batches
	// (TestPackingRefusesPrefixUnderWindows).
	windows bool
}{
	{hfconfig.ArchLlama, func(t *testing.T, be engine.Backend) model.Model { return TinyOn(t, be, hfconfig.ArchLlama, 5) }, 1e-5, false, false},
	{hfconfig.ArchGPT2, func(t *testing.T, be engine.Backend) model.Model { return TinyOn(t, be, hfconfig.ArchGPT2, 5) }, 1e-5, false, false},
	// longrope's attention factor (1.5 at the golden's 64/6 context)
	// scales q·k by about 2.3 on the rotated part: sharper attention, and
	// LoRA's gradients differ by 2e-6 to 2e-5 over seeds.
	{"phi3", goldenModel("phi3"), 5e-5, true, false},
	{"glm4", goldenModel("glm4"), 1e-5, true, false},
	{"gemma3", goldenModel("gemma3"), 1e-5, true, true},
}

// goldenModel loads testdata/golden/<name> with weights redrawn by
// RandomizeBase.
func goldenModel(name string) func(t *testing.T, be engine.Backend) model.Model {
	return func(t *testing.T, be engine.Backend) model.Model {
		m, err := model.Load(filepath.Join("../../../testdata/golden", name), be)
		require.NoError(t, err)
		RandomizeBase(m, 5)
		return m
	}
}

// TestPacking checks that a packed batch gives every example its
// unpacked loss and the same gradients, for each method and model of
// packingModels, on the CPU and on the CUDA backend (the emulator under
// make test).
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
			for _, pm := range packingModels {
				for _, meth := range packingMethods {
					if b.name != "cpu" && (meth.cpuOnly || pm.cudaFullOnly && meth.name != "full") {
						continue
					}
					if pm.windows && meth.name == "prefix" {
						continue // refused: TestPackingRefusesPrefixUnderWindows
					}
					t.Run(pm.name+"/"+meth.name, func(t *testing.T) {
						m := pm.make(t, be)
						require.NoError(t, meth.apply(m))
						worst := CheckPacking(t, m, pm.tol)
						t.Logf("largest relative difference: %.3g", worst)
					})
				}
			}
		})
	}
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
	m := goldenModel("gemma3")(t, cpu.New())
	_, err := prefix.Apply(m, prefix.Config{NumVirtualTokens: 3})
	require.NoError(t, err)
	hb := onlyBatch(t, PackingData(m.Config().VocabSize, 1), true)
	_, err = train.ForwardBatch(m, hb, true, 1)
	require.ErrorContains(t, err, "packed batches cannot be used with a 3-token prefix on layer 0's sliding window of 3")
}
