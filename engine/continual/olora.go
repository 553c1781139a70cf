package continual

import (
	"fmt"

	"github.com/gotune/gotune/engine"
)

// LowRankAdapter is what O-LoRA needs of a task's LoRA adapter.
type LowRankAdapter interface {
	// DownProjections returns every layer's A factor ([r, in], PEFT's
	// lora_A), in an order that is the same for every task's adapter.
	DownProjections() []*engine.Param
	// MergeAndRemove folds the adapter's update into the model's frozen
	// weights and unwraps it: the model then computes the same function
	// (base plus every earlier task's update, summed) with the adapter
	// gone.
	MergeAndRemove() error
}

// OLoRA is orthogonal-subspace LoRA (Wang et al. 2023): each task trains
// a fresh LoRA while earlier tasks' adapters stay frozen and summed into
// the model, and the new A factors pay λ₁·Σ ‖A_old·A_newᵀ‖²_F (the
// paper's ‖A_oldᵀA_new‖² in PEFT's [r, in] layout) per layer and earlier
// task, which pushes the new update's input subspace away from the old
// ones. It implements train.Penalty.
type OLoRA struct {
	be     engine.Backend
	lambda float64
	old    [][]*engine.Tensor // per earlier task, per layer: a copy of A
	cur    []*engine.Param    // the current adapter's A factors
	prod   [][]*engine.Tensor // per earlier task, per layer: A_old·A_newᵀ
	acc    *engine.Tensor
}

// NewOLoRA returns an O-LoRA penalty of strength lambda with no earlier
// task.
func NewOLoRA(be engine.Backend, lambda float64) *OLoRA {
	return &OLoRA{be: be, lambda: lambda, acc: be.Alloc(engine.Float32, 1)}
}

// Begin makes a the adapter being trained; its A factors must match the
// earlier ones' layers.
func (o *OLoRA) Begin(a LowRankAdapter) error {
	cur := a.DownProjections()
	for t, old := range o.old {
		if len(old) != len(cur) {
			return fmt.Errorf("o-lora: the adapter has %d layers, task %d's had %d", len(cur), t, len(old))
		}
		for l := range cur {
			if cur[l].W.Cols() != old[l].Cols() {
				return fmt.Errorf("o-lora: %s has %d input features, task %d's layer %d had %d", cur[l].Name, cur[l].W.Cols(), t, l, old[l].Cols())
			}
		}
	}
	o.freeProducts()
	o.cur = cur
	for _, old := range o.old {
		row := make([]*engine.Tensor, len(cur))
		for l := range cur {
			row[l] = o.be.Alloc(engine.Float32, old[l].Rows(), cur[l].W.Rows())
		}
		o.prod = append(o.prod, row)
	}
	return nil
}

// Retire freezes the current adapter a: its A factors are kept for the
// penalty of later tasks and it is merged into the model.
func (o *OLoRA) Retire(a LowRankAdapter) error {
	var kept []*engine.Tensor
	for _, p := range a.DownProjections() {
		t := o.be.Alloc(engine.Float32, p.W.Shape()...)
		o.be.Copy(t, p.W)
		kept = append(kept, t)
	}
	if err := a.MergeAndRemove(); err != nil {
		return fmt.Errorf("o-lora: merging the finished task's adapter: %w", err)
	}
	o.old = append(o.old, kept)
	o.freeProducts()
	o.cur = nil
	return nil
}

// SetOld replaces the earlier tasks' A factors (per task, per layer):
// for tests and for starting from adapters trained elsewhere.
func (o *OLoRA) SetOld(old [][]*engine.Tensor) { o.old = old }

func (o *OLoRA) freeProducts() {
	for _, row := range o.prod {
		for _, t := range row {
			o.be.Free(t)
		}
	}
	o.prod = nil
}

// AddGrad adds 2λ₁·(A_old·A_newᵀ)ᵀ·A_old to each current A factor's
// gradient for every earlier task and returns the penalty
// λ₁·Σ ‖A_old·A_newᵀ‖² (train.Penalty). params is not used: the penalty
// applies to the factors Begin named, which must be trainable.
func (o *OLoRA) AddGrad(_ []*engine.Param) (float64, error) {
	if len(o.old) == 0 {
		return 0, nil
	}
	if o.cur == nil {
		return 0, fmt.Errorf("o-lora: no current adapter (Begin was not called)")
	}
	o.be.Fill(o.acc, 0)
	for t, old := range o.old {
		for l, a := range o.cur {
			if a.G == nil {
				return 0, fmt.Errorf("o-lora: %s is not trainable", a.Name)
			}
			m := o.prod[t][l]
			o.be.Gemm(m, old[l], a.W, false, true, 1, 0)
			o.be.SumSquares(o.acc, m)
			o.be.Gemm(a.G, m, old[l], true, false, float32(2*o.lambda), 1)
		}
	}
	return o.lambda * float64(o.be.Download(o.acc)[0]), nil
}
