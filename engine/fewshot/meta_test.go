package fewshot

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/internal/fieldpaths"
)

// vecParam returns a trainable parameter holding w, with a zero gradient.
func vecParam(be engine.Backend, w ...float32) *engine.Param {
	p := &engine.Param{Name: "w", W: be.Alloc(engine.Float32, len(w)), G: be.Alloc(engine.Float32, len(w)), Trainable: true}
	be.Upload(p.W, w)
	be.Fill(p.G, 0)
	return p
}

// quadratic is the loss ½‖w − c‖², whose gradient w − c the tests
// compute by hand.
func quadratic(be engine.Backend, p *engine.Param, c ...float64) GradFunc {
	return func() (float64, error) {
		w := be.Download(p.W)
		g := make([]float32, len(w))
		loss := 0.0
		for i := range w {
			d := float64(w[i]) - c[i]
			g[i] = float32(d)
			loss += d * d / 2
		}
		be.Upload(p.G, g)
		return loss, nil
	}
}

func download(be engine.Backend, p *engine.Param) []float64 {
	var out []float64
	for _, v := range be.Download(p.W) {
		out = append(out, float64(v))
	}
	return out
}

func TestReptileStepSGD(t *testing.T) {
	be := cpu.New()
	p := vecParam(be, 1, 2)
	l, err := NewLearner(be, []*engine.Param{p},
		InnerConfig{Steps: 2, LR: 0.5, Optimizer: SGD},
		OuterConfig{Algo: Reptile, LR: 0.5, Steps: 2})
	require.NoError(t, err)
	defer l.Close()
	// Two SGD steps of lr ½ on ½‖w − c‖² leave φ = c + ¼(θ − c):
	// c₁ = (0, 0): φ₁ = (0.25, 0.5); c₂ = (4, −2): φ₂ = (3.25, −1).
	// φ̄ = (1.75, −0.25); θ + ½(φ̄ − θ) = (1.375, 0.875).
	st, err := l.Step([]Episode{
		{Name: "a", Support: quadratic(be, p, 0, 0)},
		{Name: "b", Support: quadratic(be, p, 4, -2)},
	})
	require.NoError(t, err)
	assert.Equal(t, []float64{1.375, 0.875}, download(be, p))
	assert.Equal(t, 0.5, st.OuterLR)
	// Support losses at θ: ½(1+4) = 2.5 and ½(9+16) = 12.5.
	assert.Equal(t, 7.5, st.SupportLoss)
	assert.True(t, math.IsNaN(st.QueryLoss))
	// The step size anneals linearly: step 2 of 2 uses ε/2.
	assert.Equal(t, 0.25, l.OuterLR(2))
}

func TestFOMAMLStepSGD(t *testing.T) {
	be := cpu.New()
	p := vecParam(be, 1, 2)
	l, err := NewLearner(be, []*engine.Param{p},
		InnerConfig{Steps: 1, LR: 0.5, Optimizer: SGD},
		OuterConfig{Algo: FOMAML, LR: 0.25, Steps: 1})
	require.NoError(t, err)
	defer l.Close()
	// One SGD step of lr ½ on the support loss: φ = (θ + c)/2.
	// Task a: c = (0, 0), φ = (0.5, 1); query d = (1, 1): g = φ − d = (−0.5, 0).
	// Task b: c = (3, −2), φ = (2, 0); query d = (0, 2): g = (2, −2).
	// θ − ¼·mean(g) = (1, 2) − ¼(0.75, −1) = (0.8125, 2.25).
	st, err := l.Step([]Episode{
		{Name: "a", Support: quadratic(be, p, 0, 0), Query: quadratic(be, p, 1, 1)},
		{Name: "b", Support: quadratic(be, p, 3, -2), Query: quadratic(be, p, 0, 2)},
	})
	require.NoError(t, err)
	assert.Equal(t, []float64{0.8125, 2.25}, download(be, p))
	// Query losses: ½(0.25) and ½(4 + 4); mean (0.125 + 4)/2.
	assert.Equal(t, 2.0625, st.QueryLoss)
	// The gradients are left at zero.
	assert.Equal(t, []float32{0, 0}, be.Download(p.G))
}

func TestFOMAMLStepAdam(t *testing.T) {
	be := cpu.New()
	p := vecParam(be, 1, 2)
	l, err := NewLearner(be, []*engine.Param{p},
		InnerConfig{Steps: 1, LR: 0.5, Optimizer: SGD},
		OuterConfig{Algo: FOMAML, LR: 0.25, Steps: 2, Adam: true})
	require.NoError(t, err)
	defer l.Close()
	// The episodes of TestFOMAMLStepSGD: ḡ = (0.375, −1). Adam's first
	// step has m̂ = ḡ and v̂ = ḡ², so θ moves by ε·ḡ/(|ḡ| + 1e-8).
	_, err = l.Step([]Episode{
		{Name: "a", Support: quadratic(be, p, 0, 0), Query: quadratic(be, p, 1, 1)},
		{Name: "b", Support: quadratic(be, p, 3, -2), Query: quadratic(be, p, 0, 2)},
	})
	require.NoError(t, err)
	want := []float64{1 - 0.25*0.375/(0.375+1e-8), 2 + 0.25*1/(1+1e-8)}
	assert.InDeltaSlice(t, want, download(be, p), 1e-6)
}

func TestFOMAMLNeedsQuery(t *testing.T) {
	be := cpu.New()
	p := vecParam(be, 1)
	l, err := NewLearner(be, []*engine.Param{p}, InnerConfig{Steps: 1, LR: 0.1, Optimizer: SGD}, OuterConfig{Algo: FOMAML, LR: 1, Steps: 1})
	require.NoError(t, err)
	defer l.Close()
	_, err = l.Step([]Episode{{Name: "a", Support: quadratic(be, p, 0)}})
	require.ErrorContains(t, err, "needs a query set")
	assert.Equal(t, []float64{1}, download(be, p), "θ is restored after an error")
}

func TestAdaptAdamW(t *testing.T) {
	be := cpu.New()
	p := vecParam(be, 1, -2)
	p.Decay = true
	cfg := InnerConfig{Steps: 2, LR: 0.1, Optimizer: AdamW, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.5}
	res, err := Adapt(be, []*engine.Param{p}, quadratic(be, p, 0, 0), cfg)
	require.NoError(t, err)
	// torch.optim.AdamW in float64, step by step.
	w := []float64{1, -2}
	m, v := []float64{0, 0}, []float64{0, 0}
	for k := 1; k <= 2; k++ {
		for i := range w {
			g := w[i]
			w[i] *= 1 - cfg.LR*cfg.WeightDecay
			m[i] = cfg.Beta1*m[i] + (1-cfg.Beta1)*g
			v[i] = cfg.Beta2*v[i] + (1-cfg.Beta2)*g*g
			mh := m[i] / (1 - math.Pow(cfg.Beta1, float64(k)))
			vh := v[i] / (1 - math.Pow(cfg.Beta2, float64(k)))
			w[i] -= cfg.LR * mh / (math.Sqrt(vh) + cfg.Eps)
		}
	}
	assert.InDeltaSlice(t, w, download(be, p), 1e-6)
	assert.Equal(t, 2.5, res.FirstLoss)
}

func TestAdaptClipsGlobalNorm(t *testing.T) {
	be := cpu.New()
	p := vecParam(be, 3, 4)
	// ‖g‖ = 5, clipped to 1 (coefficient 1/(5 + 1e-6)): w ← w − g/5.
	_, err := Adapt(be, []*engine.Param{p}, quadratic(be, p, 0, 0), InnerConfig{Steps: 1, LR: 1, Optimizer: SGD, MaxGradNorm: 1})
	require.NoError(t, err)
	coef := 1 / (5 + 1e-6)
	assert.InDeltaSlice(t, []float64{3 - 3*coef, 4 - 4*coef}, download(be, p), 1e-6)
}

func TestAdaptRejectsDivergence(t *testing.T) {
	be := cpu.New()
	p := vecParam(be, 1)
	_, err := Adapt(be, []*engine.Param{p}, func() (float64, error) { return math.Inf(1), nil }, InnerConfig{Steps: 1, LR: 1, Optimizer: SGD})
	require.ErrorContains(t, err, "diverged")
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  InnerConfig
		want string
	}{
		{"negative steps", InnerConfig{Steps: -1, Optimizer: SGD}, "Steps must not be negative, got -1"},
		{"nan lr", InnerConfig{LR: math.NaN(), Optimizer: SGD}, "LR must be a non-negative number, got NaN"},
		{"clip", InnerConfig{MaxGradNorm: -1, Optimizer: SGD}, "MaxGradNorm must not be negative, got -1"},
		{"optimizer", InnerConfig{Optimizer: "lion"}, `Optimizer "lion": unknown optimizer (want sgd or adamw)`},
		{"adam beta1", InnerConfig{Optimizer: AdamW, Beta1: 1, Eps: 1e-8}, "Beta1 must be in [0, 1), got 1"},
		{"adam beta2", InnerConfig{Optimizer: AdamW, Beta2: -1, Eps: 1e-8}, "Beta2 must be in [0, 1), got -1"},
		{"adam eps", InnerConfig{Optimizer: AdamW}, "Eps must be positive, got 0"},
		{"adam decay", InnerConfig{Optimizer: AdamW, Eps: 1e-8, WeightDecay: -1}, "WeightDecay must not be negative, got -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			require.EqualError(t, err, tc.want)
			fieldpaths.RequireFieldError(t, err, InnerConfig{})
		})
	}
	_, err := ParseAlgo("maml")
	require.ErrorContains(t, err, "reptile or fomaml")
}

// Each wrong meta-training setting names its field by its path in
// MetaConfig, the inner loop's under Inner.
func TestMetaConfigValidation(t *testing.T) {
	valid := func() MetaConfig {
		return MetaConfig{
			Inner: InnerConfig{Steps: 1, Optimizer: SGD}, Outer: OuterConfig{Algo: FOMAML, LR: 1, Steps: 1},
			MetaBatch: 1, Shots: 1, Query: 1, EvalQuery: 1,
		}
	}
	for _, tc := range []struct {
		edit func(*MetaConfig)
		want string
	}{
		{func(c *MetaConfig) { c.Outer.Steps = 0 }, "Outer.Steps must be at least 1, got 0"},
		{func(c *MetaConfig) { c.MetaBatch = 0 }, "MetaBatch must be at least 1, got 0"},
		{func(c *MetaConfig) { c.Shots = 0 }, "Shots must be at least 1, got 0"},
		{func(c *MetaConfig) { c.Query = -1 }, "Query must not be negative, got -1"},
		{func(c *MetaConfig) { c.Query = 0 }, "Query must be at least 1 with FOMAML"},
		{func(c *MetaConfig) { c.Inner.Steps = 0 }, "Inner.Steps must be at least 1, got 0"},
		{func(c *MetaConfig) { c.Outer.LR = math.Inf(1) }, "Outer.LR must be a non-negative number, got +Inf"},
		{func(c *MetaConfig) { c.EvalEvery = -1 }, "EvalEvery must not be negative, got -1"},
		{func(c *MetaConfig) { c.EvalTasks = -1 }, "EvalTasks must not be negative, got -1"},
		{func(c *MetaConfig) { c.EvalQuery = 0 }, "EvalQuery must be at least 1, got 0"},
		{func(c *MetaConfig) { c.Inner.LR = -1 }, "Inner.LR must be a non-negative number, got -1"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			c := valid()
			tc.edit(&c)
			err := c.Validate()
			require.ErrorContains(t, err, tc.want)
			fieldpaths.RequireFieldError(t, err, MetaConfig{})
		})
	}
	c := valid()
	require.NoError(t, c.Validate())
	c.Outer.Algo, c.Query = Reptile, 0
	require.NoError(t, c.Validate(), "Reptile needs no query set")
}
