package fused

import "github.com/gotune/gotune/engine"

// Composed implements LoRABackend and AdapterBackend from engine.Backend operations: what runs
// on backends without fused kernels (the CPU), and the reference the
// fused kernels are checked against. Scratch tensors are Float32.
type Composed struct{ engine.Backend }

var (
	_ LoRABackend    = Composed{}
	_ AdapterBackend = Composed{}
)

// LoRAForward implements LoRABackend.
func (c Composed) LoRAForward(y, xa, x, xl *engine.Tensor, l LoRA) {
	CheckLoRA("fused.LoRAForward", y, xa, x, xl, l, nil, nil, nil, nil)
	if xl == nil {
		xl = x
	}
	// The base product, bias and update are summed in float32 and a
	// bfloat16 y is rounded once, as the fused kernel's epilogue does.
	acc := c.float32Like(y)
	c.Gemm(xa, xl, l.A, false, true, l.Scale, 0)
	c.Gemm(acc, x, l.W, false, l.TransW(), 1, 0)
	if l.Bias != nil {
		c.AddBias(acc, l.Bias)
	}
	c.Gemm(acc, xa, l.B, false, true, 1, 1)
	c.roundInto(y, acc)
}

// LoRABackward implements LoRABackend.
func (c Composed) LoRABackward(dx, dxl, da, db, dy, xl, xa *engine.Tensor, l LoRA) {
	m, _, _, r := CheckLoRA("fused.LoRABackward", dy, xa, xl, nil, l, dx, dxl, da, db)
	if db != nil {
		c.Gemm(db, dy, xa, true, false, 1, 1)
	}
	if da == nil && dx == nil && dxl == nil {
		return
	}
	dxa := c.Alloc(dy.DType(), m, r) // the fused kernel's dtype for s·dy·B
	defer c.Free(dxa)
	c.Gemm(dxa, dy, l.B, false, false, l.Scale, 0)
	if da != nil {
		c.Gemm(da, dxa, xl, true, false, 1, 1)
	}
	if dx != nil {
		c.Gemm(dx, dy, l.W, false, !l.TransW(), 1, 1)
	}
	switch {
	case dxl != nil:
		c.Gemm(dxl, dxa, l.A, false, false, 1, 1)
	case dx != nil:
		c.Gemm(dx, dxa, l.A, false, false, 1, 1)
	}
}

// AdapterForward implements AdapterBackend.
func (c Composed) AdapterForward(y, pre, hid, x, res *engine.Tensor, a Bottleneck) {
	CheckAdapter("fused.AdapterForward", y, pre, hid, x, res, a, nil, nil, nil, nil, nil, nil)
	// Bfloat16 outputs are computed in float32 and rounded once, as the
	// fused kernels' epilogues do: hid = act(pre) from the unrounded pre.
	pre32, y32 := c.float32Like(pre), c.float32Like(y)
	c.Gemm(pre32, x, a.Down, false, true, 1, 0)
	if a.DownBias != nil {
		c.AddBias(pre32, a.DownBias)
	}
	c.Activation(hid, pre32, a.Act)
	c.Gemm(y32, hid, a.Up, false, true, 1, 0)
	if a.UpBias != nil {
		c.AddBias(y32, a.UpBias)
	}
	if a.Scale != 1 {
		c.Scale(y32, a.Scale)
	}
	c.Add(y32, y32, res)
	c.roundInto(pre, pre32)
	c.roundInto(y, y32)
}

// float32Like returns t when it is Float32, else a Float32 scratch tensor
// of its shape for roundInto.
func (c Composed) float32Like(t *engine.Tensor) *engine.Tensor {
	if t.DType() == engine.Float32 {
		return t
	}
	return c.Alloc(engine.Float32, t.Shape()...)
}

// roundInto copies a float32Like scratch into dst (rounding once) and
// frees it; a no-op when float32Like returned dst itself.
func (c Composed) roundInto(dst, scratch *engine.Tensor) {
	if scratch == dst {
		return
	}
	c.Copy(dst, scratch)
	c.Free(scratch)
}

// AdapterBackward implements AdapterBackend.
func (c Composed) AdapterBackward(dx, dres, dDown, dDownBias, dUp, dUpBias, dy, x, pre, hid *engine.Tensor, a Bottleneck) {
	m, d, r := CheckAdapter("fused.AdapterBackward", dy, pre, hid, x, nil, a, dx, dres, dDown, dDownBias, dUp, dUpBias)
	if dres != nil {
		c.Axpy(dres, dy, 1)
	}
	if dUp != nil {
		c.Gemm(dUp, dy, hid, true, false, a.Scale, 1) // [D, r] += s·dyᵀ·hid
	}
	if dUpBias != nil {
		c.sumRowsScaled(dUpBias, dy, d, a.Scale)
	}
	if dx == nil && dDown == nil && dDownBias == nil {
		return
	}
	dhid := c.Alloc(engine.Float32, m, r)
	defer c.Free(dhid)
	c.Gemm(dhid, dy, a.Up, false, false, a.Scale, 0) // s·dy·Up
	// dpre takes pre's dtype, rounded once from float32 as the fused
	// kernel's epilogue does.
	dpre := c.Alloc(pre.DType(), m, r)
	defer c.Free(dpre)
	dpre32 := c.float32Like(dpre)
	c.Fill(dpre32, 0)
	c.ActivationBackward(dpre32, dhid, pre, a.Act)
	c.roundInto(dpre, dpre32)
	if dDown != nil {
		c.Gemm(dDown, dpre, x, true, false, 1, 1) // [r, D] += dpreᵀ·x
	}
	if dDownBias != nil {
		c.SumRows(dDownBias, dpre)
	}
	if dx != nil {
		c.Gemm(dx, dpre, a.Down, false, false, 1, 1)
	}
}

// sumRowsScaled accumulates dst[j] += s·Σ_rows x[:, j] (n columns).
func (c Composed) sumRowsScaled(dst, x *engine.Tensor, n int, s float32) {
	if s == 1 {
		c.SumRows(dst, x)
		return
	}
	tmp := c.Alloc(engine.Float32, n)
	defer c.Free(tmp)
	c.Fill(tmp, 0)
	c.SumRows(tmp, x)
	c.Axpy(dst, tmp, s)
}
