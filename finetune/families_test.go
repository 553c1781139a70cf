package finetune_test

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/quant"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/finetune"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/lora"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fusedFamilies are the golden models of the families with fused
// projections, partial rotary and sandwich norms (PyTorch goldens check
// full fine-tuning and LoRA on them; this file checks everything else
// runs).
var fusedFamilies = []string{"phi3", "glm", "glm4"}

const goldenDir = "../testdata/golden"

// TestEveryMethodOnFusedFamilies trains every method of Methods() for two
// steps on Phi-3, GLM and GLM-4, saves the result (adapter folder or full
// weights), loads it into a fresh model and checks that the loaded model
// computes the trained one's logits and generates its greedy tokens.
func TestEveryMethodOnFusedFamilies(t *testing.T) {
	for _, fam := range fusedFamilies {
		base := filepath.Join(goldenDir, fam)
		for _, name := range finetune.Methods().Names() {
			t.Run(fam+"/"+name, func(t *testing.T) {
				meth := finetune.Methods()[name]
				be := cpu.New()
				m, err := model.Load(base, be)
				require.NoError(t, err)
				o := smallMethodOptions(base)
				if name == "lora" {
					o.LoRA.DoRA, o.LoRA.Targets = true, []string{lora.AllLinear}
				}
				saver, err := meth.Apply(m, &o)
				require.NoError(t, err)
				hist := trainSteps(t, m, base, saver, 2)
				for _, s := range hist {
					require.False(t, math.IsNaN(s.Loss) || math.IsInf(s.Loss, 0), "step %d loss %v", s.Step, s.Loss)
				}

				out := filepath.Join(t.TempDir(), "out")
				var back model.Model
				if saver != nil {
					require.NoError(t, saver.Save(out))
					back, err = model.Load(base, cpu.New())
					require.NoError(t, err)
					require.NoError(t, meth.Load(back, out))
				} else {
					require.NoError(t, m.Save(out))
					back, err = model.Load(out, cpu.New())
					require.NoError(t, err)
				}
				ids := []int32{5, 9, 13, 17, 21, 25, 29}
				e := golden.RelErr(logits(back, ids), logits(m, ids))
				assert.LessOrEqual(t, e, 1e-6, "reloaded logits: relative error")

				want := greedy(t, m, ids[:3])
				assert.Equal(t, want, greedy(t, back, ids[:3]), "greedy tokens of the reloaded model")
				assert.Len(t, want, 6)
			})
		}
	}
}

// TestMergeSavesHFLayout merges a trained LoRA adapter (every linear
// layer, qkv_proj and gate_up_proj included) into each family's weights,
// saves the merged model in Hugging Face layout and loads it back: same
// tensor names as the base checkpoint, and the logits of base + adapter.
func TestMergeSavesHFLayout(t *testing.T) {
	for _, fam := range fusedFamilies {
		t.Run(fam, func(t *testing.T) {
			base := filepath.Join(goldenDir, fam)
			m, err := model.Load(base, cpu.New())
			require.NoError(t, err)
			o := smallMethodOptions(base)
			o.LoRA.Targets = []string{lora.AllLinear}
			saver, err := finetune.Methods()["lora"].Apply(m, &o)
			require.NoError(t, err)
			trainSteps(t, m, base, saver, 2)
			adapterDir := filepath.Join(t.TempDir(), "adapter")
			require.NoError(t, saver.Save(adapterDir))

			merged, layers, err := finetune.LoadMerged(cpu.New(), finetune.MergeOptions{Model: base, Adapter: adapterDir})
			require.NoError(t, err)
			assert.Positive(t, layers)
			out := filepath.Join(t.TempDir(), "merged")
			require.NoError(t, merged.Save(out))
			assert.Equal(t, tensorNames(t, base), tensorNames(t, out))
			back, err := model.Load(out, cpu.New())
			require.NoError(t, err)
			ids := []int32{3, 8, 13, 21, 34, 55}
			plain, err := model.Load(base, cpu.New())
			require.NoError(t, err)
			e := golden.RelErr(logits(back, ids), logits(m, ids))
			assert.LessOrEqual(t, e, 1e-5, "merged logits vs base + adapter")
			assert.Greater(t, golden.RelErr(logits(plain, ids), logits(m, ids)), 1e-3, "the adapter changes the logits")
		})
	}
}

// TestRunPrecisionsOnFusedFamilies runs the library's training path on
// each family with bfloat16 compute and gradient checkpointing, and with
// a QLoRA (nf4) base: the runs finish with finite losses.
func TestRunPrecisionsOnFusedFamilies(t *testing.T) {
	for _, fam := range fusedFamilies {
		for _, variant := range []string{"bf16-gradckpt", "qlora"} {
			t.Run(fam+"/"+variant, func(t *testing.T) {
				base := filepath.Join(goldenDir, fam)
				o := finetune.JobOptions{
					MethodOptions: smallMethodOptions(base),
					Model:         base, Method: "lora", Out: filepath.Join(t.TempDir(), "out"),
					Data: finetune.DataOptions{Train: filepath.Join(base, "data.jsonl")},
					Train: train.Config{Steps: 2, GradAccum: 1, LR: 1e-2, Schedule: train.Constant,
						Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1},
					BatchSize: 2, SeqLen: 8,
				}
				o.LoRA.Targets = []string{lora.AllLinear}
				if variant == "qlora" {
					o.Quantize = quant.Options{Format: quant.NF4}
				} else {
					o.Precision, o.GradCheckpoint = "bf16", true
				}
				res, err := finetune.Run(context.Background(), o)
				require.NoError(t, err)
				require.Len(t, res.History, 2)
				for _, s := range res.History {
					assert.False(t, math.IsNaN(s.Loss) || math.IsInf(s.Loss, 0), "loss %v", s.Loss)
				}
			})
		}
	}
}

// smallMethodOptions are the defaults sized for the tiny golden models.
func smallMethodOptions(base string) finetune.MethodOptions {
	o := finetune.DefaultMethodOptions()
	o.BaseModel, o.Seed = base, 1
	o.LoRA.Rank, o.LoRA.Alpha = 4, 8
	o.Prompt.NumVirtualTokens = 3
	return o
}

// trainSteps trains m for n steps on the golden data of base.
func trainSteps(t *testing.T, m model.Model, base string, saver train.Saver, n int) []train.StepMetrics {
	t.Helper()
	ds, err := data.Load(filepath.Join(base, "data.jsonl"), data.LoadOptions{VocabSize: m.Config().VocabSize})
	require.NoError(t, err)
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: 2, SeqLen: 8})
	require.NoError(t, err)
	tr, err := train.New(m, loader, train.Config{Steps: n, GradAccum: 1, LR: 1e-2, Schedule: train.Constant,
		Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1}, train.Options{Saver: saver})
	require.NoError(t, err)
	defer tr.Close()
	res, err := tr.Run(context.Background())
	require.NoError(t, err)
	require.Len(t, res.History, n)
	return res.History
}

// greedy returns 6 greedily generated tokens after prompt.
func greedy(t *testing.T, m model.Model, prompt []int32) []int32 {
	t.Helper()
	res, err := generate.Generate(context.Background(), m, prompt, generate.Options{MaxNewTokens: 6})
	require.NoError(t, err)
	return res.Tokens
}

// tensorNames returns the names of the tensors of a model folder.
func tensorNames(t *testing.T, dir string) []string {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	require.NoError(t, err)
	defer set.Close()
	return slices.Sorted(slices.Values(set.Names()))
}
