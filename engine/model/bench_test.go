package model

import (
	"fmt"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
)

// BenchmarkTrainStep measures one full fine-tuning forward+backward pass
// (no optimizer) of a small LLaMA and GPT-2 on the CPU backend, and the
// same with everything below the top layer frozen.
func BenchmarkTrainStep(b *testing.B) {
	const B, T = 4, 128
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2} {
		for _, frozen := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/frozenBelowTop=%v", arch, frozen), func(b *testing.B) {
				s := hfconfig.Sizes{VocabSize: 1024, Hidden: 256, Layers: 4, Heads: 8, KVHeads: 4, Intermediate: 688, MaxPos: 256}
				var cfg *Config
				var err error
				if arch == hfconfig.ArchGPT2 {
					s.KVHeads, s.Intermediate = 0, 1024
					cfg, err = hfconfig.NewGPT2(s)
				} else {
					cfg, err = hfconfig.NewLlama(s)
				}
				if err != nil {
					b.Fatal(err)
				}
				m, err := New(cfg, cpu.New(), 1)
				if err != nil {
					b.Fatal(err)
				}
				if frozen {
					top := fmt.Sprintf(".%d.", s.Layers-1)
					for _, p := range m.Params() {
						SetTrainable(p, contains(p.Name, top))
					}
				}
				bt := randomBatch(m.Backend(), B, T, s.VocabSize, 1)
				if _, err := m.ForwardBackward(bt, true, 1); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := m.ForwardBackward(bt, true, 1); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(B*T*b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
