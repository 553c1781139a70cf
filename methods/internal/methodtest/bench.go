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
)

// BenchSizes is the random LLaMA of BenchStep, large enough for the
// methods' costs to separate: 8 layers, hidden 256, GQA 8/4 heads,
// intermediate 704, vocab 1024 (6.4M parameters).
var BenchSizes = hfconfig.Sizes{VocabSize: 1024, Hidden: 256, Layers: 8, Heads: 8, KVHeads: 4, Intermediate: 704, MaxPos: 256}

// BenchBatch and BenchSeq are BenchStep's batch: 4 sequences of 128 tokens.
const BenchBatch, BenchSeq = 4, 128

// BenchMethod is one configuration BenchStep measures.
type BenchMethod struct {
	// Name names the sub-benchmark.
	Name string
	// Apply installs the method on a fresh model (nil: full fine-tuning).
	Apply func(m model.Model) error
}

// BenchStep measures, as one sub-benchmark per method, one optimizer step
// (forward, backward, clipping, AdamW) of the same random model
// (BenchSizes) on random batches (BenchBatch × BenchSeq): wall time,
// process CPU time ("cpu-ms/op", steadier on a shared machine), counted
// tokens per second, the weights' memory ("MB-weights"), the memory the
// method adds to the bare weights once a step has run (gradients, AdamW
// moments, kept activations, adapter tensors: "MB-over-weights"), the
// Go heap in use after the steps ("heap-MiB") and the trainable and total
// parameter counts. On the CPU backend every tensor is Go heap, so
// runtime.MemStats measures the memory exactly.
func BenchStep(b *testing.B, methods []BenchMethod) {
	cfg, err := hfconfig.NewLlama(BenchSizes)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ds := &data.Dataset{Name: "random"}
	for i := 0; i < 16; i++ {
		ids := make([]int32, BenchSeq)
		for j := range ids {
			ids[j] = int32(rng.IntN(BenchSizes.VocabSize))
		}
		ds.Examples = append(ds.Examples, data.Example{InputIDs: ids, Labels: ids})
	}
	for _, mt := range methods {
		b.Run(mt.Name, func(b *testing.B) {
			base := heapMB()
			m, err := model.New(cfg, cpu.New(), 7)
			if err != nil {
				b.Fatal(err)
			}
			weights := heapMB() - base
			if mt.Apply != nil {
				if err := mt.Apply(m); err != nil {
					b.Fatal(err)
				}
			}
			loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: BenchBatch, SeqLen: BenchSeq})
			if err != nil {
				b.Fatal(err)
			}
			tr, err := train.New(m, loader, train.Config{Steps: b.N + 1, GradAccum: 1, LR: 1e-4, Schedule: train.Constant,
				Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1}, train.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
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
			b.ReportMetric(heapMB()-base, "heap-MiB")
			b.ReportMetric(float64(tp), "trainable")
			b.ReportMetric(float64(all), "params")
		})
	}
}

// heapMB returns the Go heap in use after a collection, in MiB.
func heapMB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}
