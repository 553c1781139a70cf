package model

import (
	"fmt"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/safetensors"
)

// source is the checkpoint a model was loaded from, kept open while some
// parameter is stored in bfloat16 but its checkpoint tensor is more
// precise (F32, F16): SetPrecision re-reads such a tensor for a float32
// master, and Save writes the checkpoint's values for a bfloat16 copy
// that still holds them. The open files stay readable if the folder is
// replaced or removed meanwhile (a checkpoint rotated away by
// --save-total-limit).
type source struct {
	set   *safetensors.Set
	dir   string
	names map[string]string // parameter name -> stored tensor name
}

// keepSource records set as m's source when some parameter is stored in
// bfloat16 from a more precise tensor, and closes it otherwise.
func (m *Transformer) keepSource(set *safetensors.Set, dir string, stored map[string]string) {
	m.src = &source{set: set, dir: dir, names: stored}
	m.dropSource()
}

// dropSource closes the source once no parameter needs it.
func (m *Transformer) dropSource() {
	if m.src == nil {
		return
	}
	for _, p := range m.base {
		if m.src.lossy(p) {
			return
		}
	}
	m.src.set.Close()
	m.src = nil
}

// lossy reports whether p is stored in bfloat16 while its checkpoint
// tensor holds more precision.
func (s *source) lossy(p *engine.Param) bool {
	if p.W.DType() != engine.BFloat16 {
		return false
	}
	info, ok := s.set.Info(s.names[p.Name])
	return ok && info.DType != safetensors.BF16
}

// read returns p's checkpoint values as float32.
func (s *source) read(p *engine.Param) ([]float32, error) {
	data, _, err := s.set.Float32(s.names[p.Name])
	if err != nil {
		return nil, fmt.Errorf("model: re-reading %s: %w", s.dir, err)
	}
	return data, nil
}

// loadMasters gives every parameter that policy p stores in float32 (the
// trainable ones; all under PrecisionFP32) but that is held in bfloat16
// from a more precise checkpoint tensor its exact float32 values, one
// tensor at a time. Up-casting the bfloat16 copy instead would lose the
// low bits of an F32 or F16 checkpoint; from a BF16 checkpoint it is
// exact, and engine.ApplyPrecision does it.
func (m *Transformer) loadMasters(p engine.Precision) error {
	if m.src == nil {
		return nil
	}
	for _, q := range m.base {
		if (!q.Trainable && p.ActDType() != engine.Float32) || !m.src.lossy(q) {
			continue
		}
		data, err := m.src.read(q)
		if err != nil {
			return err
		}
		w := m.be.Alloc(engine.Float32, q.W.Shape()...)
		m.be.Upload(w, data)
		m.be.Free(q.W)
		q.W = w
	}
	return nil
}

// savedValues returns the values Save writes for p: its checkpoint's
// values when p is a bfloat16 copy of a more precise tensor that still
// holds exactly their rounding (untouched since loading), so saving a
// frozen layer loses nothing; else p's current values.
func (m *Transformer) savedValues(p *engine.Param) ([]float32, error) {
	cur := m.be.Download(p.W)
	if m.src == nil || !m.src.lossy(p) {
		return cur, nil
	}
	orig, err := m.src.read(p)
	if err != nil {
		return nil, err
	}
	for i, v := range orig {
		if roundBF16(v) != cur[i] {
			return cur, nil // changed since loading (a merged update)
		}
	}
	return orig, nil
}

// roundBF16 rounds v to bfloat16 (to nearest, ties to even) and back.
func roundBF16(v float32) float32 {
	return safetensors.BF16ToF32(safetensors.F32ToBF16(v))
}
