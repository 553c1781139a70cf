package model

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/quant"
)

// QuantDense is a frozen projection whose weight is stored quantized
// (QLoRA's base layers): y = x·Wᵀ + b with W dequantized inside the
// matrix product (engine.Backend.QuantGemm: bfloat16 operands, float32
// accumulation). The weight gets no gradient; the bias, if any, is an
// ordinary parameter.
type QuantDense struct {
	// Name is the weight's Hugging Face name (prefix + ".weight").
	Name string
	// W is the quantized weight, [out, in] (a GPT-2 Conv1D weight is
	// transposed before quantization, as transformers does for bnb).
	W *engine.QuantWeight
	// Bias is [out], or nil.
	Bias *engine.Param
	// Format is the quantization format.
	Format quant.Format
	be     engine.Backend
	conv1D bool // the source was a GPT-2 Conv1D ([in, out]) weight
}

// Backend returns the backend the weight lives on.
func (d *QuantDense) Backend() engine.Backend { return d.be }

// In returns the number of input features.
func (d *QuantDense) In() int { return d.W.Cols }

// Out returns the number of output features.
func (d *QuantDense) Out() int { return d.W.Rows }

// Params returns the bias (the quantized weight is not a parameter).
func (d *QuantDense) Params() []*engine.Param {
	if d.Bias == nil {
		return nil
	}
	return []*engine.Param{d.Bias}
}

// Forward computes y = x·Wᵀ + b.
func (d *QuantDense) Forward(y, x *engine.Tensor, train bool) {
	d.be.QuantGemm(y, x, d.W, true, 1, 0)
	if d.Bias != nil {
		d.be.AddBias(y, d.Bias.W)
	}
}

// Backward accumulates db and dx += dy·W.
func (d *QuantDense) Backward(dx, dy, x *engine.Tensor) {
	if g := Grad(d.Bias); g != nil {
		d.be.SumRows(g, dy)
	}
	if dx != nil {
		d.be.QuantGemm(dx, dy, d.W, false, 1, 1)
	}
}

// QuantStats describes what Quantize did.
type QuantStats struct {
	// Layers is the number of projections quantized.
	Layers int
	// Params is their weights' element count.
	Params int
	// Bytes is the backend storage of the quantized weights.
	Bytes int
}

// BytesPerParam returns the quantized weights' bytes per element.
func (s QuantStats) BytesPerParam() float64 {
	if s.Params == 0 {
		return 0
	}
	return float64(s.Bytes) / float64(s.Params)
}

// quantSkipped reports whether a projection stays unquantized: the LM
// head, as transformers' bitsandbytes integration keeps it
// (get_keys_to_not_convert).
func quantSkipped(name string) bool { return name == "lm_head" || strings.HasSuffix(name, ".lm_head") }

// Quantize replaces every dense projection but the LM head with a
// QuantDense holding its weight quantized with o, one layer at a time,
// and releases the original weight (it stops being a base parameter).
// Call it after loading and before applying a method; only methods that
// keep the base frozen (LoRA and the other PEFT methods) can train on it.
func (m *Transformer) Quantize(o quant.Options) (QuantStats, error) {
	var st QuantStats
	if m.QuantizedLayers() > 0 {
		return st, fmt.Errorf("model: cannot quantize to %s: the base is already quantized (a bitsandbytes checkpoint)", o.Format)
	}
	for _, s := range m.slots {
		d, ok := s.get().(*Dense)
		if !ok || s.set == nil || quantSkipped(s.name) {
			continue
		}
		w := m.be.Download(d.Weight.W)
		rows, cols := d.Out(), d.In()
		if d.Conv1D {
			w = transposed(w, cols, rows)
		}
		q, err := quant.Quantize(w, rows, cols, o)
		if err != nil {
			return st, fmt.Errorf("model: quantize %s: %w", d.Weight.Name, err)
		}
		qd := m.putQuantized(s, d, q)
		st.Layers++
		st.Params += rows * cols
		st.Bytes += qd.W.Bytes()
	}
	return st, nil
}

// putQuantized replaces the Dense d in slot s with a QuantDense holding
// q and drops d's weight from the base parameters.
func (m *Transformer) putQuantized(s slot, d *Dense, q *quant.Quantized) *QuantDense {
	qd := &QuantDense{Name: d.Weight.Name, W: quant.Upload(m.be, q), Bias: d.Bias, Format: q.Format, be: m.be, conv1D: d.Conv1D}
	s.set(qd)
	m.dropBase(d.Weight)
	return qd
}

// quantizedAtLoad returns the predicate of the projection weights built
// without float storage because they are loaded quantized: those a
// bitsandbytes checkpoint stores quantized, or with o every one
// Quantize would take. nil: none.
func quantizedAtLoad(w weights, opt Options) func(string) bool {
	if bw, ok := w.(*bnbWeights); ok {
		return func(n string) bool { _, q := bw.states[n]; return q }
	}
	if w != nil && opt.Quantize.Format != quant.None {
		return func(n string) bool { return !quantSkipped(strings.TrimSuffix(n, ".weight")) }
	}
	return nil
}

// loadQuantizedWeights fills every projection built without float
// storage (quantizedAtLoad) with a QuantDense, one at a time, before fill
// takes the float tensors: a bitsandbytes weight as stored (codes,
// absmax and code books), or a float weight quantized with o from its
// host copy.
func (m *Transformer) loadQuantizedWeights(w weights, o quant.Options, where string) error {
	bw, isBnb := w.(*bnbWeights)
	if !isBnb && o.Format == quant.None {
		return nil
	}
	stored := map[string]string{} // canonical -> stored name
	for _, n := range w.names() {
		stored[m.canonical(n)] = n
	}
	for _, s := range m.slots {
		d, ok := s.get().(*Dense)
		if !ok || s.set == nil || d.Weight.W != nil {
			continue
		}
		name := stored[d.Weight.Name]
		var q *quant.Quantized
		var err error
		switch {
		case isBnb && d.Conv1D:
			err = fmt.Errorf("tensor %q: bitsandbytes checkpoints of GPT-2 (Conv1D) models are not supported", name)
		case isBnb:
			q, err = bw.quantized(name)
		default:
			q, err = m.quantizeStored(w, d, name, o)
		}
		if err != nil {
			return fmt.Errorf("model: %s: %w", where, err)
		}
		m.putQuantized(s, d, q)
	}
	return nil
}

// quantizeStored quantizes the stored float tensor name of d with o.
func (m *Transformer) quantizeStored(w weights, d *Dense, name string, o quant.Options) (*quant.Quantized, error) {
	data, err := w.float32s(name)
	if err != nil {
		return nil, err
	}
	if i, ok := engine.FirstNonFinite(data); !ok {
		return nil, fmt.Errorf("tensor %q: element %d is %v; the weights are damaged", name, i, data[i])
	}
	if m.d.storage == engine.BFloat16 {
		// What Quantize after a bfloat16 load quantizes (and
		// transformers quantizing a torch_dtype=bfloat16 model).
		data = slices.Clone(data)
		for i, v := range data {
			data[i] = roundBF16(v)
		}
	}
	shape := m.shapes[d.Weight.Name]
	rows, cols := shape[0], shape[1]
	if d.Conv1D {
		rows, cols = cols, rows
		data = transposed(data, cols, rows)
	}
	q, err := quant.Quantize(data, rows, cols, o)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	return q, nil
}

// QuantStats describes the projections the model holds quantized
// directly (not wrapped by a method).
func (m *Transformer) QuantStats() QuantStats {
	var st QuantStats
	for _, s := range m.slots {
		if qd, ok := s.get().(*QuantDense); ok {
			st.Layers++
			st.Params += qd.W.Rows * qd.W.Cols
			st.Bytes += qd.W.Bytes()
		}
	}
	return st
}

// QuantizedLayers returns the number of projections the model holds
// quantized directly (not wrapped by a method): those Quantize made, or
// those a bitsandbytes checkpoint stored.
func (m *Transformer) QuantizedLayers() int { return m.QuantStats().Layers }

// Dequantize replaces every QuantDense the model holds directly (not
// wrapped by a method) with a frozen Dense of its float32 dequantized
// weight, registered again as a base parameter: the base a QLoRA
// adapter is merged into. A model read from a bitsandbytes checkpoint
// then forgets its quantization_config (Config.Quantization), so that
// Save writes a float checkpoint's config.
func (m *Transformer) Dequantize() {
	defer func() {
		if m.QuantizedLayers() == 0 {
			m.cfg.Quantization = nil
		}
	}()
	for _, s := range m.slots {
		qd, ok := s.get().(*QuantDense)
		if !ok {
			continue
		}
		q := quant.Download(m.be, qd.W, qd.Format)
		w, shape := q.Dequantize(), []int{q.Rows, q.Cols}
		if qd.conv1D {
			w, shape = transposed(w, q.Rows, q.Cols), []int{q.Cols, q.Rows}
		}
		p := &engine.Param{Name: qd.Name, W: m.be.Alloc(engine.Float32, shape...), Decay: true}
		m.be.Upload(p.W, w)
		quant.Free(m.be, qd.W)
		m.base = append(m.base, p)
		m.params[p.Name] = p
		s.set(&Dense{Weight: p, Bias: qd.Bias, Conv1D: qd.conv1D})
	}
}

// dropBase removes p from the base parameters and frees its storage.
func (m *Transformer) dropBase(p *engine.Param) {
	m.base = slices.DeleteFunc(m.base, func(q *engine.Param) bool { return q == p })
	delete(m.params, p.Name)
	for _, t := range []*engine.Tensor{p.W, p.C, p.G} {
		if t != nil {
			m.be.Free(t)
		}
	}
	p.W, p.C, p.G = nil, nil, nil
}

// transposed returns the [cols, rows] transpose of a row-major
// [rows, cols] matrix.
func transposed(v []float32, rows, cols int) []float32 {
	out := make([]float32, len(v))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = v[r*cols+c]
		}
	}
	return out
}
