package methodtest

import (
	"testing"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/methods/adapter"
	"github.com/gotune/gotune/methods/lora"
	"github.com/gotune/gotune/methods/prefix"
	"github.com/gotune/gotune/methods/prompt"
)

// BenchmarkStep measures one optimizer step of the same model under the
// adapter and prompt-learning methods, with full fine-tuning and LoRA for
// scale (see BenchStep for the model, the batch and what is reported).
func BenchmarkStep(b *testing.B) {
	methods := []BenchMethod{
		{Name: "full", Apply: nil},
		{Name: "lora-qv-r8", Apply: func(m model.Model) error {
			_, err := lora.Apply(m, lora.Config{R: 8, Alpha: 16, Targets: []string{"q_proj", "v_proj"}})
			return err
		}},
		{Name: "adapter-houlsby", Apply: func(m model.Model) error {
			_, err := adapter.Apply(m, adapter.Config{Variant: adapter.Houlsby, ReductionFactor: 16, Activation: "relu", Scaling: 1})
			return err
		}},
		{Name: "adapter-pfeiffer", Apply: func(m model.Model) error {
			_, err := adapter.Apply(m, adapter.Config{Variant: adapter.Pfeiffer, ReductionFactor: 16, Activation: "relu", Scaling: 1})
			return err
		}},
		{Name: "adapter-parallel", Apply: func(m model.Model) error {
			_, err := adapter.Apply(m, adapter.Config{Variant: adapter.Parallel, ReductionFactor: 16, Activation: "relu", Scaling: 1})
			return err
		}},
		{Name: "prompt-20", Apply: func(m model.Model) error {
			_, err := prompt.ApplyPromptTuning(m, prompt.TuningConfig{NumVirtualTokens: 20})
			return err
		}},
		{Name: "ptuning-mlp-20", Apply: func(m model.Model) error {
			_, err := prompt.ApplyPTuning(m, prompt.PTuningConfig{NumVirtualTokens: 20, Encoder: prompt.EncoderMLP})
			return err
		}},
		{Name: "ptuning-lstm-20", Apply: func(m model.Model) error {
			_, err := prompt.ApplyPTuning(m, prompt.PTuningConfig{NumVirtualTokens: 20, Encoder: prompt.EncoderLSTM, EncoderHidden: 128})
			return err
		}},
		{Name: "prefix-20", Apply: func(m model.Model) error {
			_, err := prefix.Apply(m, prefix.Config{NumVirtualTokens: 20})
			return err
		}},
		{Name: "prefix-20-projection", Apply: func(m model.Model) error {
			_, err := prefix.Apply(m, prefix.Config{NumVirtualTokens: 20, Projection: true, EncoderHidden: 256})
			return err
		}},
		{Name: "prefix-20-last-layer", Apply: func(m model.Model) error {
			_, err := prefix.Apply(m, prefix.Config{NumVirtualTokens: 20, Layers: []int{7}})
			return err
		}},
	}
	BenchStep(b, methods)
}
