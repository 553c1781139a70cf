package train

import (
	"context"
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
	m.SetDropoutSeed(run.Seed)
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
	for _, msg := range golden.CompareSteps(goldenSteps(res.History), &run, set.Tensor) {
		t.Error(msg)
	}
	norms, _ := set.Tensor(run.Key("grad_norms"))
	masked, total := 0, 0
	for _, p := range m.Params() {
		want, _ := set.Tensor(run.Key("after." + p.Name))
		grad, _ := set.Tensor(run.Key("grad." + p.Name))
		if want == nil {
			continue // reported above
		}
		msg, n := golden.CompareAfter(be.Download(p.W), want, grad, float64(norms[0]), run.LR, run.Steps)
		if msg != "" {
			t.Errorf("%s after %d steps: %s", p.Name, run.Steps, msg)
		}
		masked += n
		total += len(want)
	}
	t.Logf("%d of %d weights had a negligible first-step reference gradient (bound check only)", masked, total)
}

// goldenSteps converts a trainer history for golden.CompareSteps.
func goldenSteps(hist []StepMetrics) []golden.Step {
	out := make([]golden.Step, len(hist))
	for i, h := range hist {
		out[i] = golden.Step{Loss: h.Loss, GradNorm: h.GradNorm, LR: h.LR, Tokens: h.Tokens}
	}
	return out
}
