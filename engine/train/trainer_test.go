package train

import (
	"bytes"
	"context"
	"fmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/internal/fieldpaths"
)

const toyV = 11

func toyDataset(n int, seed uint64) *data.Dataset {
	rng := rand.New(rand.NewPCG(seed, 1))
	ds := &data.Dataset{Name: "toy"}
	for i := 0; i < n; i++ {
		L := 2 + rng.IntN(7)
		e := data.Example{Loc: data.Loc{File: "toy", Line: i + 1}}
		for t := 0; t < L; t++ {
			id := int32(rng.IntN(toyV))
			e.InputIDs = append(e.InputIDs, id)
			if t > 0 && rng.IntN(4) == 0 {
				e.Labels = append(e.Labels, data.IgnoreIndex)
			} else {
				e.Labels = append(e.Labels, id)
			}
		}
		ds.Examples = append(ds.Examples, e)
	}
	return ds
}

func toyWeights(seed uint64) ([]float32, []float32) {
	rng := rand.New(rand.NewPCG(seed, 2))
	table := make([]float32, toyV*toyV)
	for i := range table {
		table[i] = float32(rng.NormFloat64())
	}
	bias := make([]float32, toyV)
	for i := range bias {
		bias[i] = float32(0.3 * rng.NormFloat64())
	}
	return table, bias
}

func baseConfig() Config {
	return Config{Steps: 6, GradAccum: 1, LR: 0.05, Schedule: Constant, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, MaxGradNorm: 1.0}
}

func TestTrainerMatchesFloat64Reference(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(*Config, *data.LoaderConfig)
		frozen bool // bias frozen
	}{
		{"constant clipped", func(c *Config, l *data.LoaderConfig) {}, false},
		{"no clipping", func(c *Config, l *data.LoaderConfig) { c.MaxGradNorm = 0 }, false},
		{"grad accum", func(c *Config, l *data.LoaderConfig) { c.GradAccum = 3; l.BatchSize = 2 }, false},
		{"linear warmup", func(c *Config, l *data.LoaderConfig) { c.Schedule = Linear; c.WarmupSteps = 2 }, false},
		{"first steps of a longer schedule", func(c *Config, l *data.LoaderConfig) { c.Schedule = Linear; c.WarmupSteps = 2; c.ScheduleSteps = 9 }, false},
		{"cosine warmup", func(c *Config, l *data.LoaderConfig) { c.Schedule = Cosine; c.WarmupSteps = 1; c.MaxGradNorm = 5 }, false},
		{"shuffled, epochs, partial last step", func(c *Config, l *data.LoaderConfig) {
			c.Steps = 0
			c.Epochs = 2
			c.GradAccum = 3
			l.Shuffle = true
			l.Seed = 7
		}, false},
		{"frozen bias", func(c *Config, l *data.LoaderConfig) {}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			lcfg := data.LoaderConfig{BatchSize: 3, SeqLen: 6}
			tc.mod(&cfg, &lcfg)
			ds := toyDataset(13, 5)
			table, bias := toyWeights(9)

			be := cpu.New()
			model := newBigram(be, toyV, table, bias)
			if tc.frozen {
				model.bias.Trainable = false
			}
			loader, err := data.NewLoader(ds, lcfg)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := New(model, loader, cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			total := tr.TotalSteps()
			if cfg.Steps == 0 {
				bpe := loader.BatchesPerEpoch()
				if 2*bpe%cfg.GradAccum == 0 {
					t.Fatalf("%d batches an epoch: the last step would not be partial", bpe)
				}
				if want := (2*bpe + cfg.GradAccum - 1) / cfg.GradAccum; total != want {
					t.Fatalf("TotalSteps = %d, want %d", total, want)
				}
			}
			// The reference gets the same micro-batches from an identical loader.
			refLoader, _ := data.NewLoader(ds, lcfg)
			var steps [][]data.Batch
			micro := 0
			for k := 0; k < total; k++ {
				var mb []data.Batch
				for i := 0; i < cfg.GradAccum && (cfg.Steps > 0 || micro < cfg.Epochs*refLoader.BatchesPerEpoch()); i++ {
					mb = append(mb, refLoader.Next())
					micro++
				}
				steps = append(steps, mb)
			}
			schedTotal := total
			if cfg.ScheduleSteps > 0 {
				schedTotal = cfg.ScheduleSteps
			}
			want := reference(toyV, table, bias, steps, cfg, schedTotal, !tc.frozen)

			res, err := tr.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(res.History) != total || res.Interrupted {
				t.Fatalf("ran %d steps (interrupted %v), want %d", len(res.History), res.Interrupted, total)
			}
			for i, m := range res.History {
				if m.Step != i+1 {
					t.Errorf("step %d numbered %d", i+1, m.Step)
				}
				if e := math.Abs(m.Loss-want.losses[i]) / want.losses[i]; e > 1e-5 {
					t.Errorf("step %d: loss %.9g, want %.9g (rel err %.2g)", m.Step, m.Loss, want.losses[i], e)
				}
				if e := math.Abs(m.GradNorm-want.norms[i]) / want.norms[i]; e > 1e-4 {
					t.Errorf("step %d: grad norm %.9g, want %.9g (rel err %.2g)", m.Step, m.GradNorm, want.norms[i], e)
				}
				if math.Abs(m.LR-want.lrs[i]) > 1e-15 {
					t.Errorf("step %d: lr %g, want %g", m.Step, m.LR, want.lrs[i])
				}
				tokens := 0
				for _, b := range steps[i] {
					tokens += b.Counted
				}
				if m.Tokens != tokens {
					t.Errorf("step %d: tokens %d, want %d", m.Step, m.Tokens, tokens)
				}
			}
			gotT, gotB := model.weights()
			if e := relErr(gotT, want.table); e > 1e-4 {
				t.Errorf("table after training: rel err %.3g", e)
			}
			if e := relErr(gotB, want.bias); e > 1e-4 {
				t.Errorf("bias after training: rel err %.3g", e)
			}
			if tc.frozen && relErr(gotB, f64(bias)) != 0 {
				t.Error("frozen bias changed")
			}
			for _, p := range tr.Trainable() {
				for _, g := range be.Download(p.G) {
					if g != 0 {
						t.Fatalf("%s: gradient not zeroed after the step", p.Name)
					}
				}
			}
		})
	}
}

// Splitting a batch into micro-batches must not change the step: the
// same sequences as one batch of 4 or as 2×2 accumulated give the same
// losses and weights (up to float32 summation order).
func TestGradAccumEquivalence(t *testing.T) {
	ds := toyDataset(8, 3)
	table, bias := toyWeights(4)
	run := func(bs, accum int) ([]StepMetrics, []float32) {
		be := cpu.New()
		m := newBigram(be, toyV, table, bias)
		l, _ := data.NewLoader(ds, data.LoaderConfig{BatchSize: bs, SeqLen: 8})
		cfg := baseConfig()
		cfg.Steps, cfg.GradAccum = 4, accum
		tr, err := New(m, l, cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := tr.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		w, _ := m.weights()
		return res.History, w
	}
	h1, w1 := run(4, 1)
	h2, w2 := run(2, 2)
	for i := range h1 {
		if math.Abs(h1[i].Loss-h2[i].Loss) > 1e-6*h1[i].Loss || h1[i].Tokens != h2[i].Tokens {
			t.Errorf("step %d: batch 4 loss %v (%d tokens), 2×2 loss %v (%d tokens)", i+1, h1[i].Loss, h1[i].Tokens, h2[i].Loss, h2[i].Tokens)
		}
	}
	if e := relErr(w2, f64(w1)); e > 1e-5 {
		t.Errorf("weights differ: rel err %.3g", e)
	}
}

func TestRunWritesOutputsAndStopsOnCancel(t *testing.T) {
	ds := toyDataset(10, 1)
	table, bias := toyWeights(2)
	be := cpu.New()
	model := newBigram(be, toyV, table, bias)
	loader, _ := data.NewLoader(ds, data.LoaderConfig{BatchSize: 2, SeqLen: 8})
	out := filepath.Join(t.TempDir(), "out")
	cfg := baseConfig()
	cfg.Steps = 10
	cfg.OutDir = out
	cfg.LogEvery = 2
	cfg.EvalEvery = 2
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var evals []int
	var log bytes.Buffer
	tr, err := New(model, loader, cfg, Options{Log: &log, Eval: func(ctx context.Context, step int) (map[string]float64, error) {
		evals = append(evals, step)
		if step == 4 {
			cancel() // the run must finish step 4, then stop and save
		}
		return map[string]float64{"eval_loss": 1.5 / float64(step)}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := tr.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Steps != 4 || len(evals) != 2 {
		t.Fatalf("interrupted %v after %d steps with evals %v; want true, 4, [2 4]", res.Interrupted, res.Steps, evals)
	}
	if len(model.saves) != 1 || model.saves[0] != out {
		t.Errorf("saves %v, want one into %s", model.saves, out)
	}
	ms, err := ReadMetrics(filepath.Join(out, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 {
		t.Fatalf("metrics.jsonl has %d lines, want 4", len(ms))
	}
	for i, m := range ms {
		h := res.History[i]
		if m.Step != i+1 || m.Loss != h.Loss || m.LR != h.LR || m.GradNorm != h.GradNorm || m.Tokens != h.Tokens || m.ElapsedS <= 0 || m.TokensPerS <= 0 {
			t.Errorf("metrics line %d = %+v, history %+v", i+1, m, h)
		}
	}
	// Each step holds at least the weights, gradients and both AdamW
	// moments, all float32.
	var paramBytes, peak uint64
	for _, p := range model.Params() {
		paramBytes += uint64(4 * p.W.Len())
	}
	for _, m := range ms {
		if m.PeakMemBytes < 4*paramBytes {
			t.Errorf("step %d: peak_mem_bytes %d, want at least 4 × %d parameter bytes", m.Step, m.PeakMemBytes, paramBytes)
		}
		peak = max(peak, m.PeakMemBytes)
	}
	if res.PeakMemBytes != peak {
		t.Errorf("Result.PeakMemBytes %d, want the steps' largest, %d", res.PeakMemBytes, peak)
	}
	if ms[1].Eval["eval_loss"] != 0.75 || ms[0].Eval != nil {
		t.Errorf("eval metrics: step 1 %v, step 2 %v", ms[0].Eval, ms[1].Eval)
	}
	raw, _ := os.ReadFile(filepath.Join(out, MetricsFile))
	first := strings.SplitN(string(raw), "\n", 2)[0]
	for _, key := range []string{`"step":1`, `"loss":`, `"lr":`, `"grad_norm":`, `"tokens":`, `"tokens_per_s":`, `"elapsed_s":`, `"peak_mem_bytes":`} {
		if !strings.Contains(first, key) {
			t.Errorf("metrics line %s lacks %s", first, key)
		}
	}
	f, err := os.Open(filepath.Join(out, LossPlotFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if img, err := png.Decode(f); err != nil || img.Bounds().Dx() != plotW {
		t.Errorf("loss.png: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	// Progress at steps 1, 2 and 4, then the interruption notice.
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "step  1/10  loss ") || !strings.Contains(lines[1], "eval_loss 0.7500") ||
		!strings.Contains(lines[2], "eta ") || !strings.Contains(lines[3], "interrupted after step 4 of 10") {
		t.Errorf("log:\n%s", log.String())
	}
}

// A non-finite loss at the first step blames the weights or the data (no
// update has happened yet), a later one or a loss grown past
// DivergenceRatio times the first the learning rate; either stops the run
// before the step changes a weight, and nothing is saved.
func TestDivergedStepIsAnError(t *testing.T) {
	for _, tc := range []struct {
		name string
		fake map[int]float64 // ForwardBackward call -> loss sum (batches of 2×8 tokens... see toyDataset)
		step int
		want string
	}{
		{"NaN before any update", map[int]float64{1: math.NaN()}, 1, "before this run changed any weight: the model's weights or the data produce NaN/Inf, not the learning rate"},
		{"Inf later", map[int]float64{3: math.Inf(1)}, 3, "training diverged (loss +Inf"},
		{"hint named by Options.Name", map[int]float64{3: math.Inf(1)}, 3, "; try a lower --lr or --max-grad-norm"},
		{"loss grown past the ratio", map[int]float64{4: 1e13}, 4, "training diverged: the loss"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table, bias := toyWeights(2)
			be := cpu.New()
			model := newBigram(be, toyV, table, bias)
			model.fakeLoss = tc.fake
			loader, _ := data.NewLoader(toyDataset(4, 1), data.LoaderConfig{BatchSize: 4, SeqLen: 8})
			cfg := baseConfig()
			cfg.OutDir = t.TempDir()
			// The hint names the fields as Options.Name does.
			flags := map[string]string{"LR": "--lr", "MaxGradNorm": "--max-grad-norm"}
			tr, err := New(model, loader, cfg, Options{Name: func(f string) string { return flags[f] }})
			require.NoError(t, err)
			res, err := tr.Run(context.Background())
			require.Error(t, err)
			assert.Contains(t, err.Error(), fmt.Sprintf("step %d: ", tc.step))
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, tc.step-1, tr.StepsDone(), "the diverged step must not count")
			assert.Len(t, res.History, tc.step-1)
			assert.Empty(t, model.saves, "a diverged run must not save its weights as the result")
			if tc.step == 1 {
				w, _ := model.weights()
				assert.Zero(t, relErr(w, f64(table)), "weights changed by a diverged step")
			}
		})
	}
}

// Each wrong hyper-parameter is a *fielderr.Error naming its field (a
// real field of Config) and, in the message, every field involved.
func TestConfigValidate(t *testing.T) {
	tests := []struct {
		mod    func(*Config)
		fields []string
		want   string
	}{
		{func(c *Config) { c.Steps, c.Epochs = 0, 0 }, []string{"Steps", "Epochs"}, "Steps is 0 and Epochs 0: nothing to train"},
		{func(c *Config) { c.Steps = -1 }, []string{"Steps"}, "Steps must not be negative, got -1"},
		{func(c *Config) { c.GradAccum = 0 }, []string{"GradAccum"}, "GradAccum must be at least 1"},
		{func(c *Config) { c.LR = math.NaN() }, []string{"LR"}, "LR must be a non-negative number, got NaN"},
		{func(c *Config) { c.LR = -1 }, []string{"LR"}, "LR must be a non-negative number"},
		{func(c *Config) { c.ScheduleSteps = -1 }, []string{"ScheduleSteps"}, "ScheduleSteps must not be negative"},
		{func(c *Config) { c.WarmupSteps = -1 }, []string{"WarmupSteps"}, "WarmupSteps must not be negative"},
		{func(c *Config) { c.WarmupRatio = 1 }, []string{"WarmupRatio"}, "WarmupRatio must be in [0, 1), got 1"},
		{func(c *Config) { c.WarmupRatio, c.WarmupSteps = 0.1, 2 }, []string{"WarmupRatio", "WarmupSteps"}, "WarmupRatio and WarmupSteps exclude each other"},
		{func(c *Config) { c.EarlyStoppingPatience = -1 }, []string{"EarlyStoppingPatience"}, "EarlyStoppingPatience must not be negative"},
		{func(c *Config) { c.WeightDecay = -0.1 }, []string{"WeightDecay"}, "WeightDecay must not be negative"},
		{func(c *Config) { c.Beta1 = 1 }, []string{"Beta1"}, "Beta1 must be in [0, 1)"},
		{func(c *Config) { c.Beta2 = -0.5 }, []string{"Beta2"}, "Beta2 must be in [0, 1)"},
		{func(c *Config) { c.Eps = 0 }, []string{"Eps"}, "Eps must be positive"},
		{func(c *Config) { c.MaxGradNorm = -1 }, []string{"MaxGradNorm"}, "MaxGradNorm must not be negative"},
		{func(c *Config) { c.LogEvery = -1 }, []string{"LogEvery"}, "LogEvery must not be negative"},
		{func(c *Config) { c.EvalEvery = -1 }, []string{"EvalEvery"}, "EvalEvery must not be negative"},
		{func(c *Config) { c.Schedule = "step" }, []string{"Schedule"}, `Schedule "step" is not a learning-rate schedule (want constant, linear, cosine)`},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			c := baseConfig()
			tc.mod(&c)
			fe, ok := fielderr.As(c.Validate())
			require.True(t, ok, "want a *fielderr.Error")
			assert.Equal(t, tc.fields, fe.Fields())
			assert.Contains(t, fe.Error(), tc.want)
			for _, f := range fe.Fields() {
				assert.True(t, fieldpaths.Has(Config{}, f), "%s is not a field of Config", f)
			}
		})
	}
	c := baseConfig()
	require.NoError(t, c.Validate(), "valid config rejected")
}

func TestScheduleMultiplier(t *testing.T) {
	// Values worked out by hand from the Hugging Face formulas.
	tests := []struct {
		s             Schedule
		warmup, total int
		want          []float64 // multipliers of steps 1..total
	}{
		{Constant, 0, 3, []float64{1, 1, 1}},
		{Constant, 2, 4, []float64{0, 0.5, 1, 1}},
		{Linear, 0, 4, []float64{1, 0.75, 0.5, 0.25}},
		{Linear, 2, 5, []float64{0, 0.5, 1, 2.0 / 3, 1.0 / 3}},
		{Cosine, 0, 4, []float64{1, (1 + math.Sqrt(0.5)) / 2, 0.5, (1 - math.Sqrt(0.5)) / 2}},
		{Cosine, 1, 3, []float64{0, 1, 0.5}},
	}
	for _, tc := range tests {
		for k, want := range tc.want {
			if got := tc.s.Multiplier(k, tc.warmup, tc.total); math.Abs(got-want) > 1e-15 {
				t.Errorf("%s warmup %d total %d step %d: %v, want %v", tc.s, tc.warmup, tc.total, k+1, got, want)
			}
		}
	}
	if _, err := ParseSchedule("cosine"); err != nil {
		t.Error(err)
	}
}

func TestParamSummary(t *testing.T) {
	be := cpu.New()
	table, bias := toyWeights(1)
	m := newBigram(be, toyV, table, bias)
	m.table.Trainable = false
	if got, want := ParamSummary(m.Params()), "trainable params: 11 || all params: 132 || trainable%: 8.3333"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -12345: "-12,345"} {
		if got := groupDigits(n); got != want {
			t.Errorf("groupDigits(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestNewRejects(t *testing.T) {
	be := cpu.New()
	table, bias := toyWeights(1)
	m := newBigram(be, toyV, table, bias)
	m.table.Trainable, m.bias.Trainable = false, false
	loader, _ := data.NewLoader(toyDataset(4, 1), data.LoaderConfig{BatchSize: 2, SeqLen: 8})
	if _, err := New(m, loader, baseConfig(), Options{}); err == nil || !strings.Contains(err.Error(), "no trainable parameters") {
		t.Errorf("all frozen: got %v", err)
	}
}

func TestEvalLoss(t *testing.T) {
	ds := toyDataset(7, 11)
	table, bias := toyWeights(3)
	be := cpu.New()
	m := newBigram(be, toyV, table, bias)
	l, _ := data.NewLoader(ds, data.LoaderConfig{BatchSize: 3, SeqLen: 8, Shuffle: true, Seed: 1})
	got, tokens, err := EvalLoss(m, l)
	if err != nil {
		t.Fatal(err)
	}
	// The reference sees the whole epoch as one step: its loss is the
	// mean over every counted token.
	var all []data.Batch
	for i := 0; i < l.BatchesPerEpoch(); i++ {
		all = append(all, l.Batch(0, i))
	}
	want := reference(toyV, table, bias, [][]data.Batch{all}, baseConfig(), 1, true)
	wantTokens := 0
	for _, b := range all {
		wantTokens += b.Counted
	}
	if math.Abs(got-want.losses[0]) > 1e-6*want.losses[0] || tokens != wantTokens {
		t.Errorf("EvalLoss = %v over %d tokens, want %v over %d", got, tokens, want.losses[0], wantTokens)
	}
	if w, _ := m.weights(); relErr(w, f64(table)) != 0 {
		t.Error("evaluation changed the weights")
	}
}
