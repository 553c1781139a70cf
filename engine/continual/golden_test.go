package continual

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/lora"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// goldenDir holds testdata/golden/continual.py's output.
const goldenRoot = "../../testdata/golden"

// continualGolden is testdata/golden/continual/: its settings and tensors.
type continualGolden struct {
	EWCLambda   float64  `json:"ewc_lambda"`
	OLoRALambda float64  `json:"olora_lambda"`
	R           int      `json:"lora_r"`
	Alpha       float64  `json:"lora_alpha"`
	Targets     []string `json:"lora_targets"`
	tensors     *safetensors.File
}

func loadContinualGolden(t *testing.T) *continualGolden {
	t.Helper()
	dir := filepath.Join(goldenRoot, "continual")
	b, err := os.ReadFile(filepath.Join(dir, "settings.json"))
	require.NoError(t, err)
	g := &continualGolden{}
	require.NoError(t, json.Unmarshal(b, g))
	g.tensors, err = safetensors.Open(filepath.Join(dir, "golden.safetensors"))
	require.NoError(t, err)
	t.Cleanup(func() { g.tensors.Close() })
	return g
}

func (g *continualGolden) tensor(t *testing.T, name string) []float32 {
	t.Helper()
	v, _, err := g.tensors.Float32(name)
	require.NoError(t, err)
	return v
}

// goldenBatch is llama-gqa's data.jsonl: its two lines and the batch of
// both (11 counted targets).
func goldenBatch(t *testing.T, m engine.CausalLM) ([]data.Example, func()) {
	t.Helper()
	ds, err := data.Load(filepath.Join(goldenRoot, "llama-gqa", "data.jsonl"), data.LoadOptions{})
	require.NoError(t, err)
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: 2, SeqLen: 8})
	require.NoError(t, err)
	hb := loader.Batch(0, 0)
	return ds.Examples, func() {
		_, err := train.ForwardBatch(m, hb, true, float32(1/float64(train.Counted(m, hb))))
		require.NoError(t, err)
	}
}

func relErr(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	e := golden.RelErr(got, want)
	assert.Less(t, e, tol, "%s: relative error %.3g", what, e)
}

// TestEWCGolden checks against PyTorch (testdata/golden/continual.py) on
// llama-gqa with every tensor trainable: the Fisher from per-example
// gradients at the base weights, then at perturbed weights θ the EWC
// penalty and the gradient of the batch loss plus the penalty.
func TestEWCGolden(t *testing.T) {
	g := loadContinualGolden(t)
	for name, be := range backends(t) {
		t.Run(name, func(t *testing.T) {
			m, err := model.Load(filepath.Join(goldenRoot, "llama-gqa"), be)
			require.NoError(t, err)
			params := m.Params()
			for _, p := range params {
				model.SetTrainable(p, true)
				p.G = be.Alloc(engine.Float32, p.W.Shape()...)
			}
			examples, step := goldenBatch(t, m)
			fisher, err := Fisher(m, params, examples, 8)
			require.NoError(t, err)
			for i, p := range params {
				relErr(t, "fisher of "+p.Name, be.Download(fisher[i]), g.tensor(t, "fisher."+p.Name), 1e-4)
				assert.Equal(t, 0.0, maxAbs(be.Download(p.G)), "%s: gradient left behind", p.Name)
			}
			e := NewEWC(be, g.EWCLambda, false, 0)
			require.NoError(t, e.Consolidate(params, fisher))
			for _, p := range params {
				be.Upload(p.W, g.tensor(t, "theta."+p.Name))
			}
			step()
			pen, err := e.AddGrad(params)
			require.NoError(t, err)
			assert.InEpsilon(t, float64(g.tensor(t, "ewc_penalty")[0]), pen, 1e-4)
			for _, p := range params {
				relErr(t, "gradient of "+p.Name, be.Download(p.G), g.tensor(t, "ewc_grad."+p.Name), 1e-4)
			}
		})
	}
}

// TestOLoRAGolden checks against PyTorch on llama-gqa: two earlier tasks'
// LoRA adapters are retired (merged into the base, their A factors kept),
// methods/lora's adapter is the current one, and the gradient of the batch
// loss plus the orthogonality penalty must match for every A and B.
func TestOLoRAGolden(t *testing.T) {
	g := loadContinualGolden(t)
	for name, be := range backends(t) {
		t.Run(name, func(t *testing.T) {
			m, err := model.Load(filepath.Join(goldenRoot, "llama-gqa"), be)
			require.NoError(t, err)
			o := NewOLoRA(be, g.OLoRALambda)
			for k := range 2 {
				a, err := lora.Apply(m, lora.Config{R: g.R, Alpha: g.Alpha, Targets: g.Targets})
				require.NoError(t, err)
				for _, l := range a.Layers() {
					prefix := "old" + string(rune('0'+k)) + "." + l.Path
					be.Upload(l.A.W, g.tensor(t, prefix+".lora_A"))
					be.Upload(l.B.W, g.tensor(t, prefix+".lora_B"))
				}
				require.NoError(t, o.Retire(a))
			}
			a, err := lora.Load(m, filepath.Join(goldenRoot, "methods", "lora"), lora.LoadOptions{})
			require.NoError(t, err)
			for _, p := range a.Params() {
				p.G = be.Alloc(engine.Float32, p.W.Shape()...)
			}
			require.NoError(t, o.Begin(a))
			_, step := goldenBatch(t, m)
			step()
			pen, err := o.AddGrad(nil)
			require.NoError(t, err)
			assert.InEpsilon(t, float64(g.tensor(t, "olora_penalty")[0]), pen, 1e-4)
			for _, p := range a.Params() {
				relErr(t, "gradient of "+p.Name, be.Download(p.G), g.tensor(t, "olora_grad."+p.Name), 1e-4)
			}
		})
	}
}

func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, abs(float64(x)))
	}
	return m
}
