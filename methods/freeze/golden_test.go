package freeze

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
)

const methodsRoot = "../../testdata/golden/methods"

// methodConfig is a freeze run's method_config in meta.json.
type methodConfig struct {
	Layers  int    `json:"freeze_trainable_layers"`
	Modules string `json:"freeze_trainable_modules"`
	Extra   string `json:"freeze_extra_modules"`
}

// TestGolden applies each golden freeze run's options and checks which
// tensors train, the first step's gradients, the 3-step trajectory, the
// trained weights and that every frozen weight is unchanged.
func TestGolden(t *testing.T) {
	sets, err := golden.LoadMethods(methodsRoot)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range sets {
		if s.Meta.Run.Method != "freeze" {
			continue
		}
		n++
		t.Run(s.Meta.Name, func(t *testing.T) {
			var mc methodConfig
			if err := json.Unmarshal(s.Meta.Run.MethodConfig, &mc); err != nil {
				t.Fatal(err)
			}
			be := cpu.New()
			m, err := model.Load(s.BaseDir(), be)
			if err != nil {
				t.Fatal(err)
			}
			before := map[string][]float32{}
			for _, p := range m.Params() {
				before[p.Name] = be.Download(p.W)
			}
			names, err := Apply(m, Config{TrainableLayers: mc.Layers, Modules: ParseList(mc.Modules), Extra: ParseList(mc.Extra)})
			if err != nil {
				t.Fatal(err)
			}
			r := s.Meta.Run
			var want []string
			for _, p := range r.Trainable {
				want = append(want, p.Name)
			}
			slices.Sort(want)
			slices.Sort(names)
			if !slices.Equal(names, want) {
				t.Fatalf("trainable %v, reference %v", names, want)
			}
			for _, p := range m.Params() {
				if !p.Trainable && p.G != nil {
					t.Errorf("frozen %s has a gradient buffer", p.Name)
				}
			}

			ds, err := data.Load(s.Path(s.Meta.Data), data.LoadOptions{VocabSize: m.Config().VocabSize})
			if err != nil {
				t.Fatal(err)
			}
			loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: r.BatchSize, SeqLen: r.SeqLen, Shuffle: r.Shuffle})
			if err != nil {
				t.Fatal(err)
			}
			hb := loader.Batch(0, 0)
			sum, err := train.ForwardBatch(m, hb, true, float32(1/float64(hb.Counted)))
			if err != nil {
				t.Fatal(err)
			}
			wantLoss, _ := s.Tensor("loss")
			if e := math.Abs(sum/float64(hb.Counted)-float64(wantLoss[0])) / float64(wantLoss[0]); e > golden.TolLoss {
				t.Errorf("loss %.8g, PyTorch %.8g", sum/float64(hb.Counted), wantLoss[0])
			}
			for _, p := range m.Params() {
				if !p.Trainable {
					continue
				}
				g, _ := s.Tensor("grad." + p.Name)
				if e := golden.RelErr(be.Download(p.G), g); e > golden.TolGrad {
					t.Errorf("grad %s: rel err %.3g", p.Name, e)
				}
				be.Fill(p.G, 0)
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
			for _, p := range m.Params() {
				got := be.Download(p.W)
				if !p.Trainable {
					if !slices.Equal(got, before[p.Name]) {
						t.Errorf("frozen %s changed", p.Name)
					}
					continue
				}
				want, _ := s.Tensor("after." + p.Name)
				grad, _ := s.Tensor("grad." + p.Name)
				if msg, _ := golden.CompareAfter(got, want, grad, float64(norms[0]), r.LR, r.Steps); msg != "" {
					t.Errorf("%s after %d steps: %s", p.Name, r.Steps, msg)
				}
			}
		})
	}
	if n == 0 {
		t.Fatal("no freeze golden sets")
	}
}
