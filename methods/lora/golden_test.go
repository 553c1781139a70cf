package lora

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/peft"
)

const methodsRoot = "../../testdata/golden/methods"

// methodConfig is a LoRA run's method_config in meta.json.
type methodConfig struct {
	R       int     `json:"lora_r"`
	Alpha   float64 `json:"lora_alpha"`
	Dropout float64 `json:"lora_dropout"`
	Targets string  `json:"lora_targets"`
	RSLoRA  bool    `json:"use_rslora"`
	DoRA    bool    `json:"use_dora"`
}

// loraSets returns the golden method sets of --method lora.
func loraSets(t *testing.T) []*golden.MethodSet {
	t.Helper()
	sets, err := golden.LoadMethods(methodsRoot)
	if err != nil {
		t.Fatal(err)
	}
	var out []*golden.MethodSet
	for _, s := range sets {
		if s.Meta.Run.Method == "lora" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		t.Fatal("no LoRA golden sets")
	}
	return out
}

func decodeConfig(t *testing.T, s *golden.MethodSet) methodConfig {
	t.Helper()
	var mc methodConfig
	if err := json.Unmarshal(s.Meta.Run.MethodConfig, &mc); err != nil {
		t.Fatalf("%s: method_config: %v", s.Dir, err)
	}
	return mc
}

// loadBatch reads the set's data as one batch, as the trainer would.
func loadBatch(t *testing.T, s *golden.MethodSet, m model.Model) (*data.Loader, data.Batch) {
	t.Helper()
	ds, err := data.Load(s.Path(s.Meta.Data), data.LoadOptions{VocabSize: m.Config().VocabSize})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Meta.Run
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: r.BatchSize, SeqLen: r.SeqLen, Shuffle: r.Shuffle})
	if err != nil {
		t.Fatal(err)
	}
	return loader, loader.Batch(0, 0)
}

// TestGolden loads each golden run's initial PEFT adapter folder with
// Load, checks the configuration it read, the logits, loss and every
// gradient at the initial adapter, then trains 3 steps with the run's
// hyper-parameters and checks the per-step losses and gradient norms, the
// trained tensors, and that the base weights did not move.
func TestGolden(t *testing.T) {
	for _, s := range loraSets(t) {
		t.Run(s.Meta.Name, func(t *testing.T) {
			be := cpu.New()
			m, err := model.Load(s.BaseDir(), be)
			if err != nil {
				t.Fatal(err)
			}
			before := map[string][]float32{}
			for _, p := range m.BaseParams() {
				before[p.Name] = be.Download(p.W)
			}
			a, err := Load(m, s.AdapterDir(), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			mc := decodeConfig(t, s)
			c := a.Config()
			if c.R != mc.R || c.Alpha != mc.Alpha || c.RSLoRA != mc.RSLoRA || c.DoRA != mc.DoRA || c.Dropout != mc.Dropout {
				t.Errorf("loaded config %+v, the run's %+v", c, mc)
			}
			// The same modules as the flags would select.
			flagCfg := Config{R: mc.R, Alpha: mc.Alpha, Targets: ParseTargets(mc.Targets)}
			fresh, err := model.Load(s.BaseDir(), be)
			if err != nil {
				t.Fatal(err)
			}
			wantPaths, err := TargetPaths(fresh, flagCfg)
			if err != nil {
				t.Fatal(err)
			}
			var gotPaths []string
			for _, l := range a.Layers() {
				gotPaths = append(gotPaths, l.Path)
			}
			if !slices.Equal(gotPaths, wantPaths) {
				t.Errorf("adapter wraps %v, --lora-targets %s selects %v", gotPaths, mc.Targets, wantPaths)
			}

			// Exactly the run's trainable tensors train, with its decay flags.
			r := s.Meta.Run
			var trainable []string
			decay := map[string]bool{}
			for _, p := range m.Params() {
				if p.Trainable {
					trainable = append(trainable, p.Name)
					decay[p.Name] = p.Decay
				}
			}
			var want []string
			for _, p := range r.Trainable {
				want = append(want, p.Name)
				if decay[p.Name] != p.Decay {
					t.Errorf("%s: decay %v, reference %v", p.Name, decay[p.Name], p.Decay)
				}
			}
			slices.Sort(trainable)
			slices.Sort(want)
			if !slices.Equal(trainable, want) {
				t.Fatalf("trainable tensors %v, reference %v", trainable, want)
			}

			loader, hb := loadBatch(t, s, m)
			logits, err := m.Logits(nil, hb.InputIDs, hb.B, hb.T, true)
			if err != nil {
				t.Fatal(err)
			}
			wantLogits, _ := s.Tensor("logits")
			if e := golden.RelErr(be.Download(logits), wantLogits); e > golden.TolLoss {
				t.Errorf("logits: rel err %.3g", e)
			}
			for _, p := range m.Params() {
				if p.G != nil {
					be.Fill(p.G, 0)
				}
			}
			sum, err := train.ForwardBatch(m, hb, true, float32(1/float64(hb.Counted)))
			if err != nil {
				t.Fatal(err)
			}
			wantLoss, _ := s.Tensor("loss")
			if e := math.Abs(sum/float64(hb.Counted)-float64(wantLoss[0])) / float64(wantLoss[0]); e > golden.TolLoss {
				t.Errorf("loss %.8g, PyTorch %.8g", sum/float64(hb.Counted), wantLoss[0])
			}
			for _, p := range a.Params() {
				g, _ := s.Tensor("grad." + p.Name)
				if e := golden.RelErr(be.Download(p.G), g); e > golden.TolGrad {
					t.Errorf("grad %s: rel err %.3g", p.Name, e)
				}
			}

			tr, err := train.New(m, loader, train.Config{
				Steps: r.Steps, GradAccum: r.GradAccum, LR: r.LR, Schedule: train.Schedule(r.Schedule),
				WarmupSteps: r.WarmupSteps, ScheduleSteps: r.TotalSteps, WeightDecay: r.WeightDecay,
				Beta1: r.Betas[0], Beta2: r.Betas[1], Eps: r.Eps, MaxGradNorm: r.MaxGradNorm,
			}, train.Options{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := tr.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			losses, _ := s.Tensor("losses")
			norms, _ := s.Tensor("grad_norms")
			for i, h := range res.History {
				if e := math.Abs(h.Loss-float64(losses[i])) / float64(losses[i]); e > golden.TolLoss {
					t.Errorf("step %d: loss %.8g, PyTorch %.8g", h.Step, h.Loss, losses[i])
				}
				if e := math.Abs(h.GradNorm-float64(norms[i])) / float64(norms[i]); e > golden.TolGrad {
					t.Errorf("step %d: grad norm %.8g, PyTorch %.8g", h.Step, h.GradNorm, norms[i])
				}
			}
			for _, p := range a.Params() {
				want, _ := s.Tensor("after." + p.Name)
				grad, _ := s.Tensor("grad." + p.Name)
				if msg, _ := golden.CompareAfter(be.Download(p.W), want, grad, float64(norms[0]), r.LR, r.Steps); msg != "" {
					t.Errorf("%s after %d steps: %s", p.Name, r.Steps, msg)
				}
			}
			for _, p := range m.BaseParams() {
				if !slices.Equal(be.Download(p.W), before[p.Name]) {
					t.Errorf("frozen %s changed", p.Name)
				}
			}
		})
	}
}

// TestPeftFormat applies LoRA with each golden run's options (as the
// flags give them) and saves it: adapter_config.json must equal the one
// PEFT would write for that model and configuration (the golden folder's,
// byte for byte apart from base_model_name_or_path), and
// adapter_model.safetensors must hold the same tensor names, shapes and
// dtypes.
func TestPeftFormat(t *testing.T) {
	for _, s := range loraSets(t) {
		t.Run(s.Meta.Name, func(t *testing.T) {
			be := cpu.New()
			m, err := model.Load(s.BaseDir(), be)
			if err != nil {
				t.Fatal(err)
			}
			mc := decodeConfig(t, s)
			wantRaw, err := os.ReadFile(filepath.Join(s.AdapterDir(), peft.ConfigFile))
			if err != nil {
				t.Fatal(err)
			}
			var wantCfg map[string]any
			if err := json.Unmarshal(wantRaw, &wantCfg); err != nil {
				t.Fatal(err)
			}
			base, _ := wantCfg["base_model_name_or_path"].(string)
			a, err := Apply(m, Config{R: mc.R, Alpha: mc.Alpha, Dropout: mc.Dropout, Targets: ParseTargets(mc.Targets),
				RSLoRA: mc.RSLoRA, DoRA: mc.DoRA, Seed: 1, BaseModel: base})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := a.Save(dir); err != nil {
				t.Fatal(err)
			}
			gotRaw, err := os.ReadFile(filepath.Join(dir, peft.ConfigFile))
			if err != nil {
				t.Fatal(err)
			}
			if string(gotRaw) != string(wantRaw) {
				t.Errorf("adapter_config.json differs from PEFT's:\n%s\nwant\n%s", gotRaw, wantRaw)
			}
			got := headerOf(t, filepath.Join(dir, peft.WeightsFile))
			want := headerOf(t, filepath.Join(s.AdapterDir(), peft.WeightsFile))
			if !slices.Equal(got, want) {
				t.Errorf("adapter_model.safetensors tensors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// headerOf lists a safetensors file's tensors as "name dtype shape".
func headerOf(t *testing.T, path string) []string {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		out = append(out, fmt.Sprintf("%s %s %v", n, info.DType, info.Shape))
	}
	slices.Sort(out)
	return out
}
