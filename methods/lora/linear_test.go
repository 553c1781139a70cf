package lora

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gotune/gotune/cuda"
	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/fused"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/methods/internal/methodtest"
)

// refLayer is a float64 restatement of the layer's function, written from
// the formulas (PEFT's LoRA and DoRA), sharing no code with Linear.
type refLayer struct {
	in, out, r int
	conv       bool      // w stored [in, out]
	w, b       []float64 // base weight (stored layout) and bias (nil: none)
	a, bm, m   []float64 // A [r, in], B [out, r], magnitude [out] (nil: LoRA)
	s          float64
	mask       []float64 // [N, in] dropout multipliers, nil: none
}

// w0 returns W₀[j, i] in torch layout.
func (f *refLayer) w0(j, i int) float64 {
	if f.conv {
		return f.w[i*f.out+j]
	}
	return f.w[j*f.in+i]
}

// norms returns ‖W₀ + s·B·A‖ per output row.
func (f *refLayer) norms() []float64 {
	n := make([]float64, f.out)
	for j := 0; j < f.out; j++ {
		var ss float64
		for i := 0; i < f.in; i++ {
			v := f.w0(j, i)
			for k := 0; k < f.r; k++ {
				v += f.s * f.bm[j*f.r+k] * f.a[k*f.in+i]
			}
			ss += v * v
		}
		n[j] = math.Sqrt(ss)
	}
	return n
}

// forward returns y [N, out] for x [N, in]; with DoRA the norms are the
// given constants (the detached norm).
func (f *refLayer) forward(x []float64, norms []float64) []float64 {
	N := len(x) / f.in
	y := make([]float64, N*f.out)
	for n := 0; n < N; n++ {
		xd := make([]float64, f.in)
		for i := range xd {
			xd[i] = x[n*f.in+i]
			if f.mask != nil {
				xd[i] *= f.mask[n*f.in+i]
			}
		}
		xa := make([]float64, f.r)
		for k := range xa {
			for i := 0; i < f.in; i++ {
				xa[k] += xd[i] * f.a[k*f.in+i]
			}
		}
		for j := 0; j < f.out; j++ {
			var base, based, lora float64
			for i := 0; i < f.in; i++ {
				base += x[n*f.in+i] * f.w0(j, i)
				based += xd[i] * f.w0(j, i)
			}
			for k := 0; k < f.r; k++ {
				lora += f.s * xa[k] * f.bm[j*f.r+k]
			}
			v := base + lora
			if f.m != nil {
				g := f.m[j] / norms[j]
				v = base + (g-1)*based + g*lora
			}
			if f.b != nil {
				v += f.b[j]
			}
			y[n*f.out+j] = v
		}
	}
	return y
}

func randVals(rng *rand.Rand, n int, std float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64() * std
	}
	return v
}

func f32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func relErr(got, want []float64) float64 {
	var d, r float64
	for i := range want {
		d += (got[i] - want[i]) * (got[i] - want[i])
		r += want[i] * want[i]
	}
	if r == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d / r)
}

// TestLinearAgainstReference checks forward values and every gradient of
// LoRA, rsLoRA-scaled and DoRA layers (torch and Conv1D layouts, with and
// without bias and dropout) against the float64 reference: values
// directly, gradients against central finite differences of the
// reference's Σ dy⊙y (with the DoRA norm held constant, as PEFT detaches
// it). It runs on the CPU (the recipes composed from Backend
// operations), on the CPU behind fusedCPU (the layer must hand every pass
// to a backend's fused operations) and on the CUDA backend's fused kernels
// (the emulator under make test).
func TestLinearAgainstReference(t *testing.T) {
	for _, mode := range []string{"composed", "fused", "cuda"} {
		t.Run(mode, func(t *testing.T) { testLinearAgainstReference(t, mode) })
	}
}

// fusedCPU is the CPU backend offering the fused LoRA operations
// (fused.LoRABackend) by delegating to fused.Composed and counting the calls,
// so that tests see that Linear hands its layers to a backend's fused
// kernels.
type fusedCPU struct {
	*cpu.Backend
	forwards, backwards int
}

var _ fused.LoRABackend = (*fusedCPU)(nil)

func (b *fusedCPU) LoRAForward(y, xa, x, xl *engine.Tensor, l fused.LoRA) {
	b.forwards++
	fused.Composed{Backend: b.Backend}.LoRAForward(y, xa, x, xl, l)
}

func (b *fusedCPU) LoRABackward(dx, dxl, da, db, dy, xl, xa *engine.Tensor, l fused.LoRA) {
	b.backwards++
	fused.Composed{Backend: b.Backend}.LoRABackward(dx, dxl, da, db, dy, xl, xa, l)
}

func testLinearAgainstReference(t *testing.T, mode string) {
	var gpu *cuda.Backend
	if mode == "cuda" {
		gpu = methodtest.CUDABackend(t)
	}
	const N, in, out, r = 5, 6, 7, 3
	for _, tc := range []struct {
		conv, bias, dora bool
		dropout          float32
		scale            float64
	}{
		{scale: 2},
		{bias: true, scale: 8 / math.Sqrt(3)},
		{conv: true, bias: true, scale: 2},
		{dropout: 0.3, bias: true, scale: 2},
		{conv: true, dropout: 0.25, scale: 1.5},
		{dora: true, scale: 2},
		{dora: true, bias: true, scale: 2},
		{dora: true, conv: true, bias: true, scale: 2},
		{dora: true, bias: true, dropout: 0.3, scale: 2},
		{dora: true, conv: true, dropout: 0.4, scale: 0.7},
	} {
		name := fmt.Sprintf("conv=%v,bias=%v,dora=%v,dropout=%v", tc.conv, tc.bias, tc.dora, tc.dropout)
		t.Run(name, func(t *testing.T) {
			var be engine.Backend = cpu.New()
			fb := &fusedCPU{Backend: cpu.New()}
			switch mode {
			case "fused":
				be = fb
			case "cuda":
				be = gpu
			}
			var before map[string]cuda.OpStats
			if gpu != nil {
				before = gpu.Stats()
			}
			rng := rand.New(rand.NewPCG(7, uint64(len(name))))
			ref := &refLayer{in: in, out: out, r: r, conv: tc.conv, s: tc.scale,
				w: randVals(rng, in*out, 0.3), a: randVals(rng, r*in, 0.3), bm: randVals(rng, out*r, 0.3)}
			wShape := []int{out, in}
			if tc.conv {
				wShape = []int{in, out}
			}
			d := &model.Dense{Weight: &engine.Param{Name: "w", W: be.Alloc(engine.Float32, wShape...)}, Conv1D: tc.conv}
			be.Upload(d.Weight.W, f32(ref.w))
			if tc.bias {
				ref.b = randVals(rng, out, 0.3)
				d.Bias = &engine.Param{Name: "b", W: be.Alloc(engine.Float32, out)}
				be.Upload(d.Bias.W, f32(ref.b))
			}
			l, err := newLinear("layer", d, r, float32(tc.scale), tc.dropout, tc.dora, 11)
			if err != nil {
				t.Fatal(err)
			}
			// Tensors report the CPU backend that owns their storage; the
			// layer must see the wrapper.
			l.be = be
			be.Upload(l.A.W, f32(ref.a))
			be.Upload(l.B.W, f32(ref.bm))
			if tc.dora {
				// A magnitude away from the norms, so that g ≠ 1.
				n := ref.norms()
				ref.m = make([]float64, out)
				for j := range n {
					ref.m[j] = n[j] * (1 + 0.3*rng.NormFloat64())
				}
				be.Upload(l.M.W, f32(ref.m))
			}
			for _, p := range l.AdapterParams() {
				model.SetTrainable(p, true)
			}
			// The reference uses float32-rounded values like the layer.
			for _, v := range [][]float64{ref.w, ref.a, ref.bm, ref.b, ref.m} {
				copy(v, f64(f32(v)))
			}
			xv := f64(f32(randVals(rng, N*in, 1)))
			dyv := f64(f32(randVals(rng, N*out, 1)))
			x := be.Alloc(engine.Float32, N, in)
			be.Upload(x, f32(xv))
			y := be.Alloc(engine.Float32, N, out)
			l.Forward(y, x, true)
			if tc.dropout > 0 {
				ref.mask = f64(be.Download(l.mask))
				zeros := 0
				for _, v := range ref.mask {
					if v == 0 {
						zeros++
					}
				}
				if zeros == 0 || zeros == len(ref.mask) {
					t.Fatalf("dropout mask has %d zeros of %d", zeros, len(ref.mask))
				}
			}
			var norms []float64
			if tc.dora {
				norms = ref.norms()
			}
			if e := relErr(f64(be.Download(y)), ref.forward(xv, norms)); e > 1e-5 {
				t.Errorf("forward: rel err %.3g", e)
			}
			dy := be.Alloc(engine.Float32, N, out)
			be.Upload(dy, f32(dyv))
			dx := be.Alloc(engine.Float32, N, in)
			l.Backward(dx, dy, x)

			loss := func() float64 {
				var s float64
				for i, v := range ref.forward(xv, norms) {
					s += v * dyv[i]
				}
				return s
			}
			fd := func(v []float64) []float64 {
				g := make([]float64, len(v))
				for i := range v {
					old := v[i]
					h := 1e-6 * math.Max(1, math.Abs(old))
					v[i] = old + h
					lp := loss()
					v[i] = old - h
					lm := loss()
					v[i] = old
					g[i] = (lp - lm) / (2 * h)
				}
				return g
			}
			check := func(what string, got *engine.Tensor, want []float64) {
				t.Helper()
				if e := relErr(f64(be.Download(got)), want); e > 1e-5 {
					t.Errorf("%s: rel err %.3g against finite differences", what, e)
				}
			}
			check("dA", l.A.G, fd(ref.a))
			check("dB", l.B.G, fd(ref.bm))
			check("dx", dx, fd(xv))
			if tc.dora {
				check("dM", l.M.G, fd(ref.m))
			}
			if d.Weight.G != nil || (d.Bias != nil && d.Bias.G != nil) {
				t.Errorf("the frozen base got a gradient buffer")
			}
			// The fused operations compute every layer: LoRA and DoRA, on
			// torch-layout and Conv1D bases.
			wantFused := 0
			if mode == "fused" {
				wantFused = 1
			}
			if fb.forwards != wantFused || fb.backwards != wantFused {
				t.Errorf("fused operations used %d/%d times, want %d", fb.forwards, fb.backwards, wantFused)
			}
			if gpu != nil {
				methodtest.RequireNative(t, gpu, before, "LoRAForward", "LoRABackward")
			}
		})
	}
}

// TestLinearNoInputGradient checks that Backward with dx nil still gives
// the factors their gradients (the lowest trainable layer's case).
func TestLinearNoInputGradient(t *testing.T) {
	be := cpu.New()
	for _, dora := range []bool{false, true} {
		rng := rand.New(rand.NewPCG(3, 4))
		d := &model.Dense{Weight: &engine.Param{Name: "w", W: be.Alloc(engine.Float32, 4, 5)}}
		be.Upload(d.Weight.W, f32(randVals(rng, 20, 0.5)))
		var grads [2][]float32
		for k, withDX := range []bool{true, false} {
			l, err := newLinear("p", d, 2, 1.5, 0, dora, 1)
			if err != nil {
				t.Fatal(err)
			}
			be.Upload(l.A.W, f32(randVals(rand.New(rand.NewPCG(1, 1)), 10, 0.5)))
			be.Upload(l.B.W, f32(randVals(rand.New(rand.NewPCG(2, 2)), 8, 0.5)))
			if dora {
				l.initMagnitude()
			}
			for _, p := range l.AdapterParams() {
				model.SetTrainable(p, true)
			}
			x := be.Alloc(engine.Float32, 3, 5)
			be.Upload(x, f32(randVals(rand.New(rand.NewPCG(5, 5)), 15, 1)))
			y := be.Alloc(engine.Float32, 3, 4)
			l.Forward(y, x, true)
			var dx *engine.Tensor
			if withDX {
				dx = be.Alloc(engine.Float32, 3, 5)
			}
			l.Backward(dx, y, x)
			grads[k] = append(be.Download(l.A.G), be.Download(l.B.G)...)
		}
		if e := relErr(f64(grads[1]), f64(grads[0])); e != 0 {
			t.Errorf("dora=%v: factor gradients differ without dx (rel %.3g)", dora, e)
		}
	}
}
