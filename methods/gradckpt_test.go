package methods_test

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/internal/ckpttest"
	"github.com/gotune/gotune/methods/adapter"
	"github.com/gotune/gotune/methods/freeze"
	"github.com/gotune/gotune/methods/lora"
	"github.com/gotune/gotune/methods/prefix"
	"github.com/gotune/gotune/methods/prompt"
	"github.com/stretchr/testify/require"
)

// gradCkptSizes is a small model with GQA, four layers (so frozen layers
// below the trainable ones exist) and a hidden size the CPU kernels tile.
var gradCkptSizes = hfconfig.Sizes{VocabSize: 96, Hidden: 32, Layers: 4, Heads: 4, KVHeads: 2, Intermediate: 48, MaxPos: 64}

// TestGradCheckpointBitIdentical runs every method with and without
// gradient checkpointing on the CPU and requires bit-identical losses and
// gradients (see ckpttest.RequireBitIdentical).
func TestGradCheckpointBitIdentical(t *testing.T) {
	for _, tc := range []struct {
		name  string
		gpt2  bool
		gemma string // a Gemma golden set's config instead of the LLaMA sizes
		apply ckpttest.Method
		// dropout turns on the family's base-model dropout (GPT-2: all
		// three pdrops), whose masks recomputation must draw again.
		dropout bool
	}{
		{name: "full-gemma2", gemma: "gemma2"},
		{name: "lora-dropout-gemma3", gemma: "gemma3", apply: loraApply(lora.Config{R: 4, Alpha: 8, Dropout: 0.25, Targets: []string{lora.AllLinear}, Seed: 3})},
		{name: "adapter-houlsby-gemma3", gemma: "gemma3", apply: func(m model.Model) error {
			_, err := adapter.Apply(m, adapter.Config{Variant: adapter.Houlsby, BottleneckSize: 8, Activation: "relu", Scaling: 1, Seed: 4})
			return err
		}},
		{name: "full-gemma2-bf16", gemma: "gemma2", apply: bf16(nil)},
		{name: "full-llama"},
		{name: "full-gpt2", gpt2: true},
		{name: "freeze-last2", apply: func(m model.Model) error {
			_, err := freeze.Apply(m, freeze.Config{TrainableLayers: 2, Modules: []string{freeze.All}})
			return err
		}},
		{name: "freeze-last-mlp", apply: func(m model.Model) error {
			_, err := freeze.Apply(m, freeze.Config{TrainableLayers: 1, Modules: []string{"mlp"}})
			return err
		}},
		{name: "lora-dropout-llama", apply: loraApply(lora.Config{R: 4, Alpha: 8, Dropout: 0.25, Targets: []string{lora.AllLinear}, Seed: 3})},
		{name: "lora-dropout-gpt2", gpt2: true, apply: loraApply(lora.Config{R: 4, Alpha: 8, Dropout: 0.25, Targets: []string{lora.AllLinear}, Seed: 3})},
		{name: "dora-dropout", apply: loraApply(lora.Config{R: 4, Alpha: 8, Dropout: 0.25, Targets: []string{"q_proj", "v_proj"}, DoRA: true, Seed: 3})},
		{name: "adapter-houlsby", apply: func(m model.Model) error {
			_, err := adapter.Apply(m, adapter.Config{Variant: adapter.Houlsby, BottleneckSize: 8, Activation: "relu", Scaling: 1, Seed: 4})
			return err
		}},
		{name: "adapter-parallel-gpt2", gpt2: true, apply: func(m model.Model) error {
			_, err := adapter.Apply(m, adapter.Config{Variant: adapter.Parallel, BottleneckSize: 8, Activation: "silu", Scaling: 2, Seed: 4})
			return err
		}},
		{name: "prefix", apply: func(m model.Model) error {
			_, err := prefix.Apply(m, prefix.Config{NumVirtualTokens: 3, Seed: 5})
			return err
		}},
		{name: "prompt-tuning", apply: func(m model.Model) error {
			_, err := prompt.ApplyPromptTuning(m, prompt.TuningConfig{NumVirtualTokens: 3, Seed: 6})
			return err
		}},
		{name: "full-bf16", apply: bf16(nil)},
		{name: "full-gpt2-base-dropout", gpt2: true, dropout: true},
		{name: "lora-llama-attention-dropout", dropout: true, apply: loraApply(lora.Config{R: 4, Alpha: 8, Targets: []string{lora.AllLinear}, Seed: 3})},
		{name: "lora-dropout-bf16", apply: bf16(loraApply(lora.Config{R: 4, Alpha: 8, Dropout: 0.25, Targets: []string{lora.AllLinear}, Seed: 3}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newCfg, sizes := hfconfig.NewLlama, gradCkptSizes
			if tc.gpt2 {
				newCfg, sizes.KVHeads = hfconfig.NewGPT2, sizes.Heads
			}
			cfg, err := newCfg(sizes)
			if tc.gemma != "" {
				cfg, err = hfconfig.Load(filepath.Join("..", "testdata", "golden", tc.gemma))
			}
			require.NoError(t, err)
			if tc.dropout {
				cfg.AttentionDropout = 0.2
				if tc.gpt2 {
					cfg.ResidDropout, cfg.EmbdDropout = 0.15, 0.1
				}
			}
			ckpttest.RequireBitIdentical(t, cpu.New(), ckpttest.NewSetup(cfg, tc.apply), ckpttest.Shape{B: 2, T: 7, Passes: 3})
		})
	}
}

// bf16 applies method (nil: full fine-tuning) and then the bfloat16
// mixed-precision policy, as the trainer does.
func bf16(method ckpttest.Method) ckpttest.Method {
	return func(m model.Model) error {
		if method == nil {
			for _, p := range m.Params() {
				model.SetTrainable(p, true)
			}
		} else if err := method(m); err != nil {
			return err
		}
		return m.(interface {
			SetPrecision(engine.Precision) error
		}).SetPrecision(engine.PrecisionBF16)
	}
}

func loraApply(cfg lora.Config) ckpttest.Method {
	return func(m model.Model) error {
		_, err := lora.Apply(m, cfg)
		return err
	}
}

// TestGradCheckpointSavesMemory measures, through the CPU backend's
// memory counters, what one training pass of an 8-layer model allocates
// above its weights and gradients, with and without checkpointing:
// checkpointing keeps one layer's activations plus each layer's input
// instead of every layer's activations, so it must need well under half.
func TestGradCheckpointSavesMemory(t *testing.T) {
	sizes := hfconfig.Sizes{VocabSize: 64, Hidden: 64, Layers: 8, Heads: 4, KVHeads: 2, Intermediate: 160, MaxPos: 64}
	cfg, err := hfconfig.NewLlama(sizes)
	require.NoError(t, err)
	activations := func(ckpt bool) uint64 {
		be := cpu.New()
		m, err := model.New(cfg, be, 7)
		require.NoError(t, err)
		for _, p := range m.Params() {
			model.SetTrainable(p, true)
		}
		m.SetGradCheckpoint(ckpt)
		bt := ckpttest.RandomBatch(be, 3, 4, 32, sizes.VocabSize)
		runtime.GC()
		be.ResetPeakMemory()
		base := be.MemoryStats().InUse
		_, err = m.ForwardBackward(bt, true, 1/float32(bt.Counted))
		require.NoError(t, err)
		return be.MemoryStats().Peak - base
	}
	plain, ckpt := activations(false), activations(true)
	t.Logf("one pass above weights and gradients: %d bytes without checkpointing, %d with", plain, ckpt)
	require.Less(t, 2*ckpt, plain)
}

// TestGradCheckpointFusedFamilies: the same bit-identity on the golden
// configurations of Phi-3 (fused qkv_proj and gate_up_proj, partial
// rotary, longrope) and GLM-4 (sandwich norms, interleaved partial
// rotary), with random weights.
func TestGradCheckpointFusedFamilies(t *testing.T) {
	loraAll := loraApply(lora.Config{R: 4, Alpha: 8, Dropout: 0.25, Targets: []string{lora.AllLinear}, Seed: 3})
	for _, fam := range []string{"phi3", "glm4"} {
		cfg, err := hfconfig.Load("../testdata/golden/" + fam)
		require.NoError(t, err)
		for _, tc := range []struct {
			name  string
			apply ckpttest.Method
		}{
			{name: "full"},
			{name: "lora-dropout", apply: loraAll},
			{name: "adapter-houlsby", apply: func(m model.Model) error {
				_, err := adapter.Apply(m, adapter.Config{Variant: adapter.Houlsby, BottleneckSize: 8, Activation: "relu", Scaling: 1, Seed: 4})
				return err
			}},
			{name: "lora-dropout-bf16", apply: bf16(loraAll)},
		} {
			t.Run(fam+"/"+tc.name, func(t *testing.T) {
				ckpttest.RequireBitIdentical(t, cpu.New(), ckpttest.NewSetup(cfg, tc.apply), ckpttest.Shape{B: 2, T: 7, Passes: 3})
			})
		}
	}
}
