package methods_test

import (
	"testing"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/methods/freeze"
	"github.com/gotune/gotune/methods/internal/methodtest"
	"github.com/gotune/gotune/methods/lora"
)

// BenchmarkMethodStep measures one optimizer step of the same model
// under full fine-tuning, Freeze, LoRA and DoRA (see methodtest.BenchStep
// for the model, the batch and what is reported).
func BenchmarkMethodStep(b *testing.B) {
	methods := []methodtest.BenchMethod{
		{Name: "full", Apply: nil},
		{Name: "freeze-last2", Apply: func(m model.Model) error {
			_, err := freeze.Apply(m, freeze.Config{TrainableLayers: 2, Modules: []string{freeze.All}})
			return err
		}},
		{Name: "freeze-last2-mlp", Apply: func(m model.Model) error {
			_, err := freeze.Apply(m, freeze.Config{TrainableLayers: 2, Modules: []string{"mlp"}})
			return err
		}},
		{Name: "freeze-first2", Apply: func(m model.Model) error {
			_, err := freeze.Apply(m, freeze.Config{TrainableLayers: -2, Modules: []string{freeze.All}})
			return err
		}},
		{Name: "lora-qv-r8", Apply: func(m model.Model) error {
			_, err := lora.Apply(m, lora.Config{R: 8, Alpha: 16, Targets: []string{"q_proj", "v_proj"}})
			return err
		}},
		{Name: "lora-all-r16", Apply: func(m model.Model) error {
			_, err := lora.Apply(m, lora.Config{R: 16, Alpha: 32, Targets: []string{lora.AllLinear}})
			return err
		}},
		{Name: "lora-all-r16-dropout", Apply: func(m model.Model) error {
			_, err := lora.Apply(m, lora.Config{R: 16, Alpha: 32, Dropout: 0.1, Targets: []string{lora.AllLinear}})
			return err
		}},
		{Name: "dora-qv-r8", Apply: func(m model.Model) error {
			_, err := lora.Apply(m, lora.Config{R: 8, Alpha: 16, Targets: []string{"q_proj", "v_proj"}, DoRA: true})
			return err
		}},
	}
	methodtest.BenchStep(b, methods)
}
