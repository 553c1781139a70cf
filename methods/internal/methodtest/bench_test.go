package methodtest

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/adapter"
	"github.com/gotune/gotune/methods/lora"
	"github.com/gotune/gotune/methods/prefix"
	"github.com/gotune/gotune/methods/prompt"
)

// BenchmarkStep measures one optimizer step (forward, backward, clipping,
// AdamW) of every method on the same random LLaMA (vocab 1024, hidden
// 256, 8 layers, 8 heads, 4 KV heads, intermediate 704: 7.3M parameters,
// the model of methods' BenchmarkMethodStep) and the same batch of 4
// sequences of 128 tokens, reporting wall time, process CPU time per step
// ("cpu-ms/op", steadier on a shared machine), counted tokens per second
// and the Go heap in use after the step (the CPU backend's tensors live
// there).
func BenchmarkStep(b *testing.B) {
	methods := []struct {
		name  string
		apply func(m model.Model) error
	}{
		{"full", func(m model.Model) error { return nil }},
		{"lora-qv-r8", func(m model.Model) error {
			_, err := lora.Apply(m, lora.Config{R: 8, Alpha: 16, Targets: []string{"q_proj", "v_proj"}})
			return err
		}},
		{"adapter-houlsby", func(m model.Model) error {
			_, err := adapter.Apply(m, adapter.Config{Variant: adapter.Houlsby, ReductionFactor: 16, Activation: "relu", Scaling: 1})
			return err
		}},
		{"adapter-pfeiffer", func(m model.Model) error {
			_, err := adapter.Apply(m, adapter.Config{Variant: adapter.Pfeiffer, ReductionFactor: 16, Activation: "relu", Scaling: 1})
			return err
		}},
		{"adapter-parallel", func(m model.Model) error {
			_, err := adapter.Apply(m, adapter.Config{Variant: adapter.Parallel, ReductionFactor: 16, Activation: "relu", Scaling: 1})
			return err
		}},
		{"prompt-20", func(m model.Model) error {
			_, err := prompt.ApplyPromptTuning(m, prompt.TuningConfig{NumVirtualTokens: 20})
			return err
		}},
		{"ptuning-mlp-20", func(m model.Model) error {
			_, err := prompt.ApplyPTuning(m, prompt.PTuningConfig{NumVirtualTokens: 20, Encoder: prompt.EncoderMLP})
			return err
		}},
		{"ptuning-lstm-20", func(m model.Model) error {
			_, err := prompt.ApplyPTuning(m, prompt.PTuningConfig{NumVirtualTokens: 20, Encoder: prompt.EncoderLSTM, EncoderHidden: 128})
			return err
		}},
		{"prefix-20", func(m model.Model) error {
			_, err := prefix.Apply(m, prefix.Config{NumVirtualTokens: 20})
			return err
		}},
		{"prefix-20-projection", func(m model.Model) error {
			_, err := prefix.Apply(m, prefix.Config{NumVirtualTokens: 20, Projection: true, EncoderHidden: 256})
			return err
		}},
		{"prefix-20-last-layer", func(m model.Model) error {
			_, err := prefix.Apply(m, prefix.Config{NumVirtualTokens: 20, Layers: []int{7}})
			return err
		}},
	}
	for _, mt := range methods {
		b.Run(mt.name, func(b *testing.B) {
			cfg, err := hfconfig.NewLlama(hfconfig.Sizes{VocabSize: 1024, Hidden: 256, Layers: 8, Heads: 8, KVHeads: 4, Intermediate: 704, MaxPos: 256})
			if err != nil {
				b.Fatal(err)
			}
			m, err := model.New(cfg, cpu.New(), 1)
			if err != nil {
				b.Fatal(err)
			}
			if err := mt.apply(m); err != nil {
				b.Fatal(err)
			}
			ds := &data.Dataset{Name: "random"}
			rng := rand.New(rand.NewPCG(1, 2))
			for i := 0; i < 4; i++ {
				e := data.Example{InputIDs: make([]int32, 128)}
				for j := range e.InputIDs {
					e.InputIDs[j] = int32(rng.IntN(1024))
				}
				e.Labels = e.InputIDs
				ds.Examples = append(ds.Examples, e)
			}
			loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: 4, SeqLen: 128})
			if err != nil {
				b.Fatal(err)
			}
			tr, err := train.New(m, loader, train.Config{Steps: b.N + 1, GradAccum: 1, LR: 1e-4, Schedule: train.Constant, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1}, train.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tr.Step(); err != nil { // allocates activation buffers
				b.Fatal(err)
			}
			tokens := 0
			cpu0 := cpuSeconds()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := tr.Step()
				if err != nil {
					b.Fatal(err)
				}
				tokens += s.Tokens
			}
			b.StopTimer()
			b.ReportMetric((cpuSeconds()-cpu0)*1e3/float64(b.N), "cpu-ms/op")
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
			trainable, _ := train.CountParams(m.Params())
			b.ReportMetric(float64(trainable), "trainable")
			runtime.KeepAlive(tr)
		})
	}
}
