package train

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/internal/golden"
)

const goldenRoot = "../../testdata/golden"

// TestGoldenTrajectories trains every golden model with the
// hyper-parameters of each of its full fine-tuning runs (read from
// meta.json) and compares the per-step losses, gradient norms, learning
// rates and counted tokens, and the weights after the last step, with
// PyTorch's (computed in float64 by testdata/golden/gen.py).
func TestGoldenTrajectories(t *testing.T) {
	sets, err := golden.LoadAll(goldenRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range sets {
		for _, run := range set.Meta.Runs {
			if run.Method != "full" {
				continue
			}
			t.Run(set.Meta.Model+"/"+run.Name, func(t *testing.T) {
				checkGoldenRun(t, set, run)
			})
		}
	}
}

func checkGoldenRun(t *testing.T, set *golden.Set, run golden.Run) {
	be := cpu.New()
	defer be.Close()
	m, err := model.Load(set.Dir, be)
	if err != nil {
		t.Fatal(err)
	}
	trainable := run.Trainable
	if len(trainable) == 0 {
		trainable = set.Meta.Params
	}
	decay := map[string]bool{}
	for _, p := range trainable {
		decay[p.Name] = p.Decay
	}
	for _, p := range m.Params() {
		model.SetTrainable(p, true)
	}
	// The model's decay flags must be the reference's (the HF Trainer convention).
	for _, p := range m.Params() {
		want, ok := decay[p.Name]
		if !ok {
			t.Errorf("model parameter %s is not in the golden run", p.Name)
			continue
		}
		if p.Decay != want {
			t.Errorf("%s: Decay = %v, the reference uses %v", p.Name, p.Decay, want)
		}
	}
	if len(m.Params()) != len(trainable) {
		t.Errorf("model has %d parameters, the golden run trains %d", len(m.Params()), len(trainable))
	}

	hc, err := hfconfig.Load(set.Dir)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := data.Load(set.Path(set.Meta.Data), data.LoadOptions{VocabSize: hc.VocabSize})
	if err != nil {
		t.Fatal(err)
	}
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: run.BatchSize, SeqLen: run.SeqLen, Shuffle: run.Shuffle})
	if err != nil {
		t.Fatal(err)
	}
	sched, err := ParseSchedule(run.Schedule)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Steps: run.Steps, GradAccum: run.GradAccum, LR: run.LR, Schedule: sched,
		WarmupSteps: run.WarmupSteps, ScheduleSteps: run.TotalSteps,
		WeightDecay: run.WeightDecay, Beta1: run.Betas[0], Beta2: run.Betas[1], Eps: run.Eps,
		MaxGradNorm: run.MaxGradNorm,
	}
	tr, err := New(m, loader, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	losses, _ := set.Tensor(run.Key("losses"))
	norms, _ := set.Tensor(run.Key("grad_norms"))
	lrs, _ := set.Tensor(run.Key("lrs"))
	if len(res.History) != run.Steps {
		t.Fatalf("ran %d steps, want %d", len(res.History), run.Steps)
	}
	for i, h := range res.History {
		if e := math.Abs(h.Loss-float64(losses[i])) / math.Abs(float64(losses[i])); e > 1e-5 {
			t.Errorf("step %d: loss %.8g, PyTorch %.8g (rel err %.2g > 1e-5)", h.Step, h.Loss, losses[i], e)
		}
		if e := math.Abs(h.GradNorm-float64(norms[i])) / float64(norms[i]); e > 1e-4 {
			t.Errorf("step %d: grad norm %.8g, PyTorch %.8g (rel err %.2g > 1e-4)", h.Step, h.GradNorm, norms[i], e)
		}
		// The golden lrs are float32 copies of Python floats.
		if math.Abs(h.LR-float64(lrs[i])) > 1e-7*math.Abs(float64(lrs[i]))+1e-30 {
			t.Errorf("step %d: lr %g, PyTorch %g", h.Step, h.LR, lrs[i])
		}
		if h.Tokens != run.CountedTokens[i] {
			t.Errorf("step %d: %d counted tokens, PyTorch %d", h.Step, h.Tokens, run.CountedTokens[i])
		}
	}
	masked, total := 0, 0
	for _, p := range m.Params() {
		want, _ := set.Tensor(run.Key("after." + p.Name))
		grad, _ := set.Tensor(run.Key("grad." + p.Name))
		if want == nil {
			continue // reported above
		}
		msg, n := compareAfter(be.Download(p.W), want, grad, float64(norms[0]), run.LR, run.Steps)
		if msg != "" {
			t.Errorf("%s after %d steps: %s", p.Name, run.Steps, msg)
		}
		masked += n
		total += len(want)
	}
	t.Logf("%d of %d weights had a negligible first-step reference gradient (bound check only)", masked, total)
}

// compareAfter checks trained weights against the reference: relative
// error at most 1e-4 over the elements whose first-step reference
// gradient is at least 1e-6 of the global gradient norm; the others only
// within the distance AdamW can move a weight in the run (3·lr a step).
//
// Why: AdamW divides each gradient element by its own running magnitude,
// so an element's update depends on its gradient's relative accuracy, not
// its absolute one. float32 rounding leaves an absolute error of about
// 1e-8 of the gradient norm in every element; on an element whose exact
// gradient is that small (attention key biases of models without RoPE have
// an exactly zero gradient, since softmax ignores a shift shared by all
// keys) the float32 run takes steps of order lr in a direction set by
// rounding while the float64 reference does not, and no two float32
// implementations would agree either. (Embedding rows of tokens not in the
// batch also fall here; their decay-only updates are checked exactly by
// the float64 reference test of the toy model.)
func compareAfter(got, want, grad []float32, gradNorm, lr float64, steps int) (string, int) {
	if len(got) != len(want) {
		return fmt.Sprintf("%d values, reference %d", len(got), len(want)), 0
	}
	var g2, w2 []float32
	masked := 0
	for i := range want {
		if grad != nil && math.Abs(float64(grad[i])) < 1e-6*gradNorm {
			masked++
			if d := math.Abs(float64(got[i]) - float64(want[i])); d > 3*lr*float64(steps) {
				return fmt.Sprintf("element %d (negligible reference gradient) is %.3g from the reference, more than AdamW can move it", i, d), masked
			}
			continue
		}
		g2 = append(g2, got[i])
		w2 = append(w2, want[i])
	}
	if e := golden.RelErr(g2, w2); e > 1e-4 {
		return fmt.Sprintf("rel err %.3g > 1e-4 (over %d of %d elements)", e, len(g2), len(want)), masked
	}
	return "", masked
}
