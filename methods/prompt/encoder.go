package prompt

import (
	"fmt"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/model"
)

// table is prompt tuning's model.Prompt: the virtual tokens are a
// trainable [P, hidden] table (or, for inference, PEFT's saved
// prompt_embeddings, frozen).
type table struct{ e *engine.Param }

// Params returns the table.
func (p *table) Params() []*engine.Param { return []*engine.Param{p.e} }

// NumTokens returns P.
func (p *table) NumTokens() int { return p.e.W.Dim(0) }

// Forward returns the table itself.
func (p *table) Forward(train bool) *engine.Tensor { return p.e.W }

// Backward accumulates the batch-summed gradient into the table's.
func (p *table) Backward(d *engine.Tensor) {
	if g := model.Grad(p.e); g != nil {
		p.e.W.Backend().Axpy(g, d, 1)
	}
}

// EncoderType is P-Tuning's encoder_reparameterization_type.
type EncoderType string

const (
	// EncoderMLP is Linear(D, H) ReLU Linear(H, H) ReLU Linear(H, D).
	EncoderMLP EncoderType = "MLP"
	// EncoderLSTM is a bidirectional LSTM(D → H) followed by Linear(2H,
	// 2H) ReLU Linear(2H, D).
	EncoderLSTM EncoderType = "LSTM"
)

// ParseEncoderType accepts "mlp" or "lstm" in any case.
func ParseEncoderType(s string) (EncoderType, error) {
	switch strings.ToUpper(s) {
	case "MLP":
		return EncoderMLP, nil
	case "LSTM":
		return EncoderLSTM, nil
	}
	return "", fmt.Errorf("unknown P-Tuning encoder %q (want mlp or lstm)", s)
}

// encoderPrefix starts the name of every P-Tuning encoder tensor, as in
// PeftModel's state dict without the adapter name.
const encoderPrefix = "prompt_encoder."

// encoder is P-Tuning's prompt encoder (PEFT's PromptEncoder in training
// mode), a model.Prompt whose virtual tokens are encoder(embedding).
type encoder struct {
	be      engine.Backend
	typ     EncoderType
	P, D, H int

	emb  *engine.Param    // prompt_encoder.embedding.weight [P, D]
	lstm *lstm            // nil for the MLP encoder
	head []*model.Dense   // mlp_head.0, .2 (and .4 for the MLP encoder)
	z, a []*engine.Tensor // pre-activation and ReLU output after each head layer but the last
	out  *engine.Tensor   // [P, D]

	dz, da []*engine.Tensor // their gradients (backward scratch)
	dLSTM  *engine.Tensor   // gradient of the LSTM's output [P, 2H]
}

// newEncoder allocates an encoder with zero tensors. layers is
// encoder_num_layers (used by the LSTM only, as in PEFT).
func newEncoder(be engine.Backend, typ EncoderType, P, D, H, layers int) *encoder {
	e := &encoder{be: be, typ: typ, P: P, D: D, H: H}
	e.emb = &engine.Param{Name: encoderPrefix + "embedding.weight", W: be.Alloc(engine.Float32, P, D), Decay: true}
	dense := func(i, in, out int) *model.Dense {
		name := fmt.Sprintf("%smlp_head.%d.", encoderPrefix, i)
		return &model.Dense{
			Weight: &engine.Param{Name: name + "weight", W: be.Alloc(engine.Float32, out, in), Decay: true},
			Bias:   &engine.Param{Name: name + "bias", W: be.Alloc(engine.Float32, out)},
		}
	}
	var widths []int
	if typ == EncoderLSTM {
		e.lstm = newLSTM(be, encoderPrefix+"lstm_head.", P, D, H, layers)
		e.head = []*model.Dense{dense(0, 2*H, 2*H), dense(2, 2*H, D)}
		widths = []int{2 * H}
	} else {
		e.head = []*model.Dense{dense(0, D, H), dense(2, H, H), dense(4, H, D)}
		widths = []int{H, H}
	}
	for _, w := range widths {
		e.z = append(e.z, be.Alloc(engine.Float32, P, w))
		e.a = append(e.a, be.Alloc(engine.Float32, P, w))
	}
	e.out = be.Alloc(engine.Float32, P, D)
	return e
}

// Params returns the embedding, the LSTM's tensors (if any) and the
// head's, in PEFT's state-dict order.
func (e *encoder) Params() []*engine.Param {
	out := []*engine.Param{e.emb}
	if e.lstm != nil {
		out = append(out, e.lstm.params()...)
	}
	for _, d := range e.head {
		out = append(out, d.Params()...)
	}
	return out
}

// NumTokens returns P.
func (e *encoder) NumTokens() int { return e.P }

// headInput returns what the MLP head reads.
func (e *encoder) headInput() *engine.Tensor {
	if e.lstm != nil {
		return e.lstm.outs[len(e.lstm.outs)-1]
	}
	return e.emb.W
}

// Forward computes the virtual tokens [P, D].
func (e *encoder) Forward(train bool) *engine.Tensor {
	x := e.emb.W
	if e.lstm != nil {
		x = e.lstm.forward(x)
	} else {
		x = e.emb.Compute()
	}
	// Products read compute copies and write activations of their dtype
	// (bfloat16 under mixed precision); the virtual tokens stay float32.
	dt := e.head[0].Weight.Compute().DType()
	last := len(e.head) - 1
	for i, lin := range e.head {
		if i == last {
			lin.Forward(e.out, x, train)
			break
		}
		e.z[i] = model.ActBuffer(e.be, e.z[i], dt, e.z[i].Shape()...)
		e.a[i] = model.ActBuffer(e.be, e.a[i], dt, e.a[i].Shape()...)
		lin.Forward(e.z[i], x, train)
		e.be.Activation(e.a[i], e.z[i], engine.ActReLU)
		x = e.a[i]
	}
	return e.out
}

// Backward backpropagates d, the gradient of the last Forward's output,
// into every trainable tensor of the encoder.
func (e *encoder) Backward(d *engine.Tensor) {
	be := e.be
	if e.dz == nil {
		e.dz, e.da = make([]*engine.Tensor, len(e.z)), make([]*engine.Tensor, len(e.z))
		if e.lstm != nil {
			e.dLSTM = be.Alloc(engine.Float32, e.P, 2*e.H)
		}
	}
	for i, z := range e.z {
		e.dz[i] = model.ActBuffer(be, e.dz[i], z.DType(), z.Shape()...)
		e.da[i] = model.ActBuffer(be, e.da[i], z.DType(), z.Shape()...)
	}
	dcur := d
	for i := len(e.head) - 1; i > 0; i-- {
		be.Fill(e.da[i-1], 0)
		e.head[i].Backward(e.da[i-1], dcur, e.a[i-1])
		be.Fill(e.dz[i-1], 0)
		be.ActivationBackward(e.dz[i-1], e.da[i-1], e.z[i-1], engine.ActReLU)
		dcur = e.dz[i-1]
	}
	if e.lstm == nil {
		e.head[0].Backward(model.Grad(e.emb), dcur, e.emb.Compute())
		return
	}
	be.Fill(e.dLSTM, 0)
	e.head[0].Backward(e.dLSTM, dcur, e.headInput())
	e.lstm.backward(e.dLSTM, model.Grad(e.emb))
}

// release frees the encoder's buffers (not its parameters).
func (e *encoder) release() {
	var ts []*engine.Tensor
	ts = append(ts, e.z...)
	ts = append(ts, e.a...)
	ts = append(ts, e.dz...)
	ts = append(ts, e.da...)
	ts = append(ts, e.out)
	if e.dLSTM != nil {
		ts = append(ts, e.dLSTM)
	}
	for _, t := range ts {
		e.be.Free(t)
	}
}
