package methods_test

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/freeze"
	"github.com/gotune/gotune/methods/lora"
)

// benchSizes is a random LLaMA large enough for the methods' costs to
// separate: 8 layers, hidden 256, GQA 8/4 heads, intermediate 704, vocab
// 1024 (7.3M parameters), trained on batches of 4 sequences of 128 tokens.
var benchSizes = hfconfig.Sizes{VocabSize: 1024, Hidden: 256, Layers: 8, Heads: 8, KVHeads: 4, Intermediate: 704, MaxPos: 256}

const benchBatch, benchSeq = 4, 128

func heapMB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}

// BenchmarkMethodStep measures one optimizer step (forward, backward,
// clipping, AdamW) of the same model under each method — wall time and
// process CPU time ("cpu-ms/op", steadier on a shared machine) — and the memory
// the method adds to the bare weights once a step has run (gradients,
// AdamW moments, kept activations, adapter tensors): "MB-over-weights".
// On the CPU backend all of it is Go heap, so runtime.MemStats measures
// it exactly.
func BenchmarkMethodStep(b *testing.B) {
	methods := []struct {
		name  string
		apply func(m model.Model) error
	}{
		{"full", func(m model.Model) error { return nil }},
		{"freeze-last2", func(m model.Model) error {
			_, err := freeze.Apply(m, freeze.Config{TrainableLayers: 2, Modules: []string{freeze.All}})
			return err
		}},
		{"freeze-last2-mlp", func(m model.Model) error {
			_, err := freeze.Apply(m, freeze.Config{TrainableLayers: 2, Modules: []string{"mlp"}})
			return err
		}},
		{"freeze-first2", func(m model.Model) error {
			_, err := freeze.Apply(m, freeze.Config{TrainableLayers: -2, Modules: []string{freeze.All}})
			return err
		}},
		{"lora-qv-r8", func(m model.Model) error {
			_, err := lora.Apply(m, lora.Config{R: 8, Alpha: 16, Targets: []string{"q_proj", "v_proj"}})
			return err
		}},
		{"lora-all-r16", func(m model.Model) error {
			_, err := lora.Apply(m, lora.Config{R: 16, Alpha: 32, Targets: []string{lora.AllLinear}})
			return err
		}},
		{"lora-all-r16-dropout", func(m model.Model) error {
			_, err := lora.Apply(m, lora.Config{R: 16, Alpha: 32, Dropout: 0.1, Targets: []string{lora.AllLinear}})
			return err
		}},
		{"dora-qv-r8", func(m model.Model) error {
			_, err := lora.Apply(m, lora.Config{R: 8, Alpha: 16, Targets: []string{"q_proj", "v_proj"}, DoRA: true})
			return err
		}},
	}
	cfg, err := hfconfig.NewLlama(benchSizes)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ds := &data.Dataset{Name: "random"}
	for i := 0; i < 16; i++ {
		ids := make([]int32, benchSeq)
		for j := range ids {
			ids[j] = int32(rng.IntN(benchSizes.VocabSize))
		}
		ds.Examples = append(ds.Examples, data.Example{InputIDs: ids, Labels: ids})
	}
	for _, mt := range methods {
		b.Run(mt.name, func(b *testing.B) {
			base := heapMB()
			m, err := model.New(cfg, cpu.New(), 7)
			if err != nil {
				b.Fatal(err)
			}
			weights := heapMB() - base
			if err := mt.apply(m); err != nil {
				b.Fatal(err)
			}
			loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: benchBatch, SeqLen: benchSeq})
			if err != nil {
				b.Fatal(err)
			}
			tr, err := train.New(m, loader, train.Config{Steps: b.N + 1, GradAccum: 1, LR: 1e-4, Schedule: train.Constant,
				Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1}, train.Options{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tr.Step(); err != nil { // allocates gradients, moments, activations
				b.Fatal(err)
			}
			over := heapMB() - base - weights
			tokens := 0
			b.ReportAllocs()
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
			if c := cpuSeconds() - cpu0; c > 0 {
				b.ReportMetric(1e3*c/float64(b.N), "cpu-ms/op")
			}
			tp, all := train.CountParams(m.Params())
			b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(weights, "MB-weights")
			b.ReportMetric(over, "MB-over-weights")
			b.ReportMetric(float64(tp), "trainable")
			b.ReportMetric(float64(all), "params")
			tr.Close()
		})
	}
}
