package continual

import (
	"errors"
	"fmt"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/train"
)

// Fisher returns the diagonal empirical Fisher information of params
// (trainable parameters of m) on examples: the mean over examples of the
// squared gradient of each example's mean token loss, one tensor per
// parameter. Each example is its own backward pass (batch size 1), so
// the squares are per example, not of a batch mean. Examples are
// truncated to seqLen. The parameters' gradients are zero afterwards.
func Fisher(m engine.CausalLM, params []*engine.Param, examples []data.Example, seqLen int) ([]*engine.Tensor, error) {
	if len(examples) == 0 {
		return nil, errors.New("fisher: no examples")
	}
	be := m.Backend()
	loader, err := data.NewLoader(&data.Dataset{Name: "fisher", Examples: examples}, data.LoaderConfig{BatchSize: 1, SeqLen: seqLen})
	if err != nil {
		return nil, fmt.Errorf("fisher: %w", err)
	}
	n := loader.BatchesPerEpoch()
	if n == 0 {
		return nil, errors.New("fisher: no example has a token to score")
	}
	fisher := make([]*engine.Tensor, len(params))
	sq := make([]*engine.Tensor, len(params))
	for i, p := range params {
		if p.G == nil {
			return nil, fmt.Errorf("fisher: parameter %s has no gradient buffer (not trainable)", p.Name)
		}
		fisher[i] = be.Alloc(engine.Float32, p.W.Shape()...)
		sq[i] = be.Alloc(engine.Float32, p.W.Shape()...)
	}
	defer func() {
		for _, t := range sq {
			be.Free(t)
		}
	}()
	zero := func() {
		for _, p := range params {
			be.Fill(p.G, 0)
		}
	}
	zero()
	for k := range n {
		hb := loader.Batch(0, k)
		if _, err := train.ForwardBatch(m, hb, true, float32(1/float64(train.Counted(m, hb)))); err != nil {
			zero()
			return nil, fmt.Errorf("fisher: %w", err)
		}
		for i, p := range params {
			be.Mul(sq[i], p.G, p.G)
			be.Axpy(fisher[i], sq[i], float32(1/float64(n)))
			be.Fill(p.G, 0)
		}
	}
	return fisher, be.Synchronize()
}

// EWC is elastic weight consolidation (Kirkpatrick et al. 2017): after
// each task the parameters θ* it ended at and their Fisher F are kept,
// and later training pays λ·Σ F·(θ − θ*)² for moving them. Separate EWC
// keeps one anchor per task and sums their penalties; online EWC
// (Schwarz et al. 2018) keeps one, with F ← γ·F + F_new and θ* the
// latest parameters. It implements train.Penalty.
type EWC struct {
	be      engine.Backend
	lambda  float64
	online  bool
	gamma   float64
	names   []string
	anchors []ewcAnchor
	diff    []*engine.Tensor // θ − θ*, per parameter
	fd      []*engine.Tensor // F ⊙ (θ − θ*), per parameter
	acc     *engine.Tensor   // one-element accumulator of the penalty
}

type ewcAnchor struct {
	fisher, theta []*engine.Tensor
}

// NewEWC returns an EWC penalty of strength lambda with no anchor yet
// (its penalty is 0 until Consolidate). online selects online EWC with
// decay gamma.
func NewEWC(be engine.Backend, lambda float64, online bool, gamma float64) *EWC {
	return &EWC{be: be, lambda: lambda, online: online, gamma: gamma}
}

// Consolidate ends a task: params are the parameters as trained (copied
// as θ*) and fisher their Fisher (taken over by the EWC).
func (e *EWC) Consolidate(params []*engine.Param, fisher []*engine.Tensor) error {
	if len(fisher) != len(params) {
		return fmt.Errorf("ewc: %d Fisher tensors for %d parameters", len(fisher), len(params))
	}
	if err := e.checkParams(params); err != nil {
		return err
	}
	theta := make([]*engine.Tensor, len(params))
	for i, p := range params {
		theta[i] = e.be.Alloc(engine.Float32, p.W.Shape()...)
		e.be.Copy(theta[i], p.W)
	}
	if !e.online || len(e.anchors) == 0 {
		e.anchors = append(e.anchors, ewcAnchor{fisher: fisher, theta: theta})
		return nil
	}
	a := &e.anchors[0]
	for i := range params {
		e.be.Scale(a.fisher[i], float32(e.gamma))
		e.be.Axpy(a.fisher[i], fisher[i], 1)
		e.be.Free(fisher[i])
		e.be.Free(a.theta[i])
	}
	a.theta = theta
	return nil
}

// checkParams makes sure every call sees the same parameters in the
// same order (the anchors are stored by position).
func (e *EWC) checkParams(params []*engine.Param) error {
	if e.names == nil {
		for _, p := range params {
			e.names = append(e.names, p.Name)
		}
		return nil
	}
	if len(params) != len(e.names) {
		return fmt.Errorf("ewc: %d trainable parameters, but the anchors hold %d", len(params), len(e.names))
	}
	for i, p := range params {
		if p.Name != e.names[i] {
			return fmt.Errorf("ewc: trainable parameter %d is %s, but the anchors hold %s", i, p.Name, e.names[i])
		}
	}
	return nil
}

// AddGrad adds 2λ·Σ F⊙(θ − θ*) to every parameter's gradient and
// returns λ·Σ F·(θ − θ*)² (train.Penalty).
func (e *EWC) AddGrad(params []*engine.Param) (float64, error) {
	if len(e.anchors) == 0 {
		return 0, nil
	}
	if err := e.checkParams(params); err != nil {
		return 0, err
	}
	if e.acc == nil {
		e.acc = e.be.Alloc(engine.Float32, 1, 1)
		for _, p := range params {
			e.diff = append(e.diff, e.be.Alloc(engine.Float32, p.W.Shape()...))
			e.fd = append(e.fd, e.be.Alloc(engine.Float32, p.W.Shape()...))
		}
	}
	e.be.Fill(e.acc, 0)
	for _, a := range e.anchors {
		for i, p := range params {
			n := p.W.Len()
			e.be.Copy(e.diff[i], p.W)
			e.be.Axpy(e.diff[i], a.theta[i], -1)
			e.be.Mul(e.fd[i], a.fisher[i], e.diff[i])
			e.be.Axpy(p.G, e.fd[i], float32(2*e.lambda))
			// Σ F·d² as the dot product of F⊙d and d.
			e.be.Gemm(e.acc, e.fd[i].Reshape(1, n), e.diff[i].Reshape(1, n), false, true, float32(e.lambda), 1)
		}
	}
	return float64(e.be.Download(e.acc)[0]), nil
}

// Anchors returns the number of anchors held (tasks consolidated, or 1
// for online EWC after the first).
func (e *EWC) Anchors() int { return len(e.anchors) }
