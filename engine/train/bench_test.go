package train

import (
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/model"
)

// BenchmarkFullStepTiny measures one full fine-tuning optimizer step of
// the tiny LLaMA in testdata/tiny (125k parameters) on 8 sequences of its
// data, reporting counted tokens per second.
func BenchmarkFullStepTiny(b *testing.B) {
	be := cpu.New()
	m, err := model.Load("../../testdata/tiny/llama", be)
	if err != nil {
		b.Fatal(err)
	}
	ds, err := data.Load("../../testdata/tiny/data.jsonl", data.LoadOptions{VocabSize: 256})
	if err != nil {
		b.Fatal(err)
	}
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: 8, SeqLen: 128})
	if err != nil {
		b.Fatal(err)
	}
	cfg := baseConfig()
	cfg.Steps = b.N + 1
	tr, err := New(m, loader, cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tr.Step(); err != nil { // warm up activation buffers
		b.Fatal(err)
	}
	tokens := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := tr.Step()
		if err != nil {
			b.Fatal(err)
		}
		tokens += s.Tokens
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}
