package fewshot

import (
	"errors"
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/train"
)

// Algo names a first-order meta-learning algorithm.
type Algo string

// The algorithms.
const (
	// Reptile (Nichol, Achiam and Schulman, 2018): adapt a copy of θ to
	// each task of the meta-batch, then move θ toward the mean adapted
	// parameters: θ ← θ + ε·(φ̄ − θ).
	Reptile Algo = "reptile"
	// FOMAML is first-order MAML (Finn, Abbeel and Levine, 2017): adapt
	// to each task's support set, take the gradient of its query loss at
	// the adapted parameters, and descend θ along their mean:
	// θ ← θ − ε·mean(∇L_query(φ_i)).
	FOMAML Algo = "fomaml"
)

// ParseAlgo validates an algorithm name.
func ParseAlgo(s string) (Algo, error) {
	switch Algo(s) {
	case Reptile, FOMAML:
		return Algo(s), nil
	}
	return "", fmt.Errorf("unknown meta-learning algorithm %q (want reptile or fomaml)", s)
}

// Episode is one task of a meta-batch, as gradient functions on its
// support and query sets.
type Episode struct {
	// Name identifies the task in messages.
	Name string
	// Support is the loss the inner loop adapts on.
	Support GradFunc
	// Query is the loss FOMAML differentiates at the adapted parameters;
	// Reptile evaluates it (when set) only to report it.
	Query GradFunc
}

// OuterConfig configures the meta-update.
type OuterConfig struct {
	// Algo is Reptile or FOMAML.
	Algo Algo
	// LR is the outer step size ε at the first meta-step.
	LR float64
	// Steps is the number of meta-steps; the step size anneals linearly
	// from LR to 0 over them (Reptile's schedule), as train.Linear does.
	Steps int
	// Adam makes FOMAML's outer update an Adam step on the mean query
	// gradient (betas 0.9/0.999, eps 1e-8, moments kept across
	// meta-steps), as MAML's meta-optimizer, instead of plain SGD: query
	// gradients are small, and Adam's steps are about ε whatever their
	// scale. Reptile ignores it.
	Adam bool
}

// StepStats reports one meta-step.
type StepStats struct {
	// Step is 1-based.
	Step int
	// OuterLR is the step size used.
	OuterLR float64
	// SupportLoss is the mean over the episodes of the support loss
	// before adaptation, AdaptedLoss before the last inner step.
	SupportLoss, AdaptedLoss float64
	// QueryLoss is the mean query loss at the adapted parameters (NaN
	// when the episodes have no query function).
	QueryLoss float64
}

// Learner meta-learns the initial values θ of a parameter set.
type Learner struct {
	be     engine.Backend
	params []*engine.Param
	inner  InnerConfig
	outer  OuterConfig
	theta  *Snapshot
	sum    []*engine.Tensor // Σ over the meta-batch of φ_i (Reptile) or of query gradients (FOMAML)
	m, v   []*engine.Tensor // outer Adam moments (FOMAML with Adam)
	step   int
}

// NewLearner starts meta-learning from the parameters' current values.
func NewLearner(be engine.Backend, params []*engine.Param, inner InnerConfig, outer OuterConfig) (*Learner, error) {
	if len(params) == 0 {
		return nil, errors.New("no trainable parameters to meta-learn")
	}
	if err := inner.Validate(); err != nil {
		return nil, err
	}
	if _, err := ParseAlgo(string(outer.Algo)); err != nil {
		return nil, err
	}
	if !(outer.LR >= 0) || math.IsInf(outer.LR, 0) || outer.Steps < 1 {
		return nil, fmt.Errorf("the outer step size must be a non-negative number and the meta-steps at least 1 (got %v, %d)", outer.LR, outer.Steps)
	}
	EnsureGrads(be, params)
	l := &Learner{be: be, params: params, inner: inner, outer: outer, theta: Take(be, params)}
	adam := outer.Algo == FOMAML && outer.Adam
	for _, p := range params {
		l.sum = append(l.sum, be.Alloc(engine.Float32, p.W.Shape()...))
		if adam {
			m, v := be.Alloc(engine.Float32, p.W.Shape()...), be.Alloc(engine.Float32, p.W.Shape()...)
			be.Fill(m, 0)
			be.Fill(v, 0)
			l.m, l.v = append(l.m, m), append(l.v, v)
		}
	}
	return l, nil
}

// OuterLR returns the step size of meta-step k (1-based).
func (l *Learner) OuterLR(k int) float64 {
	return l.outer.LR * train.Linear.Multiplier(k-1, 0, l.outer.Steps)
}

// StepsDone returns the number of meta-steps taken.
func (l *Learner) StepsDone() int { return l.step }

// Step runs one meta-step over a meta-batch of episodes and updates θ.
// The parameters hold θ afterwards (and after an error).
func (l *Learner) Step(episodes []Episode) (StepStats, error) {
	if len(episodes) == 0 {
		return StepStats{}, errors.New("a meta-step needs at least one episode")
	}
	k := l.step + 1
	st := StepStats{Step: k, OuterLR: l.OuterLR(k)}
	for _, t := range l.sum {
		l.be.Fill(t, 0)
	}
	queries := 0
	for _, ep := range episodes {
		l.theta.Restore()
		r, err := Adapt(l.be, l.params, ep.Support, l.inner)
		if err != nil {
			l.theta.Restore()
			return st, fmt.Errorf("meta-step %d, task %s: %w", k, ep.Name, err)
		}
		st.SupportLoss += r.FirstLoss
		st.AdaptedLoss += r.LastLoss
		if ep.Query != nil {
			q, err := ep.Query()
			if err != nil {
				ZeroGrads(l.be, l.params)
				l.theta.Restore()
				return st, fmt.Errorf("meta-step %d, task %s: %w", k, ep.Name, err)
			}
			st.QueryLoss += q
			queries++
		} else if l.outer.Algo == FOMAML {
			l.theta.Restore()
			return st, fmt.Errorf("meta-step %d, task %s: first-order MAML needs a query set", k, ep.Name)
		}
		for i, p := range l.params {
			if l.outer.Algo == FOMAML {
				l.be.Axpy(l.sum[i], p.G, 1)
			} else {
				l.be.Axpy(l.sum[i], p.W, 1)
			}
		}
		ZeroGrads(l.be, l.params)
	}
	n := float64(len(episodes))
	st.SupportLoss /= n
	st.AdaptedLoss /= n
	if queries > 0 {
		st.QueryLoss /= float64(queries)
	} else {
		st.QueryLoss = math.NaN()
	}
	l.step = k
	l.update(st.OuterLR, n)
	return st, l.be.Synchronize()
}

// update applies the meta-update with step size eps to θ, given the sum
// over n episodes, and puts θ into the parameters.
func (l *Learner) update(eps, n float64) {
	for i, th := range l.theta.values {
		if l.m != nil {
			// Adam on the mean gradient ḡ = Σg_i/n.
			l.be.Scale(l.sum[i], float32(1/n))
			l.be.AdamW(th, l.sum[i], l.m[i], l.v[i], engine.AdamWParams{
				LR: float32(eps), Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: l.step,
			})
			continue
		}
		if l.outer.Algo == FOMAML {
			// θ ← θ − ε·(Σ g_i)/n
			l.be.Axpy(th, l.sum[i], float32(-eps/n))
			continue
		}
		// θ ← θ + ε·(Σφ_i/n − θ) = (1 − ε)·θ + (ε/n)·Σφ_i
		l.be.Scale(th, float32(1-eps))
		l.be.Axpy(th, l.sum[i], float32(eps/n))
	}
	l.theta.Restore()
}

// Theta returns the meta-parameters' snapshot (the parameters hold the
// same values between meta-steps).
func (l *Learner) Theta() *Snapshot { return l.theta }

// Close frees the learner's buffers; the parameters keep θ.
func (l *Learner) Close() {
	l.theta.Restore()
	l.theta.Free()
	for _, ts := range [][]*engine.Tensor{l.sum, l.m, l.v} {
		for _, t := range ts {
			l.be.Free(t)
		}
	}
	l.sum, l.m, l.v = nil, nil, nil
}
