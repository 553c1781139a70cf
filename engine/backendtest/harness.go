package backendtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gotune/gotune/engine"
)

// Options configures Run for a particular backend.
type Options struct {
	// Tol is the relative-norm tolerance for float32 results; 0 means 1e-5.
	Tol float64
	// SkipBFloat16 skips the BFloat16 storage checks (for backends without
	// bfloat16 support).
	SkipBFloat16 bool
	// Seed makes the random inputs reproducible; 0 means 1.
	Seed uint64
	// Short runs only the smaller shapes (for slow backends such as a GPU
	// emulator). testing.Short() also selects it.
	Short bool
}

func (o Options) tol() float64 {
	if o.Tol == 0 {
		return 1e-5
	}
	return o.Tol
}

// sentinel fills the guard elements around every tensor the suite
// allocates; it is exact in float32, bfloat16 and int32.
const sentinel = 96

// guarded is a tensor view inside a larger allocation.
type guarded struct {
	name   string
	full   *engine.Tensor
	pad, n int
	dtype  engine.DType
}

// harness holds one subtest's backend, random source and allocations.
type harness struct {
	t      *testing.T
	b      engine.Backend
	o      Options
	rng    *rand.Rand
	allocs []guarded
}

func newHarness(t *testing.T, b engine.Backend, o Options, salt uint64) *harness {
	seed := o.Seed
	if seed == 0 {
		seed = 1
	}
	return &harness{t: t, b: b, o: o, rng: rand.New(rand.NewPCG(seed, salt))}
}

// short reports whether to skip the larger shapes.
func (h *harness) short() bool { return h.o.Short || testing.Short() }

// alloc returns a tensor of the given shape that is a view at a random
// offset of a larger buffer; the guard elements on both sides hold the
// sentinel and are verified by checkGuards.
func (h *harness) alloc(name string, dt engine.DType, shape ...int) *engine.Tensor {
	n := engine.Numel(shape)
	pad := 1 + h.rng.IntN(7)
	full := h.b.Alloc(dt, n+2*pad)
	if dt == engine.Int32 {
		v := make([]int32, n+2*pad)
		for i := range v {
			v[i] = sentinel
		}
		h.b.UploadInt32(full, v)
	} else {
		v := make([]float32, n+2*pad)
		for i := range v {
			v[i] = sentinel
		}
		h.b.Upload(full, v)
	}
	h.allocs = append(h.allocs, guarded{name: name, full: full, pad: pad, n: n, dtype: dt})
	return full.Slice(pad, pad+n).Reshape(shape...)
}

// checkGuards verifies that no operation wrote outside a tensor's window.
func (h *harness) checkGuards() {
	h.t.Helper()
	for _, g := range h.allocs {
		var vals []float64
		if g.dtype == engine.Int32 {
			for _, v := range h.b.DownloadInt32(g.full) {
				vals = append(vals, float64(v))
			}
		} else {
			for _, v := range h.b.Download(g.full) {
				vals = append(vals, float64(v))
			}
		}
		for i, v := range vals {
			if (i < g.pad || i >= g.pad+g.n) && v != sentinel {
				h.t.Errorf("%s: guard element %d (window [%d, %d)) changed to %v: write outside the tensor", g.name, i, g.pad, g.pad+g.n, v)
				break
			}
		}
	}
	h.allocs = nil
}

// tensor uploads float64 values (rounded to float32) into a new Float32
// tensor.
func (h *harness) tensor(name string, vals []float64, shape ...int) *engine.Tensor {
	if len(vals) != engine.Numel(shape) {
		panic(fmt.Sprintf("backendtest: %s: %d values for shape %v", name, len(vals), shape))
	}
	t := h.alloc(name, engine.Float32, shape...)
	f := make([]float32, len(vals))
	for i, v := range vals {
		f[i] = float32(v)
	}
	h.b.Upload(t, f)
	return t
}

// randn returns a Float32 tensor of standard-normal values times scale,
// and the exact (float32-rounded) values it holds.
func (h *harness) randn(name string, scale float64, shape ...int) (*engine.Tensor, []float64) {
	v := h.randVals(engine.Numel(shape), scale)
	return h.tensor(name, v, shape...), v
}

// randVals returns n float32-representable normal values times scale.
func (h *harness) randVals(n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(float32(h.rng.NormFloat64() * scale))
	}
	return v
}

// nan returns a Float32 tensor filled with NaN: every element an operation
// fails to write stays NaN and fails the comparison.
func (h *harness) nan(name string, shape ...int) *engine.Tensor {
	v := make([]float64, engine.Numel(shape))
	for i := range v {
		v[i] = math.NaN()
	}
	return h.tensor(name, v, shape...)
}

// ints uploads int32 values into a new Int32 tensor.
func (h *harness) ints(name string, vals []int32, shape ...int) *engine.Tensor {
	t := h.alloc(name, engine.Int32, shape...)
	h.b.UploadInt32(t, vals)
	return t
}

// download returns a tensor's values as float64.
func (h *harness) download(t *engine.Tensor) []float64 {
	f := h.b.Download(t)
	out := make([]float64, len(f))
	for i, v := range f {
		out[i] = float64(v)
	}
	return out
}

// expect compares a tensor with reference values at tolerance tol.
func (h *harness) expect(what string, got *engine.Tensor, want []float64, tol float64) {
	h.t.Helper()
	h.expectVals(what, h.download(got), want, tol)
}

// expectVals compares values with a reference: the relative norm
// ‖got − want‖/‖want‖ must be <= tol (absolute ‖got‖ <= tol when the
// reference is all zeros), and no element may be NaN unless the reference
// is NaN there.
func (h *harness) expectVals(what string, got, want []float64, tol float64) {
	h.t.Helper()
	if len(got) != len(want) {
		h.t.Errorf("%s: %d values, want %d", what, len(got), len(want))
		return
	}
	if err := relErr(got, want); !(err <= tol) {
		i, g, w := worst(got, want)
		h.t.Errorf("%s: relative error %.3g > %.3g (worst element %d: got %v, want %v)", what, err, tol, i, g, w)
	}
}

// relErr returns ‖got − want‖/‖want‖ (‖got − want‖ when want is zero),
// NaN when any compared element is NaN where the reference is not.
func relErr(got, want []float64) float64 {
	var num, den float64
	for i := range got {
		if math.IsNaN(want[i]) {
			if !math.IsNaN(got[i]) {
				return math.NaN()
			}
			continue
		}
		d := got[i] - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// worst returns the element with the largest absolute difference (a NaN
// counts as the worst).
func worst(got, want []float64) (int, float64, float64) {
	bi, bd := 0, -1.0
	for i := range got {
		d := math.Abs(got[i] - want[i])
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		if d > bd {
			bi, bd = i, d
		}
	}
	return bi, got[bi], want[bi]
}

// addTo returns a + b elementwise (a nil a is zeros): the expected value of
// an accumulating output pre-filled with a.
func addTo(a, b []float64) []float64 {
	out := make([]float64, len(b))
	for i := range b {
		out[i] = b[i]
		if a != nil {
			out[i] += a[i]
		}
	}
	return out
}

// run runs one named subtest with a fresh harness and verifies guards.
func run(t *testing.T, b engine.Backend, o Options, name string, salt uint64, fn func(h *harness)) {
	t.Run(name, func(t *testing.T) {
		h := newHarness(t, b, o, salt)
		fn(h)
		h.checkGuards()
	})
}
