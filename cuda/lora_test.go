package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/fused"
)

// m64 is a float64 row-major matrix for the references.
type m64 struct {
	r, c int
	v    []float64
}

func newM64(r, c int) m64 { return m64{r, c, make([]float64, r*c)} }

func (m *mat) m64() m64 { return m64{m.rows, m.cols, m.v} }

// mul returns op(a)·op(b) with optional transposes.
func mul(a m64, ta bool, b m64, tb bool) m64 {
	ar, ac := a.r, a.c
	if ta {
		ar, ac = ac, ar
	}
	br, bc := b.r, b.c
	if tb {
		br, bc = bc, br
	}
	if ac != br {
		panic(fmt.Sprintf("mul: %dx%d · %dx%d", ar, ac, br, bc))
	}
	out := newM64(ar, bc)
	for i := 0; i < ar; i++ {
		for p := 0; p < ac; p++ {
			var av float64
			if ta {
				av = a.v[p*a.c+i]
			} else {
				av = a.v[i*a.c+p]
			}
			for j := 0; j < bc; j++ {
				var bv float64
				if tb {
					bv = b.v[j*b.c+p]
				} else {
					bv = b.v[p*b.c+j]
				}
				out.v[i*bc+j] += av * bv
			}
		}
	}
	return out
}

// axpy64 returns x + s·y (same shapes).
func axpy64(x m64, s float64, y m64) m64 {
	out := newM64(x.r, x.c)
	for i := range out.v {
		out.v[i] = x.v[i] + s*y.v[i]
	}
	return out
}

func addRow64(x m64, bias []float64) m64 {
	out := newM64(x.r, x.c)
	for i := range out.v {
		out.v[i] = x.v[i]
		if bias != nil {
			out.v[i] += bias[i%x.c]
		}
	}
	return out
}

// roundBF16 rounds every element to bfloat16, as storing an intermediate
// in a BFloat16 tensor does: the references follow the kernels' dataflow,
// storage roundings included, and compute everything else in float64.
func roundBF16(x m64) m64 {
	out := newM64(x.r, x.c)
	for i, v := range x.v {
		out.v[i] = float64(bf16ToF32(f32ToBF16(float32(v))))
	}
	return out
}

func sumRows64(x m64) m64 {
	out := newM64(1, x.c)
	for i, v := range x.v {
		out.v[i%x.c] += v
	}
	return out
}

// loraShapes are (M tokens, K in, N out, r rank) with ragged sizes and
// ranks from 1 to 256.
func loraShapes() [][4]int {
	s := [][4]int{{1, 1, 1, 1}, {5, 17, 9, 2}, {33, 70, 65, 7}, {70, 129, 40, 16}, {40, 64, 130, 64}, {20, 50, 30, 256}, {9, 300, 11, 1}, {300, 40, 24, 8}}
	if !onEmulator() {
		s = append(s, [4]int{512, 520, 384, 64}, [4]int{300, 264, 130, 256}, [4]int{2048, 64, 72, 16})
	}
	return s
}

// TestLoRA checks the fused LoRA forward and backward: float32 against the
// CPU backend running the same operation composed from Gemm/AddBias, and
// bfloat16 against a float64 reference. Forward outputs are poisoned with
// NaN; gradient outputs start from random values (they accumulate) and
// some are nil (not needed). Half the cases give the LoRA branch its own
// input (dropout) and a separate input gradient.
func TestLoRA(t *testing.T) {
	b := testBackend(t)
	h := cpu.New()
	rng := testRand(t)
	for _, dtype := range []engine.DType{engine.Float32, engine.BFloat16} {
		for si, s := range loraShapes() {
			m, k, n, r := s[0], s[1], s[2], s[3]
			name := fmt.Sprintf("%v/M%d_K%d_N%d_r%d", dtype, m, k, n, r)
			t.Run(name, func(t *testing.T) {
				loraCase(t, b, h, rng, dtype, m, k, n, r, si)
			})
		}
	}
}

func loraCase(t *testing.T, b *Backend, h *cpu.Backend, rng *rand.Rand, dtype engine.DType, m, k, n, r, variant int) {
	var hh *cpu.Backend
	if dtype == engine.Float32 {
		hh = h
	}
	gradDT := engine.Float32 // weight gradients: float32 master copies
	x := newMat(b, hh, rng, dtype, m, k, 1)
	xl := x
	dropout := variant%2 == 1
	if dropout {
		xl = newMat(b, hh, rng, dtype, m, k, 1)
	}
	// Every third case stores the base weight as GPT-2's Conv1D does.
	layout := fused.OutIn
	w := newMat(b, hh, rng, dtype, n, k, 1/math.Sqrt(float64(k)))
	if variant%3 == 1 {
		layout = fused.InOut
		w = newMat(b, hh, rng, dtype, k, n, 1/math.Sqrt(float64(k)))
	}
	a := newMat(b, hh, rng, dtype, r, k, 1/math.Sqrt(float64(k)))
	bm := newMat(b, hh, rng, dtype, n, r, 0.5)
	var bias *mat
	if variant%3 != 2 {
		bias = newMat(b, hh, rng, dtype, 1, n, 1)
	}
	scale := float32(2.0 / float64(r))
	y := newMat(b, hh, rng, dtype, m, n, 1)
	xa := newMat(b, hh, rng, dtype, m, r, 1)
	dy := newMat(b, hh, rng, dtype, m, n, 1)
	dx := newMat(b, hh, rng, dtype, m, k, 1)
	dxl := newMat(b, hh, rng, dtype, m, k, 1)
	da := newMat(b, hh, rng, gradDT, r, k, 1)
	db := newMat(b, hh, rng, gradDT, n, r, 1)
	dev := func(mm *mat) *engine.Tensor {
		if mm == nil {
			return nil
		}
		return mm.dev
	}
	host := func(mm *mat) *engine.Tensor {
		if mm == nil {
			return nil
		}
		return mm.host
	}
	xlDev := (*engine.Tensor)(nil)
	if dropout {
		xlDev = xl.dev
	}
	// Which gradients are wanted: all, or one left out.
	skip := variant % 4 // 0: none skipped, 1: dx, 2: da, 3: db
	pick := func(mm *mat, idx int) *mat {
		if skip == idx {
			return nil
		}
		return mm
	}
	dxW, daW, dbW := pick(dx, 1), pick(da, 2), pick(db, 3)

	operands := func(pick func(*mat) *engine.Tensor) fused.LoRA {
		return fused.LoRA{W: pick(w), Layout: layout, Bias: pick(bias), A: pick(a), B: pick(bm), Scale: scale}
	}
	poison(b, y.dev, xa.dev)
	b.LoRAForward(y.dev, xa.dev, x.dev, xlDev, operands(dev))
	var dxlW *mat
	if dropout {
		dxlW = dxl
	}
	b.LoRABackward(dev(dxW), dev(dxlW), dev(daW), dev(dbW), dy.dev, xl.dev, xa.dev, operands(dev))
	if err := b.Synchronize(); err != nil {
		t.Fatal(err)
	}
	check := func(what string, got *mat, want []float64, tol float64) {
		compare(t, what, b.Download(got.dev), want, tol)
	}
	if dtype == engine.Float32 {
		hxl := (*engine.Tensor)(nil)
		if dropout {
			hxl = xl.host
		}
		c := fused.Composed{Backend: h}
		c.LoRAForward(y.host, xa.host, x.host, hxl, operands(host))
		c.LoRABackward(host(dxW), host(dxlW), host(daW), host(dbW), dy.host, xl.host, xa.host, operands(host))
		for _, o := range []struct {
			name string
			m    *mat
		}{{"y", y}, {"xa", xa}, {"dx", dx}, {"dxl", dxl}, {"da", da}, {"db", db}} {
			check(o.name, o.m, f64s(h.Download(o.m.host)), tolF32)
		}
		return
	}
	// bfloat16: float64 reference from the stored (rounded) inputs.
	var biasV []float64
	if bias != nil {
		biasV = bias.v
	}
	xa64 := mul(xl.m64(), false, a.m64(), true)
	for i := range xa64.v {
		xa64.v[i] *= float64(scale)
	}
	check("xa", xa, xa64.v, tolBF16)
	xa64 = roundBF16(xa64)      // stored as BFloat16 between the two products
	wT := layout == fused.OutIn // x·op(w) transposes a torch-layout w
	y64 := addRow64(axpy64(mul(x.m64(), false, w.m64(), wT), 1, mul(xa64, false, bm.m64(), true)), biasV)
	check("y", y, y64.v, tolBF16)
	dxa := mul(dy.m64(), false, bm.m64(), false)
	for i := range dxa.v {
		dxa.v[i] *= float64(scale)
	}
	dxa = roundBF16(dxa) // the scratch gradient has dy's dtype
	wantDX, wantDXL := dx.m64(), dxl.m64()
	if dxW != nil {
		wantDX = axpy64(wantDX, 1, mul(dy.m64(), false, w.m64(), !wT))
		if !dropout {
			wantDX = axpy64(wantDX, 1, mul(dxa, false, a.m64(), false))
		}
	}
	if dropout {
		wantDXL = axpy64(wantDXL, 1, mul(dxa, false, a.m64(), false))
	}
	wantDA, wantDB := da.m64(), db.m64()
	if daW != nil {
		wantDA = axpy64(wantDA, 1, mul(dxa, true, xl.m64(), false))
	}
	if dbW != nil {
		wantDB = axpy64(wantDB, 1, mul(dy.m64(), true, xa64, false))
	}
	check("dx", dx, wantDX.v, tolBF16)
	check("dxl", dxl, wantDXL.v, tolBF16)
	check("da", da, wantDA.v, tolBF16)
	check("db", db, wantDB.v, tolBF16)
}

// adapterShapes are (M tokens, D width, r bottleneck).
func adapterShapes() [][3]int {
	s := [][3]int{{1, 1, 1}, {7, 33, 3}, {65, 70, 16}, {130, 40, 64}, {20, 129, 256}, {3, 200, 9}}
	if !onEmulator() {
		s = append(s, [3]int{512, 520, 64}, [3]int{333, 264, 256})
	}
	return s
}

// TestAdapter checks the fused adapter forward and backward like TestLoRA,
// over several activations and with and without biases.
func TestAdapter(t *testing.T) {
	b := testBackend(t)
	h := cpu.New()
	rng := testRand(t)
	acts := []engine.Act{engine.ActReLU, engine.ActSiLU, engine.ActGELUTanh, engine.ActTanh, engine.ActGELU, engine.ActSigmoid}
	for _, dtype := range []engine.DType{engine.Float32, engine.BFloat16} {
		for si, s := range adapterShapes() {
			act := acts[si%len(acts)]
			t.Run(fmt.Sprintf("%v/M%d_D%d_r%d_act%d", dtype, s[0], s[1], s[2], act), func(t *testing.T) {
				adapterCase(t, b, h, rng, dtype, s[0], s[1], s[2], act, si)
			})
		}
	}
}

func adapterCase(t *testing.T, b *Backend, h *cpu.Backend, rng *rand.Rand, dtype engine.DType, m, d, r int, act engine.Act, variant int) {
	var hh *cpu.Backend
	if dtype == engine.Float32 {
		hh = h
	}
	x := newMat(b, hh, rng, dtype, m, d, 1)
	wd := newMat(b, hh, rng, dtype, r, d, 1/math.Sqrt(float64(d)))
	wu := newMat(b, hh, rng, dtype, d, r, 1/math.Sqrt(float64(r)))
	var bd, bu *mat
	if variant%2 == 0 {
		bd = newMat(b, hh, rng, dtype, 1, r, 0.5)
		bu = newMat(b, hh, rng, dtype, 1, d, 0.5)
	}
	y := newMat(b, hh, rng, dtype, m, d, 1)
	pre := newMat(b, hh, rng, dtype, m, r, 1)
	hid := newMat(b, hh, rng, dtype, m, r, 1)
	dy := newMat(b, hh, rng, dtype, m, d, 1)
	dx := newMat(b, hh, rng, dtype, m, d, 1)
	dwd := newMat(b, hh, rng, engine.Float32, r, d, 1)
	dwu := newMat(b, hh, rng, engine.Float32, d, r, 1)
	dbd := newMat(b, hh, rng, engine.Float32, 1, r, 1)
	dbu := newMat(b, hh, rng, engine.Float32, 1, d, 1)
	dev := func(mm *mat) *engine.Tensor {
		if mm == nil {
			return nil
		}
		return mm.dev
	}
	host := func(mm *mat) *engine.Tensor {
		if mm == nil {
			return nil
		}
		return mm.host
	}
	// Bias gradients exist only when the biases do; dx is skipped in one
	// case in three (the lowest trainable layer).
	dbdW, dbuW := dbd, dbu
	if bd == nil {
		dbdW, dbuW = nil, nil
	}
	dxW := dx
	if variant%3 == 1 {
		dxW = nil
	}
	// The residual is x (serial adapter: dres is dx), or in one case in
	// three a tensor of its own (parallel adapter); the output is scaled
	// in three cases out of four.
	res, dres := x, dxW
	if variant%3 == 2 {
		res, dres = newMat(b, hh, rng, dtype, m, d, 1), newMat(b, hh, rng, dtype, m, d, 1)
	}
	scale := float32(1.5)
	if variant%4 == 0 {
		scale = 1
	}
	operands := func(pick func(*mat) *engine.Tensor) fused.Bottleneck {
		return fused.Bottleneck{Down: pick(wd), DownBias: pick(bd), Up: pick(wu), UpBias: pick(bu), Act: act, Scale: scale}
	}
	poison(b, y.dev, pre.dev, hid.dev)
	b.AdapterForward(y.dev, pre.dev, hid.dev, x.dev, res.dev, operands(dev))
	b.AdapterBackward(dev(dxW), dev(dres), dwd.dev, dev(dbdW), dwu.dev, dev(dbuW), dy.dev, x.dev, pre.dev, hid.dev, operands(dev))
	if err := b.Synchronize(); err != nil {
		t.Fatal(err)
	}
	check := func(what string, got *mat, want []float64, tol float64) {
		compare(t, what, b.Download(got.dev), want, tol)
	}
	outs := []struct {
		name string
		m    *mat
	}{{"y", y}, {"pre", pre}, {"hid", hid}, {"dx", dx}, {"dwd", dwd}, {"dwu", dwu}, {"dbd", dbd}, {"dbu", dbu}}
	if dres != dxW {
		outs = append(outs, struct {
			name string
			m    *mat
		}{"dres", dres})
	}
	if dtype == engine.Float32 {
		c := fused.Composed{Backend: h}
		c.AdapterForward(y.host, pre.host, hid.host, x.host, res.host, operands(host))
		c.AdapterBackward(host(dxW), host(dres), dwd.host, host(dbdW), dwu.host, host(dbuW), dy.host, x.host, pre.host, hid.host, operands(host))
		for _, o := range outs {
			check(o.name, o.m, f64s(h.Download(o.m.host)), tolF32)
		}
		return
	}
	var bdV, buV []float64
	if bd != nil {
		bdV, buV = bd.v, bu.v
	}
	pre64 := addRow64(mul(x.m64(), false, wd.m64(), true), bdV)
	hid64 := newM64(m, r)
	for i, v := range pre64.v {
		hid64.v[i] = act64(v, act)
	}
	// pre and hid are stored as BFloat16; their checks below use the exact
	// values, the later stages read the rounded ones, as the kernels do.
	preR, hidR := roundBF16(pre64), roundBF16(hid64)
	s := float64(scale)
	y64 := axpy64(res.m64(), s, addRow64(mul(hidR, false, wu.m64(), true), buV))
	dpre := mul(dy.m64(), false, wu.m64(), false)
	for i := range dpre.v {
		dpre.v[i] *= s * actGrad64(preR.v[i], act)
	}
	dpre = roundBF16(dpre) // the scratch gradient has pre's dtype
	want := map[string][]float64{
		"y": y64.v, "pre": pre64.v, "hid": hid64.v,
		"dx":  dx.v,
		"dwd": axpy64(dwd.m64(), 1, mul(dpre, true, x.m64(), false)).v,
		"dwu": axpy64(dwu.m64(), s, mul(dy.m64(), true, hidR, false)).v,
		"dbd": dbd.v, "dbu": dbu.v,
	}
	if dxW != nil {
		want["dx"] = axpy64(dx.m64(), 1, mul(dpre, false, wd.m64(), false)).v
		if dres == dxW {
			want["dx"] = axpy64(m64{m, d, want["dx"]}, 1, dy.m64()).v
		}
	}
	if dres != dxW {
		want["dres"] = axpy64(dres.m64(), 1, dy.m64()).v
	}
	if dbdW != nil {
		want["dbd"] = axpy64(dbd.m64(), 1, sumRows64(dpre)).v
		want["dbu"] = axpy64(dbu.m64(), s, sumRows64(dy.m64())).v
	}
	for _, o := range outs {
		check(o.name, o.m, want[o.name], tolBF16)
	}
}
