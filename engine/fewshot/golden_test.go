package fewshot_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/fewshot"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/lora"
)

const goldenRoot = "../../testdata/golden"

// TestMetaStepMatchesPyTorch runs one Reptile and one FOMAML meta-step on
// the tiny LLaMA with LoRA and compares θ' with PyTorch's float64 values
// (testdata/golden/meta.py, whose docstring describes the case).
func TestMetaStepMatchesPyTorch(t *testing.T) {
	want := readGolden(t, filepath.Join(goldenRoot, "meta", "golden.safetensors"))
	for _, algo := range []fewshot.Algo{fewshot.Reptile, fewshot.FOMAML} {
		t.Run(string(algo), func(t *testing.T) {
			be := cpu.New()
			m, err := model.Load(filepath.Join(goldenRoot, "llama-gqa"), be)
			require.NoError(t, err)
			a, err := lora.Load(m, filepath.Join(goldenRoot, "methods", "lora"), lora.LoadOptions{})
			require.NoError(t, err)
			params := fewshot.Trainable(m.Params())
			require.Equal(t, len(a.Params()), len(params))
			ds, err := data.Load(filepath.Join(goldenRoot, "llama-gqa", "data.jsonl"), data.LoadOptions{})
			require.NoError(t, err)
			b := fewshot.Batching{SeqLen: 8, MicroBatch: 1}
			grad := func(i int) fewshot.GradFunc {
				g, err := fewshot.LossGrad(m, "line", ds.Examples[i:i+1], b)
				require.NoError(t, err)
				return g
			}
			l, err := fewshot.NewLearner(be, params,
				fewshot.InnerConfig{Steps: 2, LR: 0.5, Optimizer: fewshot.SGD},
				fewshot.OuterConfig{Algo: algo, LR: 0.5, Steps: 2})
			require.NoError(t, err)
			defer l.Close()
			st, err := l.Step([]fewshot.Episode{
				{Name: "a", Support: grad(0), Query: grad(1)},
				{Name: "b", Support: grad(1), Query: grad(0)},
			})
			require.NoError(t, err)
			sl, ql := want["support_losses"], want["query_losses"]
			assert.InEpsilon(t, (float64(sl[0])+float64(sl[1]))/2, st.SupportLoss, 1e-5)
			assert.InEpsilon(t, (float64(ql[0])+float64(ql[1]))/2, st.QueryLoss, 1e-5)
			for _, p := range params {
				w, ok := want[string(algo)+"."+p.Name]
				require.True(t, ok, "golden lacks %s", p.Name)
				assert.Less(t, golden.RelErr(be.Download(p.W), w), 1e-4, p.Name)
			}
			// The update moved θ (the comparison is not of unchanged values).
			before := readGolden(t, filepath.Join(goldenRoot, "methods", "lora", "adapter_model.safetensors"))
			moved := false
			for _, p := range params {
				moved = moved || golden.RelErr(be.Download(p.W), before[p.Name]) > 1e-3
			}
			assert.True(t, moved)
		})
	}
}

func readGolden(t *testing.T, path string) map[string][]float32 {
	t.Helper()
	f, err := safetensors.Open(path)
	require.NoError(t, err)
	defer f.Close()
	out := map[string][]float32{}
	for _, n := range f.Names() {
		v, _, err := f.Float32(n)
		require.NoError(t, err)
		out[n] = v
	}
	return out
}
