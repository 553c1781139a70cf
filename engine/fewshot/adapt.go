package fewshot

import (
	"errors"
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/engine/train"
)

// Optimizer names the inner-loop optimizer.
type Optimizer string

// The inner-loop optimizers.
const (
	// SGD is plain gradient descent: W ← W − lr·G.
	SGD Optimizer = "sgd"
	// AdamW is torch.optim.AdamW with fresh moments for every episode
	// (the inner loop of Reptile as Nichol et al. run it).
	AdamW Optimizer = "adamw"
)

// ParseOptimizer validates an optimizer name.
func ParseOptimizer(s string) (Optimizer, error) {
	switch Optimizer(s) {
	case SGD, AdamW:
		return Optimizer(s), nil
	}
	return "", fmt.Errorf("unknown optimizer %q (want sgd or adamw)", s)
}

// InnerConfig configures the inner loop: how a task adapts the
// parameters.
type InnerConfig struct {
	// Steps is the number of optimizer steps (>= 0; 0 leaves the
	// parameters as they are).
	Steps int
	// LR is the learning rate of every step (constant).
	LR float64
	// Optimizer is SGD or AdamW.
	Optimizer Optimizer
	// Beta1, Beta2, Eps and WeightDecay are AdamW's (decay applies to
	// parameters whose Param.Decay is set); SGD ignores them.
	Beta1, Beta2, Eps, WeightDecay float64
	// MaxGradNorm clips the global gradient norm of each step as
	// torch's clip_grad_norm_ does; 0 disables clipping.
	MaxGradNorm float64
}

// Validate reports the first invalid setting as a *fielderr.Error.
func (c *InnerConfig) Validate() error {
	switch {
	case c.Steps < 0:
		return fielderr.Errorf("Steps", "must not be negative, got %d", c.Steps)
	case !(c.LR >= 0) || math.IsInf(c.LR, 0):
		return fielderr.Errorf("LR", "must be a non-negative number, got %v", c.LR)
	case !(c.MaxGradNorm >= 0):
		return fielderr.Errorf("MaxGradNorm", "must not be negative, got %v", c.MaxGradNorm)
	}
	if _, err := ParseOptimizer(string(c.Optimizer)); err != nil {
		return fielderr.Errorf("Optimizer", "%q: unknown optimizer (want sgd or adamw)", c.Optimizer)
	}
	if c.Optimizer != AdamW {
		return nil
	}
	return train.CheckAdamW(c.Beta1, c.Beta2, c.Eps, c.WeightDecay)
}

// GradFunc writes the gradient of a loss at the parameters' current
// values into their gradient buffers Param.G (which it may assume are
// zero) and returns the loss.
type GradFunc func() (float64, error)

// AdaptResult reports the losses an inner loop saw.
type AdaptResult struct {
	// FirstLoss is the loss before the first step, LastLoss before the
	// last one (both NaN when no step ran).
	FirstLoss, LastLoss float64
}

// Adapt runs cfg.Steps optimizer steps on params, each on the gradient
// grad computes, starting from the parameters' current values. The
// gradient buffers are zero before and after. A non-finite loss or
// gradient norm is an error.
func Adapt(be engine.Backend, params []*engine.Param, grad GradFunc, cfg InnerConfig) (AdaptResult, error) {
	res := AdaptResult{FirstLoss: math.NaN(), LastLoss: math.NaN()}
	if len(params) == 0 {
		return res, errors.New("no trainable parameters to adapt")
	}
	var m, v []*engine.Tensor
	if cfg.Optimizer == AdamW {
		m, v = make([]*engine.Tensor, len(params)), make([]*engine.Tensor, len(params))
		for i, p := range params {
			m[i] = be.Alloc(engine.Float32, p.W.Shape()...)
			v[i] = be.Alloc(engine.Float32, p.W.Shape()...)
			be.Fill(m[i], 0)
			be.Fill(v[i], 0)
		}
		defer func() {
			for i := range m {
				be.Free(m[i])
				be.Free(v[i])
			}
		}()
	}
	EnsureGrads(be, params)
	ZeroGrads(be, params)
	for k := 1; k <= cfg.Steps; k++ {
		loss, err := grad()
		if err != nil {
			ZeroGrads(be, params)
			return res, err
		}
		if k == 1 {
			res.FirstLoss = loss
		}
		res.LastLoss = loss
		norm := GradNorm(be, params)
		if math.IsNaN(loss) || math.IsInf(loss, 0) || math.IsNaN(norm) || math.IsInf(norm, 0) {
			ZeroGrads(be, params)
			return res, fmt.Errorf("inner step %d diverged (loss %v, gradient norm %v); try a lower inner learning rate", k, loss, norm)
		}
		if cfg.MaxGradNorm > 0 {
			if coef := cfg.MaxGradNorm / (norm + 1e-6); coef < 1 {
				for _, p := range params {
					be.Scale(p.G, float32(coef))
				}
			}
		}
		for i, p := range params {
			if cfg.Optimizer == SGD {
				be.Axpy(p.W, p.G, float32(-cfg.LR))
				continue
			}
			wd := 0.0
			if p.Decay {
				wd = cfg.WeightDecay
			}
			be.AdamW(p.W, p.G, m[i], v[i], engine.AdamWParams{
				LR: float32(cfg.LR), Beta1: float32(cfg.Beta1), Beta2: float32(cfg.Beta2),
				Eps: float32(cfg.Eps), WeightDecay: float32(wd), Step: k,
			})
		}
		engine.RefreshCompute(be, params)
		ZeroGrads(be, params)
	}
	return res, be.Synchronize()
}

// EnsureGrads gives every parameter of params that lacks one a
// gradient buffer (methods may leave allocating it to the trainer).
func EnsureGrads(be engine.Backend, params []*engine.Param) {
	for _, p := range params {
		if p.G == nil {
			p.G = be.Alloc(engine.Float32, p.W.Shape()...)
			be.Fill(p.G, 0)
		}
	}
}

// ZeroGrads sets every gradient buffer of params to zero.
func ZeroGrads(be engine.Backend, params []*engine.Param) {
	for _, p := range params {
		be.Fill(p.G, 0)
	}
}

// GradNorm returns the global L2 norm of the gradients of params.
func GradNorm(be engine.Backend, params []*engine.Param) float64 {
	acc := be.Alloc(engine.Float32, 1)
	defer be.Free(acc)
	be.Fill(acc, 0)
	for _, p := range params {
		be.SumSquares(acc, p.G)
	}
	return math.Sqrt(float64(be.Download(acc)[0]))
}
