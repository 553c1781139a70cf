package lora

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fused"
	"github.com/gotune/gotune/engine/model"
)

// Linear is a model.Linear with a low-rank update (LoRA), in PEFT's
// semantics:
//
//	y = base(x) + s·(drop(x)·Aᵀ)·Bᵀ
//
// with A [r, in], B [out, r] and s = alpha/r (alpha/sqrt(r) for rsLoRA).
// With DoRA (magnitude vector M [out]) it is
//
//	y = base(x) + (g−1)⊙(drop(x)·W₀ᵀ) + g⊙s·(drop(x)·Aᵀ)·Bᵀ,  g = M / ‖W₀ + s·B·A‖
//
// where the norm is taken per output feature (over the input dimension)
// and, as in PEFT and section 4.3 of the DoRA paper, treated as a constant
// in the backward pass. The base weight W₀ stays frozen: it gets no
// gradient (its gradient buffer is released when the adapter is applied).
//
// GPT-2's Conv1D bases (weights stored [in, out]) keep A [r, in] and
// B [out, r], as PEFT's fan_in_fan_out layers do.
type Linear struct {
	// Path is the module's Hugging Face path.
	Path string
	// Base is the wrapped projection.
	Base model.Linear
	// A is lora_A [r, in], B is lora_B [out, r].
	A, B *engine.Param
	// M is DoRA's magnitude vector [out], or nil for plain LoRA.
	M *engine.Param
	// Scale is s, the factor of the low-rank term.
	Scale float32
	// Dropout is the probability with which training passes zero an
	// element of the low-rank branch's input.
	Dropout float32

	dense  *model.Dense // Base when it is a Dense (required for DoRA and merging)
	be     engine.Backend
	in     int
	out    int
	r      int
	rng    *rand.Rand // dropout masks, drawn from src
	src    *rand.PCG  // rng's source, kept to save and restore its state (see Adapter.MarshalRandState)
	merged bool
	saved  *engine.Tensor // the base weight before a DoRA merge
	sc     *scratch       // temporaries, shared by the layers of an Adapter

	// What the backward pass needs from the forward pass (x itself is
	// kept by the model), sized for rows rows and reused between passes.
	rows    int
	xa      *engine.Tensor // [rows, r]: s·drop(x)·Aᵀ
	mask    *engine.Tensor // [rows, in] dropout mask (0 or 1/(1-p)) of the last training pass
	dropped bool           // the last forward applied dropout
	u       *engine.Tensor // DoRA: [rows, out], ∂y/∂g

	// DoRA per-feature vectors.
	g     *engine.Tensor // [out]: M / ‖W₀ + s·B·A‖
	rinv  *engine.Tensor // [out]: 1 / ‖W₀ + s·B·A‖
	dm    *engine.Tensor // [out] scratch
	ones  *engine.Tensor // [in] ones, the RMSNorm weight used to take row norms
	wT    *engine.Tensor // Conv1D only: W₀ᵀ [out, in], cached (W₀ is frozen)
	gInfo bool           // g is valid for inference passes (no training pass since)
}

// newLinear wraps base with zero-initialised factors named after path
// (PEFT's keys). dora adds the magnitude vector, set to the row norms of
// W₀ + s·B·A (PEFT's initial value) by initMagnitude.
func newLinear(path string, base model.Linear, r int, scale, dropout float32, dora bool, seed uint64) (*Linear, error) {
	if base == nil {
		return nil, fmt.Errorf("lora: %s: no module", path)
	}
	var be engine.Backend
	if q, ok := base.(*model.QuantDense); ok { // QLoRA: the weight is no parameter
		be = q.Backend()
	} else {
		params := base.Params()
		if len(params) == 0 {
			return nil, fmt.Errorf("lora: %s: module has no weight", path)
		}
		be = params[0].W.Backend()
	}
	src := rand.NewPCG(seed, 0x64726f70) // "drop"
	l := &Linear{
		Path: path, Base: base, Scale: scale, Dropout: dropout,
		be: be, in: base.In(), out: base.Out(), r: r,
		rng: rand.New(src), src: src,
		sc: &scratch{be: be},
	}
	l.dense, _ = base.(*model.Dense)
	if dora && l.dense == nil {
		return nil, fmt.Errorf("lora: %s: DoRA needs a plain dense projection, found %T", path, base)
	}
	l.A = &engine.Param{Name: key(path, leafA), W: be.Alloc(engine.Float32, r, l.in), Trainable: true, Decay: true}
	l.B = &engine.Param{Name: key(path, leafB), W: be.Alloc(engine.Float32, l.out, r), Trainable: true, Decay: true}
	if dora {
		l.M = &engine.Param{Name: key(path, leafM), W: be.Alloc(engine.Float32, l.out), Trainable: true, Decay: true}
	}
	return l, nil
}

// In returns the number of input features.
func (l *Linear) In() int { return l.in }

// Out returns the number of output features.
func (l *Linear) Out() int { return l.out }

// Rank returns r.
func (l *Linear) Rank() int { return l.r }

// Params returns the base module's parameters followed by A, B and, with
// DoRA, M.
func (l *Linear) Params() []*engine.Param {
	out := append([]*engine.Param(nil), l.Base.Params()...)
	out = append(out, l.A, l.B)
	if l.M != nil {
		out = append(out, l.M)
	}
	return out
}

// AdapterParams returns A, B and, with DoRA, M: what an adapter file holds.
func (l *Linear) AdapterParams() []*engine.Param {
	if l.M != nil {
		return []*engine.Param{l.A, l.B, l.M}
	}
	return []*engine.Param{l.A, l.B}
}

// Merged reports whether the update is folded into the base weight.
func (l *Linear) Merged() bool { return l.merged }

// Changed tells the layer that A, B or M were modified outside a training
// pass (e.g. loaded), so cached DoRA norms must be recomputed.
func (l *Linear) Changed() { l.gInfo = false }

// Scratch slots. A layer's Forward or Backward uses them only within
// the call, so one set serves every layer of an adapter: temporaries cost
// the largest layer's size once, not once per layer.
const (
	slotXD  = iota // [rows, in]: drop(x)
	slotDXD        // [rows, in]: its gradient; DoRA: W₀ + s·B·A
	slotV          // [rows, out]: a bfloat16 output's float32 sum; DoRA: ∂y/∂g (and the RMSNorm output of [out, in])
	slotDXA        // [rows, r]: s·dy·B; DoRA merge: a transpose
	numSlots
)

// scratch holds growable temporary buffers (see the slots above) and
// the host buffer dropout masks are drawn in.
type scratch struct {
	be   engine.Backend
	bufs [numSlots]*engine.Tensor
	host []float32
}

// hostMask returns a host buffer of n elements for drawing a mask.
func (s *scratch) hostMask(n int) []float32 {
	if cap(s.host) < n {
		s.host = make([]float32, n)
	}
	return s.host[:n]
}

// get returns a [rows, cols] Float32 view of slot's buffer, growing it as
// needed.
func (s *scratch) get(slot, rows, cols int) *engine.Tensor {
	return s.getAs(slot, engine.Float32, rows, cols)
}

// getAs is get for a buffer of dtype dt (the activation dtype for
// operands of bfloat16 matrix products), reallocating on a dtype change.
func (s *scratch) getAs(slot int, dt engine.DType, rows, cols int) *engine.Tensor {
	n := rows * cols
	if b := s.bufs[slot]; b == nil || b.Len() < n || b.DType() != dt {
		if b != nil {
			s.be.Free(b)
		}
		s.bufs[slot] = s.be.Alloc(dt, n)
	}
	return s.bufs[slot].Slice(0, n).Reshape(rows, cols)
}

// release frees the buffers.
func (s *scratch) release() {
	for i, b := range s.bufs {
		if b != nil {
			s.be.Free(b)
			s.bufs[i] = nil
		}
	}
	s.host = nil
}

// ensure sizes the buffers kept between forward and backward for rows rows
// of inputs of dtype dt (xa takes the input's dtype: bfloat16 under mixed
// precision, like the projection it feeds).
func (l *Linear) ensure(rows int, dt engine.DType) {
	if l.rows == rows && l.xa != nil && l.xa.DType() == dt {
		return
	}
	l.release()
	l.rows = rows
	l.xa = l.be.Alloc(dt, rows, l.r)
	if l.M != nil {
		l.u = l.be.Alloc(engine.Float32, rows, l.out)
	}
}

// release frees the buffers kept between passes (they are allocated
// again on demand).
func (l *Linear) release() {
	for _, t := range []*engine.Tensor{l.xa, l.mask, l.u} {
		if t != nil {
			l.be.Free(t)
		}
	}
	l.xa, l.mask, l.u = nil, nil, nil
	l.rows = 0
}

// Release frees every buffer the layer allocated for passes (not its
// parameters, nor the scratch it shares); the next pass allocates them
// again.
func (l *Linear) Release() {
	l.release()
	for _, t := range []*engine.Tensor{l.g, l.rinv, l.dm, l.ones, l.wT} {
		if t != nil {
			l.be.Free(t)
		}
	}
	l.g, l.rinv, l.dm, l.ones, l.wT = nil, nil, nil, nil, nil
	l.gInfo = false
}

// newMask draws this pass's dropout mask on the host (seeded, so runs
// repeat) and uploads it: each element is 0 with probability p and
// 1/(1-p) otherwise, torch.nn.Dropout's scaling.
func (l *Linear) newMask() {
	if l.mask == nil || l.mask.Rows() != l.rows {
		if l.mask != nil {
			l.be.Free(l.mask)
		}
		l.mask = l.be.Alloc(engine.Float32, l.rows, l.in)
	}
	p := float64(l.Dropout)
	keep := float32(1 / (1 - p))
	host := l.sc.hostMask(l.mask.Len())
	for i := range host {
		if l.rng.Float64() < p {
			host[i] = 0
		} else {
			host[i] = keep
		}
	}
	l.be.Upload(l.mask, host)
}

// Forward computes y from x (see Linear). Training passes draw a new
// dropout mask.
func (l *Linear) Forward(y, x *engine.Tensor, train bool) {
	if l.merged {
		l.Base.Forward(y, x, train)
		return
	}
	be := l.be
	l.ensure(x.Rows(), x.DType())
	l.dropped = train && l.Dropout > 0
	xl := x
	if l.dropped {
		l.newMask()
		xl = l.sc.getAs(slotXD, x.DType(), l.rows, l.in)
		be.Mul(xl, x, l.mask)
	}
	if l.M != nil {
		l.forwardDoRA(y, x, xl, train)
		return
	}
	if l.fusable() {
		var xlArg *engine.Tensor
		if l.dropped {
			xlArg = xl
		}
		fused.LoRAForward(be, y, l.xa, x, xlArg, l.operands(true))
		return
	}
	// The base output and the update are summed in float32 and rounded
	// once into a bfloat16 y, as the fused recipes do.
	acc := y
	if y.DType() != engine.Float32 {
		acc = l.sc.get(slotV, l.rows, l.out)
	}
	be.Gemm(l.xa, xl, l.A.Compute(), false, true, l.Scale, 0)
	l.Base.Forward(acc, x, train)
	be.Gemm(acc, l.xa, l.B.Compute(), false, true, 1, 1)
	if acc != y {
		be.Copy(y, acc)
	}
}

// fusable reports whether the fused recipes (package fused) compute this
// layer: LoRA or DoRA on a frozen dense projection, in either layout.
func (l *Linear) fusable() bool {
	return l.dense != nil && !model.Trainable(l.dense)
}

// operands returns the layer's operands for the fused recipes, with the
// base's bias when withBias is set.
func (l *Linear) operands(withBias bool) fused.LoRA {
	op := fused.LoRA{W: l.dense.Weight.Compute(), A: l.A.Compute(), B: l.B.Compute(), Scale: l.Scale}
	if l.dense.Conv1D {
		op.Layout = fused.InOut
	}
	if withBias && l.dense.Bias != nil {
		op.Bias = l.dense.Bias.W
	}
	return op
}

var _ model.RandomForward = (*Linear)(nil)

// Backward accumulates the gradients of A, B (and M) from dy and, when dx
// is non-nil, dx += ∂y/∂x·dy. The base weight gets no gradient unless it
// was made trainable (plain LoRA only).
func (l *Linear) Backward(dx, dy, x *engine.Tensor) {
	if l.merged {
		l.Base.Backward(dx, dy, x)
		return
	}
	be := l.be
	xl := x
	if l.dropped {
		// drop(x) again: the scratch it lived in has served other layers.
		xl = l.sc.getAs(slotXD, x.DType(), l.rows, l.in)
		be.Mul(xl, x, l.mask)
	}
	gA, gB := model.Grad(l.A), model.Grad(l.B)
	if l.M != nil {
		l.backwardDoRA(dx, dy, x, xl, gA, gB)
		return
	}
	if l.fusable() {
		var dxl *engine.Tensor
		if l.dropped && dx != nil {
			dxl = l.sc.get(slotDXD, l.rows, l.in)
			be.Fill(dxl, 0)
		}
		fused.LoRABackward(be, dx, dxl, gA, gB, dy, xl, l.xa, l.operands(false))
		if dxl != nil {
			be.Mul(dxl, dxl, l.mask)
			be.Add(dx, dx, dxl)
		}
		return
	}
	if gB != nil {
		be.Gemm(gB, dy, l.xa, true, false, 1, 1) // [out, r] += dyᵀ·(s·xl·Aᵀ)
	}
	dxa := l.sc.getAs(slotDXA, dy.DType(), l.rows, l.r)
	if gA != nil || dx != nil {
		be.Gemm(dxa, dy, l.B.Compute(), false, false, l.Scale, 0) // s·dy·B
	}
	if gA != nil {
		be.Gemm(gA, dxa, xl, true, false, 1, 1) // [r, in] += dxaᵀ·xl
	}
	if dx != nil || model.Trainable(l.Base) {
		l.Base.Backward(dx, dy, x)
	}
	if dx == nil {
		return
	}
	if !l.dropped {
		be.Gemm(dx, dxa, l.A.Compute(), false, false, 1, 1)
		return
	}
	dxd := l.sc.get(slotDXD, l.rows, l.in)
	be.Gemm(dxd, dxa, l.A.Compute(), false, false, 1, 0)
	be.Mul(dxd, dxd, l.mask)
	be.Add(dx, dx, dxd)
}

// forwardDoRA computes the DoRA output from u = xl·W₀ᵀ + s·xl·Aᵀ·Bᵀ
// (one fused LoRA product, kept as ∂y/∂g for the backward pass): without
// dropout (xl == x), y = g⊙u + b; with dropout, y = base(x) − xl·W₀ᵀ +
// g⊙u, computed as (x − xl)·W₀ᵀ + b + g⊙u.
func (l *Linear) forwardDoRA(y, x, xl *engine.Tensor, train bool) {
	be := l.be
	l.updateNorm(train)
	fused.LoRAForward(be, l.u, l.xa, xl, nil, l.operands(false))
	if !l.dropped {
		be.MulCols(y, l.u, l.g)
		if l.dense.Bias != nil {
			be.AddBias(y, l.dense.Bias.W)
		}
		return
	}
	kept := l.sc.get(slotDXD, l.rows, l.in) // x − xl: the dropped part of x
	be.Copy(kept, x)
	be.Axpy(kept, xl, -1)
	l.Base.Forward(y, kept, train)
	v := l.sc.get(slotV, l.rows, l.out)
	be.MulCols(v, l.u, l.g)
	be.Add(y, y, v)
}

// backwardDoRA: with z = g⊙dy, dM += Σ_rows dy⊙u / ‖·‖, and dA, dB and
// the LoRA branch's input gradient come from the fused LoRA backward of
// u with z as its output gradient. Without dropout that is the whole
// input gradient, dx += z·W₀ + s·z·B·A; with dropout dx += dy·W₀ +
// ((z − dy)·W₀ + s·z·B·A) ⊙ mask.
func (l *Linear) backwardDoRA(dx, dy, x, xl, gA, gB *engine.Tensor) {
	be, w := l.be, l.dense.Weight.Compute()
	conv := l.dense.Conv1D
	z := l.sc.get(slotV, l.rows, l.out)
	if gM := model.Grad(l.M); gM != nil {
		be.Mul(z, dy, l.u)
		be.Fill(l.dm, 0)
		be.SumRows(l.dm, z)
		be.Mul(l.dm, l.dm, l.rinv)
		be.Add(gM, gM, l.dm)
	}
	be.MulCols(z, dy, l.g)
	if !l.dropped {
		fused.LoRABackward(be, dx, nil, gA, gB, z, xl, l.xa, l.operands(false))
		return
	}
	var dxd *engine.Tensor
	if dx != nil {
		dxd = l.sc.get(slotDXD, l.rows, l.in)
		be.Fill(dxd, 0)
	}
	fused.LoRABackward(be, nil, dxd, gA, gB, z, xl, l.xa, l.operands(false)) // dxd = s·z·B·A
	if dx == nil {
		return
	}
	be.Axpy(z, dy, -1) // (g−1)⊙dy
	be.Gemm(dxd, z, w, false, conv, 1, 1)
	be.Mul(dxd, dxd, l.mask)
	be.Add(dx, dx, dxd)
	be.Gemm(dx, dy, w, false, conv, 1, 1)
}

// updateNorm computes rinv = 1/‖W₀ + s·B·A‖ per output feature and
// g = M⊙rinv. Training passes always recompute (the factors change every
// step); inference passes reuse the last inference pass's values until a
// training pass or Changed intervenes.
func (l *Linear) updateNorm(train bool) {
	if !train && l.gInfo {
		return
	}
	be := l.be
	if l.g == nil {
		l.g = be.Alloc(engine.Float32, l.out)
		l.rinv = be.Alloc(engine.Float32, l.out)
		l.dm = be.Alloc(engine.Float32, l.out)
	}
	l.rowNormInv(l.rinv, l.combined())
	be.Mul(l.g, l.M.W, l.rinv)
	l.gInfo = !train
}

// combined returns W₀ + s·B·A as [out, in] (W₀ in torch layout,
// transposed for Conv1D), in scratch slot slotDXD.
func (l *Linear) combined() *engine.Tensor {
	be := l.be
	v := l.sc.get(slotDXD, l.out, l.in)
	if l.dense.Conv1D {
		if l.wT == nil {
			l.wT = be.Alloc(engine.Float32, l.out, l.in)
			transpose(be, l.wT, l.dense.Weight.W)
		}
		be.Copy(v, l.wT)
	} else {
		be.Copy(v, l.dense.Weight.W)
	}
	// B·A reads the compute copies (bfloat16 under mixed precision, as
	// PEFT's lora_B(lora_A(eye)) under autocast) with float32 accumulation
	// onto W₀; unlike PEFT, the sum is not rounded to bfloat16 before its
	// float32 norm.
	be.Gemm(v, l.B.Compute(), l.A.Compute(), false, false, l.Scale, 1)
	return v
}

// rowNormInv writes 1/‖v_j‖ for every row j of v into dst. The backend
// has no square root, but RMSNorm with eps 0 and unit weights saves
// exactly rstd_j = 1/sqrt(mean(v_j²)) = sqrt(in)/‖v_j‖.
func (l *Linear) rowNormInv(dst, v *engine.Tensor) {
	be := l.be
	if l.ones == nil {
		l.ones = be.Alloc(engine.Float32, v.Cols())
		be.Fill(l.ones, 1)
	}
	be.RMSNorm(l.sc.get(slotV, v.Rows(), v.Cols()), dst, v, l.ones, 0)
	be.Scale(dst, float32(1/math.Sqrt(float64(v.Cols()))))
}

// transpose writes srcᵀ into dst (src [R, C], dst [C, R]) with one
// strided CopyBlock per row or column, whichever are fewer.
func transpose(be engine.Backend, dst, src *engine.Tensor) {
	R, C := src.Rows(), src.Cols()
	if R <= C {
		for i := 0; i < R; i++ { // row i of src becomes column i of dst
			be.CopyBlock(dst, i, R, src, i*C, 1, C, 1, false)
		}
		return
	}
	for j := 0; j < C; j++ { // column j of src becomes row j of dst
		be.CopyBlock(dst, j*R, 1, src, j, C, R, 1, false)
	}
}

// initMagnitude sets M to the row norms of W₀ + s·B·A, PEFT's initial
// value, which makes the DoRA layer compute exactly the LoRA output.
func (l *Linear) initMagnitude() {
	be := l.be
	v := l.combined()
	// ‖v_j‖ = ‖v_j‖²·(1/‖v_j‖): the squared norms come from
	// RowSumSquares, their inverse square roots from rowNormInv.
	l.rowNormInv(l.M.W, v)
	sq := be.Alloc(engine.Float32, l.out)
	be.RowSumSquares(sq, v)
	be.Mul(l.M.W, l.M.W, sq)
	be.Free(sq)
	l.gInfo = false
}

// Merge folds the update into the base weight, after which the layer
// computes base(x) alone: W₀ += s·B·A for LoRA; for DoRA the base weight
// becomes g⊙(W₀ + s·B·A) row by row (the original is kept for Unmerge).
// The base must be a Dense.
func (l *Linear) Merge() error {
	if l.merged {
		return nil
	}
	if l.dense == nil {
		return fmt.Errorf("lora: %s: cannot merge into a %T", l.Path, l.Base)
	}
	be, w := l.be, l.dense.Weight.W
	if l.M == nil {
		l.addDelta(l.Scale)
		l.merged = true
		l.gInfo = false
		return nil
	}
	l.updateNorm(true)
	l.saved = be.Alloc(engine.Float32, w.Shape()...)
	be.Copy(l.saved, w)
	// Scale rows of the [out, in] combination: columns of its transpose.
	if l.dense.Conv1D {
		l.addDelta(l.Scale) // w is [in, out]: the transpose already
		be.MulCols(w, w, l.g)
	} else {
		v := l.combined()
		vt := l.sc.get(slotDXA, l.in, l.out)
		transpose(be, vt, v)
		be.MulCols(vt, vt, l.g)
		transpose(be, w, vt)
	}
	if l.wT != nil { // W₀ᵀ no longer describes the base weight
		be.Free(l.wT)
		l.wT = nil
	}
	l.merged = true
	l.gInfo = false
	return nil
}

// Unmerge undoes Merge.
func (l *Linear) Unmerge() error {
	if !l.merged {
		return nil
	}
	if l.M == nil {
		l.addDelta(-l.Scale)
	} else {
		l.be.Copy(l.dense.Weight.W, l.saved)
		l.be.Free(l.saved)
		l.saved = nil
	}
	l.merged = false
	l.gInfo = false
	return nil
}

// addDelta adds alpha·B·A to the base weight in its own layout.
func (l *Linear) addDelta(alpha float32) {
	w := l.dense.Weight.W
	if l.dense.Conv1D {
		l.be.Gemm(w, l.A.W, l.B.W, true, true, alpha, 1) // [in, out] += Aᵀ·Bᵀ
	} else {
		l.be.Gemm(w, l.B.W, l.A.W, false, false, alpha, 1) // [out, in] += B·A
	}
}
