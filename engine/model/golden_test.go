package model

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/arch"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/internal/golden"
	"github.com/stretchr/testify/assert"
)

// TestGolden compares logits, loss and every parameter's gradient with the
// PyTorch reference values of each golden set.
func TestGolden(t *testing.T) {
	for _, name := range []string{"llama-gqa", "qwen2-tied", "gpt2", "qwen3", "olmo2", "granite", "mistral-swa", "qwen2-swa", "gpt2-dropout", "llama-dropout", "phi3", "phi3-dropout", "glm", "glm4", "gemma2", "gemma3"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(goldenRoot, name)
			if _, err := os.Stat(filepath.Join(dir, "meta.json")); err != nil {
				t.Skipf("golden set %s not present: %v", dir, err)
			}
			g, err := golden.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			be := cpu.New()
			m, err := Load(dir, be)
			if err != nil {
				t.Fatal(err)
			}
			tr := m.(interface{ core() *Transformer }).core()
			ids, labels := readData(t, g.Path(g.Meta.Data))
			run := g.Meta.Runs[0]
			ids, labels = ids[:run.BatchSize], labels[:run.BatchSize]
			bt := makeBatch(be, ids, labels)
			if bt.Counted != run.CountedTokens[0] {
				t.Fatalf("batch counts %d targets, golden run %d", bt.Counted, run.CountedTokens[0])
			}
			wantLogits, _ := g.Tensor("logits")
			wantLoss, _ := g.Tensor("loss")

			// Forward only: the training path's logits and loss.
			sum, err := m.ForwardBackward(bt, false, 1)
			if err != nil {
				t.Fatal(err)
			}
			logitsErr := golden.RelErr(cpu.Float32s(tr.last.logits), wantLogits)
			if logitsErr > 1e-5 {
				t.Errorf("logits: relative error %.3g > 1e-5", logitsErr)
			}
			loss := float32(sum / float64(bt.Counted))
			if e := golden.RelErr([]float32{loss}, wantLoss); e > 1e-5 {
				t.Errorf("loss %v, want %v (relative error %.3g)", loss, wantLoss[0], e)
			}

			// The inference path gives the same logits.
			lg, err := m.Logits(nil, flat(ids), bt.B, bt.T, true)
			if err != nil {
				t.Fatal(err)
			}
			if e := golden.RelErr(cpu.Float32s(lg), wantLogits); e > 1e-5 {
				t.Errorf("Logits(all): relative error %.3g > 1e-5", e)
			}

			// Backward: the gradient of the mean loss, in the training pass
			// of the run's first step (its dropout masks, if any).
			m.SetDropoutSeed(run.Seed)
			m.SetTrainingPass(engine.TrainingPass{Step: 1})
			sum2, err := m.ForwardBackward(bt, true, 1/float32(bt.Counted))
			if err != nil {
				t.Fatal(err)
			}
			if first, _ := g.Tensor("losses"); m.Config().HasDropout() {
				if e := golden.RelErr([]float32{float32(sum2 / float64(bt.Counted))}, first[:1]); e > 1e-5 {
					t.Errorf("training loss with dropout %v, want %v (relative error %.3g)", sum2/float64(bt.Counted), first[0], e)
				}
			} else if sum2 != sum {
				t.Errorf("loss with backward %v differs from forward-only %v", sum2, sum)
			}
			params := map[string]bool{}
			for _, p := range m.Params() {
				params[p.Name] = true
			}
			worst := 0.0
			for _, gp := range g.Meta.Params {
				p, ok := m.Param(gp.Name)
				if !ok {
					t.Errorf("model has no parameter %q", gp.Name)
					continue
				}
				if p.Decay != gp.Decay {
					t.Errorf("%s: Decay %v, golden %v", gp.Name, p.Decay, gp.Decay)
				}
				want, _ := g.Tensor("grad." + gp.Name)
				e := golden.RelErr(gradOf(p), want)
				if e > 1e-4 {
					t.Errorf("grad %s: relative error %.3g > 1e-4", gp.Name, e)
				}
				worst = max(worst, e)
				delete(params, gp.Name)
			}
			for n := range params {
				t.Errorf("model parameter %q is not in the golden set", n)
			}
			t.Logf("logits relative error %.3g; worst gradient relative error %.3g over %d parameters", logitsErr, worst, len(g.Meta.Params))
		})
	}
}

// TestGemmaEmbedScaleDtype checks that Gemma's sqrt(hidden) is computed
// in the model dtype, as transformers' normalizer is: float32 in a
// float32 run, bfloat16 under PrecisionBF16 (sqrt(3072) = 55.4256 becomes
// 55.5), for the whole input (Gemma 2) or the token embeddings (Gemma 3).
func TestGemmaEmbedScaleDtype(t *testing.T) {
	for _, tc := range []struct {
		scale          arch.EmbedScale
		prec           engine.Precision
		inputs, tokens float32
	}{
		{arch.ScaleInputs, engine.PrecisionFP32, float32(math.Sqrt(3072)), 1},
		{arch.ScaleInputs, engine.PrecisionBF16, 55.5, 1},
		{arch.ScaleTokens, engine.PrecisionBF16, 1, 55.5},
		{arch.NoEmbedScale, engine.PrecisionBF16, 1, 1},
	} {
		m := &Transformer{d: dims{hidden: 3072, embMul: 1, embScale: tc.scale}, prec: tc.prec}
		in, tok := m.embedMuls()
		assert.Equal(t, []float32{tc.inputs, tc.tokens}, []float32{in, tok}, "%v %v", tc.scale, tc.prec)
		assert.Equal(t, tok, m.TokenEmbeddingScale())
	}
	assert.InDelta(t, 55.4256, float64(float32(math.Sqrt(3072))), 1e-4)
}
