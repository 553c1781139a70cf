package methods_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/adapter"
	"github.com/gotune/gotune/methods/freeze"
	"github.com/gotune/gotune/methods/internal/methodtest"
	"github.com/gotune/gotune/methods/lora"
	"github.com/gotune/gotune/methods/prefix"
	"github.com/gotune/gotune/methods/prompt"
	"github.com/stretchr/testify/require"
)

// methodCase installs a method on a freshly loaded model (returning what
// saves it; nil: the whole model) and reloads what it saved on a fresh
// base model (nil: the saved folder is a whole model).
type methodCase struct {
	name   string
	apply  func(m model.Model) (train.Saver, error)
	reload func(m model.Model, dir string) error
}

// everyMethod is one configuration of each method and variant, small
// enough for the golden models.
func everyMethod() []methodCase {
	loraCase := func(name string, cfg lora.Config) methodCase {
		return methodCase{name,
			func(m model.Model) (train.Saver, error) {
				if cfg.Targets == nil {
					cfg.Targets = lora.DefaultTargets(m) // PEFT's: q_proj, v_proj
				}
				return lora.Apply(m, cfg)
			},
			func(m model.Model, dir string) error {
				_, err := lora.Load(m, dir, lora.LoadOptions{Frozen: true})
				return err
			}}
	}
	adapterCase := func(v adapter.Variant) methodCase {
		return methodCase{"adapter-" + string(v),
			func(m model.Model) (train.Saver, error) {
				return adapter.Apply(m, adapter.Config{Variant: v, BottleneckSize: 8, Activation: "relu", Scaling: 1, Seed: 4})
			},
			func(m model.Model, dir string) error {
				_, err := adapter.Load(m, dir, adapter.LoadOptions{Frozen: true})
				return err
			}}
	}
	promptReload := func(m model.Model, dir string) error {
		_, err := prompt.Load(m, dir, prompt.LoadOptions{Frozen: true})
		return err
	}
	prefixCase := func(name string, cfg prefix.Config) methodCase {
		return methodCase{name,
			func(m model.Model) (train.Saver, error) { return prefix.Apply(m, cfg) },
			func(m model.Model, dir string) error {
				_, err := prefix.Load(m, dir, prefix.LoadOptions{Frozen: true})
				return err
			}}
	}
	return []methodCase{
		{"full", func(m model.Model) (train.Saver, error) {
			for _, p := range m.Params() {
				model.SetTrainable(p, true)
			}
			return nil, nil
		}, nil},
		{"freeze", func(m model.Model) (train.Saver, error) {
			_, err := freeze.Apply(m, freeze.Config{TrainableLayers: 1, Modules: []string{freeze.All}})
			return nil, err
		}, nil},
		loraCase("lora", lora.Config{R: 4, Alpha: 8, Seed: 1}),
		loraCase("rslora", lora.Config{R: 4, Alpha: 8, RSLoRA: true, Targets: []string{lora.AllLinear}, Seed: 1}),
		loraCase("dora", lora.Config{R: 4, Alpha: 8, DoRA: true, Targets: []string{lora.AllLinear}, Seed: 1}),
		adapterCase(adapter.Houlsby), adapterCase(adapter.Pfeiffer), adapterCase(adapter.Parallel),
		{"prompt", func(m model.Model) (train.Saver, error) {
			return prompt.ApplyPromptTuning(m, prompt.TuningConfig{NumVirtualTokens: 3, Seed: 6})
		}, promptReload},
		{"ptuning-mlp", func(m model.Model) (train.Saver, error) {
			return prompt.ApplyPTuning(m, prompt.PTuningConfig{NumVirtualTokens: 3, Encoder: prompt.EncoderMLP, EncoderHidden: 16, Seed: 7})
		}, promptReload},
		{"ptuning-lstm", func(m model.Model) (train.Saver, error) {
			return prompt.ApplyPTuning(m, prompt.PTuningConfig{NumVirtualTokens: 3, Encoder: prompt.EncoderLSTM, EncoderHidden: 12, Seed: 7})
		}, promptReload},
		prefixCase("prefix", prefix.Config{NumVirtualTokens: 3, Seed: 5}),
		prefixCase("prefix-projection", prefix.Config{NumVirtualTokens: 3, Projection: true, EncoderHidden: 16, Seed: 5}),
	}
}

// TestEveryMethodOnGemma trains every method for three steps on the Gemma
// 2 and Gemma 3 golden models (their 8-token sequences run past the
// sliding window of 3) on the CPU: the loss must fall, and what the method
// saves must load into a fresh base model (or be a model) computing the
// trained model's logits. The PyTorch goldens check lora, prompt and
// prefix exactly (methods/*/golden_test.go); this checks that the others
// train and round-trip through their files.
func TestEveryMethodOnGemma(t *testing.T) {
	for _, set := range []string{"gemma2", "gemma3"} {
		for _, mc := range everyMethod() {
			t.Run(set+"/"+mc.name, func(t *testing.T) {
				trainAndReload(t, cpu.New(), filepath.Join("..", "testdata", "golden", set), mc)
			})
		}
	}
}

// TestEveryMethodOnGemmaCUDA is TestEveryMethodOnGemma on the CUDA
// backend (the emulator under make test), each method on one of the two
// models in turn (the emulator is slow).
func TestEveryMethodOnGemmaCUDA(t *testing.T) {
	be := methodtest.CUDABackend(t)
	for i, mc := range everyMethod() {
		set := []string{"gemma2", "gemma3"}[i%2]
		t.Run(set+"/"+mc.name, func(t *testing.T) {
			trainAndReload(t, be, filepath.Join("..", "testdata", "golden", set), mc)
		})
	}
}

// trainAndReload runs mc for three steps on the model in dir on be,
// saves it, reloads it on a fresh model and compares logits.
func trainAndReload(t *testing.T, be engine.Backend, dir string, mc methodCase) {
	m, err := model.Load(dir, be)
	require.NoError(t, err)
	saver, err := mc.apply(m)
	require.NoError(t, err)
	ds, err := data.Load(filepath.Join(dir, "data.jsonl"), data.LoadOptions{VocabSize: m.Config().VocabSize})
	require.NoError(t, err)
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: 2, SeqLen: 8})
	require.NoError(t, err)
	hb := loader.Batch(0, 0)
	tr, err := train.New(m, loader, train.Config{Steps: 3, GradAccum: 1, LR: 1e-2, Schedule: train.Constant,
		Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, MaxGradNorm: 1}, train.Options{})
	require.NoError(t, err)
	defer tr.Close()
	res, err := tr.Run(context.Background())
	require.NoError(t, err)
	require.Len(t, res.History, 3)
	require.Less(t, res.History[2].Loss, res.History[0].Loss, "the loss must fall")

	out := filepath.Join(t.TempDir(), "saved")
	if saver == nil {
		require.NoError(t, m.Save(out))
	} else {
		require.NoError(t, saver.Save(out))
	}
	trained := methodtest.Logits(t, m, hb)
	base := dir
	if mc.reload == nil {
		base = out
	}
	m2, err := model.Load(base, be)
	require.NoError(t, err)
	if mc.reload != nil {
		require.NoError(t, mc.reload(m2, out))
	}
	if e := golden.RelErr(methodtest.Logits(t, m2, hb), trained); e > 1e-6 {
		t.Errorf("logits of the reloaded %s: rel err %.3g from the trained model's", mc.name, e)
	}
}
