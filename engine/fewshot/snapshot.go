package fewshot

import "github.com/gotune/gotune/engine"

// Snapshot holds a copy of the values of a parameter set, on the
// parameters' backend: the meta-parameters θ that every episode starts
// from.
type Snapshot struct {
	be     engine.Backend
	params []*engine.Param
	values []*engine.Tensor
}

// Take copies the current values of params.
func Take(be engine.Backend, params []*engine.Param) *Snapshot {
	s := &Snapshot{be: be, params: params, values: make([]*engine.Tensor, len(params))}
	for i, p := range params {
		s.values[i] = be.Alloc(engine.Float32, p.W.Shape()...)
		be.Copy(s.values[i], p.W)
	}
	return s
}

// Restore writes the snapshot back into the parameters (and their
// compute copies, under mixed precision).
func (s *Snapshot) Restore() {
	for i, p := range s.params {
		s.be.Copy(p.W, s.values[i])
	}
	engine.RefreshCompute(s.be, s.params)
}

// Update sets the snapshot to the parameters' current values.
func (s *Snapshot) Update() {
	for i, p := range s.params {
		s.be.Copy(s.values[i], p.W)
	}
}

// Values returns the snapshot's tensors, in the order of its parameters.
func (s *Snapshot) Values() []*engine.Tensor { return s.values }

// Free releases the copies.
func (s *Snapshot) Free() {
	for _, t := range s.values {
		s.be.Free(t)
	}
	s.values = nil
}

// Trainable returns the parameters of ps marked trainable, in order.
func Trainable(ps []*engine.Param) []*engine.Param {
	var out []*engine.Param
	for _, p := range ps {
		if p.Trainable {
			out = append(out, p)
		}
	}
	return out
}
