package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
)

// attnTestCase is one attention shape: q [B, T, Hq, D], k/v [B, S, Hkv, D].
type attnTestCase struct{ B, T, S, Hq, Hkv, D int }

func (c attnTestCase) String() string {
	return fmt.Sprintf("B%d T%d S%d Hq%d Hkv%d D%d", c.B, c.T, c.S, c.Hq, c.Hkv, c.D)
}

// attnTestCases cover every kernel variant (D <= 32, 64, 128, 256, with
// head dims that are not multiples of 4 or 32), ragged query and key tiles
// (T, S not multiples of the 32- or 16-row tiles), S > T (the causal
// offset), GQA ratios 1, 2 and 4, and batches up to 3, at sizes the
// emulator runs quickly.
var attnTestCases = []attnTestCase{
	{1, 1, 1, 1, 1, 8},
	{2, 5, 5, 2, 2, 8},
	{1, 4, 6, 1, 1, 1},
	{1, 37, 37, 4, 2, 24},
	{3, 9, 20, 4, 1, 24},
	{2, 33, 70, 2, 1, 64},
	{1, 7, 7, 2, 2, 33},
	{1, 20, 20, 4, 4, 128},
	{1, 3, 40, 2, 1, 128},
	{1, 19, 23, 2, 1, 200},
}

// attnData holds one case's inputs as stored (after rounding to dtype).
type attnData struct {
	q, k, v, dout []float64
}

// randStored returns n normal values with standard deviation sd, rounded
// to dtype, as float32 (for Upload) and float64 (the stored values).
func randStored(rng *rand.Rand, dtype engine.DType, n int, sd float64) ([]float32, []float64) {
	f := make([]float32, n)
	d := make([]float64, n)
	for i := range f {
		x := float32(rng.NormFloat64() * sd)
		if dtype == engine.BFloat16 {
			x = bf16ToF32(f32ToBF16(x))
		}
		f[i], d[i] = x, float64(x)
	}
	return f, d
}

// upload allocates a tensor of dtype on be and fills it with vals.
func upload(be engine.Backend, dtype engine.DType, vals []float32, shape ...int) *engine.Tensor {
	t := be.Alloc(dtype, shape...)
	be.Upload(t, vals)
	return t
}

func f32sOf(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// rbf rounds to bfloat16 (through float32), kept as float64.
func rbf(x float64) float64 { return float64(bf16ToF32(f32ToBF16(float32(x)))) }

// refAttention64 is a naive float64 causal GQA attention with bfloat16
// q/k/v's rounding points (engine.Backend.Attention): out = Σ bf16(P)·v
// with P the exact normalised probabilities. Written from the definition,
// not from either backend.
func refAttention64(c attnTestCase, in attnData) (out, lse []float64) {
	out = make([]float64, len(in.q))
	lse = make([]float64, c.B*c.Hq*c.T)
	c.eachRow(in, func(qo int, ko func(s int) int, l int, p []float64) {
		lse[l] = p[len(p)-1]
		for s := range p[:len(p)-1] {
			ps := rbf(p[s])
			for j := 0; j < c.D; j++ {
				out[qo+j] += ps * in.v[ko(s)+j]
			}
		}
	})
	return
}

// refAttentionGrads64 is the matching backward pass from the forward
// output as stored (out, which gives Δ = rowsum(dout ⊙ out)): dv = Σ
// bf16(P)·dout, dS = P ⊙ (dout·vᵀ − Δ), dq = scale·Σ bf16(dS)·k, dk =
// scale·Σ bf16(dS)·q.
func refAttentionGrads64(c attnTestCase, in attnData, out []float64) (dq, dk, dv []float64) {
	dq = make([]float64, len(in.q))
	dk = make([]float64, len(in.k))
	dv = make([]float64, len(in.v))
	scale := 1 / math.Sqrt(float64(c.D))
	c.eachRow(in, func(qo int, ko func(s int) int, _ int, p []float64) {
		var delta float64
		for j := 0; j < c.D; j++ {
			delta += in.dout[qo+j] * out[qo+j]
		}
		for s := range p[:len(p)-1] {
			k := ko(s)
			var dp float64
			for j := 0; j < c.D; j++ {
				dp += in.dout[qo+j] * in.v[k+j]
			}
			ds, ps := rbf(p[s]*(dp-delta)), rbf(p[s])
			for j := 0; j < c.D; j++ {
				dq[qo+j] += scale * ds * in.k[k+j]
				dk[k+j] += scale * ds * in.q[qo+j]
				dv[k+j] += ps * in.dout[qo+j]
			}
		}
	})
	return
}

// eachRow calls fn for every query row with the row's q/out offset, the
// k/v offset of each key, the row's lse index, and its exact probabilities
// over the visible keys followed by its lse (float64).
func (c attnTestCase) eachRow(in attnData, fn func(qo int, ko func(s int) int, l int, p []float64)) {
	scale := 1 / math.Sqrt(float64(c.D))
	for b := 0; b < c.B; b++ {
		for h := 0; h < c.Hq; h++ {
			kvh := h / (c.Hq / c.Hkv)
			ko := func(s int) int { return ((b*c.S+s)*c.Hkv + kvh) * c.D }
			for t := 0; t < c.T; t++ {
				n := t + c.S - c.T + 1 // keys visible to query t
				qo := ((b*c.T+t)*c.Hq + h) * c.D
				p := make([]float64, n+1)
				mx := math.Inf(-1)
				for s := 0; s < n; s++ {
					var d float64
					for j := 0; j < c.D; j++ {
						d += in.q[qo+j] * in.k[ko(s)+j]
					}
					p[s] = d * scale
					mx = math.Max(mx, p[s])
				}
				var sum float64
				for s := 0; s < n; s++ {
					p[s] = math.Exp(p[s] - mx)
					sum += p[s]
				}
				for s := 0; s < n; s++ {
					p[s] /= sum
				}
				p[n] = mx + math.Log(sum)
				fn(qo, ko, (b*c.Hq+h)*c.T+t, p)
			}
		}
	}
}

// attnGradSets are the gradient outputs requested per backward call
// (dq, dk, dv; false = nil).
var attnGradSets = [][3]bool{{true, true, true}, {true, false, false}, {false, true, false}, {false, false, true}, {false, true, true}}

// TestAttentionKernels checks the native attention kernels at many
// shapes: float32 storage against the CPU backend (1e-5), bfloat16
// storage against a float64 reference with the bfloat16 rounding points
// (1e-2; Δ from out as stored, as the kernels see it). Forward outputs are
// poisoned with NaN first; gradient outputs start from random values (the
// backward pass accumulates) and are requested in several nil patterns.
// Backward gets the same forward results (out, lse) on both sides, so its
// check does not depend on the forward's rounding.
func TestAttentionKernels(t *testing.T) {
	b := testBackend(t)
	h := cpu.New()
	rng := testRand(t)
	before := b.Stats()
	for _, c := range attnTestCases {
		for _, dtype := range []engine.DType{engine.Float32, engine.BFloat16} {
			tol := attnTol{out: tolF32, lse: tolF32, grad: tolF32, gradInit: 1}
			if dtype == engine.BFloat16 {
				tol = attnTol{out: tolBF16, lse: tolBF16, grad: tolBF16, gradInit: 1}
			}
			runAttnCase(t, b, h, rng, c, attnOpts{}, dtype, tol)
		}
	}
	// Options, against the CPU backend: float32 everywhere, bfloat16 where
	// the SIMT kernels take it (D > 128; below, TestAttentionTensorCores).
	for _, c := range attnSIMTOptionCases {
		runAttnCase(t, b, h, rng, c.attnTestCase, c.opt, engine.Float32, attnTol{out: tolF32, lse: tolF32, grad: tolF32, gradInit: 1})
		if c.D > 128 {
			runAttnCase(t, b, h, rng, c.attnTestCase, c.opt, engine.BFloat16, attnTol{out: tolTCOut, lse: tolTCLse, grad: tolTCGrad, gradInit: 0.01})
		}
	}
	requireAttnNative(t, b, before)
}

// requireAttnNative fails the test unless every call of ops (Attention
// and AttentionBackward when none are named) since before ran on the
// kernels (none took the host fallback) and some did.
func requireAttnNative(t *testing.T, b *Backend, before map[string]OpStats, ops ...string) {
	t.Helper()
	require.NoError(t, b.Synchronize())
	after := b.Stats()
	if ops == nil {
		ops = []string{"Attention", "AttentionBackward"}
	}
	for _, op := range ops {
		assert.Equal(t, before[op].Fallback, after[op].Fallback, "%s used the host fallback; want native kernels only", op)
		assert.Greater(t, after[op].Native, before[op].Native, "%s native count did not move", op)
	}
}

// attnOptCase is a shape with options.
type attnOptCase struct {
	attnTestCase
	opt attnOpts
}

// attnSIMTOptionCases exercise every option on the SIMT kernels: windows
// and segments that let query blocks (32 or 16 rows) skip key tiles and
// key blocks skip query tiles (T = 50, 70), keys before the queries (a
// window that hides them from later rows), ids shared by separate runs,
// GQA, soft-capping with a set scale, and dropout with a seed whose high
// bits are set. Some windows are chosen so that the last query that sees
// a key block is the first of a query tile: a one-off query range would
// drop that whole tile.
var attnSIMTOptionCases = []attnOptCase{
	{attnTestCase{1, 70, 70, 2, 1, 24}, attnOpts{window: 34}}, // key block 0's last query (64) starts a tile of its own
	{attnTestCase{2, 40, 45, 4, 2, 64}, attnOpts{window: 9, softCap: 2, scale: 0.3}},
	{attnTestCase{1, 70, 70, 2, 2, 32}, attnOpts{segs: []int{25, 30, 15}}},
	{attnTestCase{2, 33, 37, 2, 1, 128}, attnOpts{segs: []int{7, 12}, ids: 2, dropout: 0.3, seed: 0xF00DF00DF00DF00D}},
	{attnTestCase{1, 50, 50, 2, 1, 200}, attnOpts{window: 17, segs: []int{20, 30}, softCap: 1.5, dropout: 0.1, seed: 9}},
	{attnTestCase{1, 45, 60, 2, 1, 200}, attnOpts{window: 20, scale: 0.05}},
}

// attnTol are one run's relative-norm tolerances, and the standard
// deviation of the random values the gradient outputs start from.
type attnTol struct {
	out, lse, grad float64
	gradInit       float64
}

// attnOpts describes one call's engine.AttentionOptions so that each
// backend can build its own (Segments is a tensor of that backend): segs
// are the lengths of packed examples, repeated over each batch row's T
// positions, with run i getting id i % ids (ids 0: every run its own id;
// ids > 0 gives separate runs the same id, which still see each other).
type attnOpts struct {
	scale, softCap float32
	window         int
	segs           []int
	ids            int
	dropout        float32
	seed           uint64
}

func (o attnOpts) String() string {
	return fmt.Sprintf("scale %g cap %g window %d segs %v/%d dropout %g", o.scale, o.softCap, o.window, o.segs, o.ids, o.dropout)
}

// plain reports whether o is the zero value (plain causal attention).
func (o attnOpts) plain() bool {
	return o.scale == 0 && o.softCap == 0 && o.window == 0 && o.segs == nil && o.dropout == 0
}

// build returns o for batch size bsz and t queries on be.
func (o attnOpts) build(be engine.Backend, bsz, t int) engine.AttentionOptions {
	opt := engine.AttentionOptions{Scale: o.scale, SoftCap: o.softCap, Window: o.window, Dropout: o.dropout, DropoutSeed: o.seed}
	if o.segs == nil {
		return opt
	}
	ids := make([]int32, 0, bsz*t)
	for row := 1; row <= bsz; row++ {
		// Row r starts with run r−1's length, so rows differ.
		for run := row - 1; len(ids) < row*t; run++ {
			id := run
			if o.ids > 0 {
				id %= o.ids
			}
			for j := 0; j < o.segs[run%len(o.segs)] && len(ids) < row*t; j++ {
				ids = append(ids, int32(id))
			}
		}
	}
	opt.Segments = be.Alloc(engine.Int32, bsz, t)
	be.UploadInt32(opt.Segments, ids)
	return opt
}

func runAttnCase(t *testing.T, b *Backend, h *cpu.Backend, rng *rand.Rand, c attnTestCase, opts attnOpts, dtype engine.DType, tol attnTol) {
	t.Helper()
	qShape := []int{c.B, c.T, c.Hq, c.D}
	kShape := []int{c.B, c.S, c.Hkv, c.D}
	nq, nk := c.B*c.T*c.Hq*c.D, c.B*c.S*c.Hkv*c.D
	var in attnData
	qf, qd := randStored(rng, dtype, nq, 1.5) // sd > 1: peaked softmax rows
	kf, kd := randStored(rng, dtype, nk, 1.5)
	vf, vd := randStored(rng, dtype, nk, 1)
	of, od := randStored(rng, dtype, nq, 1)
	in.q, in.k, in.v, in.dout = qd, kd, vd, od
	what := fmt.Sprintf("%v %v", c, dtype)
	// The float64 reference knows no options: with options (and for
	// float32) the CPU backend, the reference implementation, is.
	onCPU := dtype == engine.Float32 || !opts.plain()
	if !opts.plain() {
		what += " " + opts.String()
	}
	bopt := opts.build(b, c.B, c.T)

	q, k, v, dout := upload(b, dtype, qf, qShape...), upload(b, dtype, kf, kShape...), upload(b, dtype, vf, kShape...), upload(b, dtype, of, qShape...)
	out, lse := b.Alloc(dtype, qShape...), b.Alloc(engine.Float32, c.B, c.Hq, c.T)
	poison(b, out, lse)
	b.Attention(out, lse, q, k, v, bopt)

	var hq, hk, hv, hdout *engine.Tensor
	var hopt engine.AttentionOptions
	var refOut, refLse, rdq, rdk, rdv []float64
	if onCPU {
		hopt = opts.build(h, c.B, c.T)
		hq, hk, hv, hdout = upload(h, dtype, qf, qShape...), upload(h, dtype, kf, kShape...), upload(h, dtype, vf, kShape...), upload(h, dtype, of, qShape...)
		ho, hl := h.Alloc(dtype, qShape...), h.Alloc(engine.Float32, c.B, c.Hq, c.T)
		h.Attention(ho, hl, hq, hk, hv, hopt)
		refOut, refLse = f64s(h.Download(ho)), f64s(h.Download(hl))
	} else {
		refOut, refLse = refAttention64(c, in)
	}
	compare(t, what+" out", b.Download(out), refOut, tol.out)
	// lse is a log: its float32 rounding error is absolute (about the
	// scores' magnitude times eps), so a row whose lse is near 0 (one key,
	// scores that cancel) is compared against unit scale, not against its
	// own tiny norm.
	compareScaled(t, what+" lse", b.Download(lse), refLse, unitScale(len(refLse)), tol.lse)

	// Backward from the reference forward results, on both sides; the
	// bfloat16 reference takes Δ from out as stored (rounded).
	so, sl := upload(b, dtype, f32sOf(refOut), qShape...), upload(b, engine.Float32, f32sOf(refLse), c.B, c.Hq, c.T)
	if !onCPU {
		rdq, rdk, rdv = refAttentionGrads64(c, in, f64s(b.Download(so)))
	}
	var ho, hl *engine.Tensor
	if onCPU {
		ho, hl = upload(h, dtype, f32sOf(refOut), qShape...), upload(h, engine.Float32, f32sOf(refLse), c.B, c.Hq, c.T)
	}
	for _, g := range attnGradSets {
		grads := [3]*engine.Tensor{}
		hgrads := [3]*engine.Tensor{}
		init := [3][]float64{}
		shapes := [3][]int{qShape, kShape, kShape}
		sizes := [3]int{nq, nk, nk}
		for i := range grads {
			if !g[i] {
				continue
			}
			f, d := randStored(rng, dtype, sizes[i], tol.gradInit)
			grads[i], init[i] = upload(b, dtype, f, shapes[i]...), d
			if onCPU {
				hgrads[i] = upload(h, dtype, f, shapes[i]...)
			}
		}
		b.AttentionBackward(grads[0], grads[1], grads[2], dout, q, k, v, so, sl, bopt)
		if onCPU {
			h.AttentionBackward(hgrads[0], hgrads[1], hgrads[2], hdout, hq, hk, hv, ho, hl, hopt)
		}
		refs := [3][]float64{rdq, rdk, rdv}
		for i, name := range []string{"dq", "dk", "dv"} {
			if grads[i] == nil {
				continue
			}
			var want []float64
			if onCPU {
				want = f64s(h.Download(hgrads[i]))
			} else {
				want = make([]float64, sizes[i])
				for j := range want {
					want[j] = init[i][j] + refs[i][j]
				}
			}
			compare(t, fmt.Sprintf("%s backward %v %s", what, g, name), b.Download(grads[i]), want, tol.grad)
		}
	}
}

// TestAttentionWideHeadFallback checks that a head dimension above the
// kernels' 256 still works (through the host) and is counted as a
// fallback, so StatsSummary tells a user why such a model is slow.
func TestAttentionWideHeadFallback(t *testing.T) {
	b := testBackend(t)
	h := cpu.New()
	rng := testRand(t)
	c := attnTestCase{1, 3, 5, 2, 1, 260}
	qShape, kShape := []int{c.B, c.T, c.Hq, c.D}, []int{c.B, c.S, c.Hkv, c.D}
	qf, _ := randStored(rng, engine.Float32, c.B*c.T*c.Hq*c.D, 1)
	kf, _ := randStored(rng, engine.Float32, c.B*c.S*c.Hkv*c.D, 1)
	vf, _ := randStored(rng, engine.Float32, c.B*c.S*c.Hkv*c.D, 1)
	before := b.Stats()["Attention"]
	out, lse := b.Alloc(engine.Float32, qShape...), b.Alloc(engine.Float32, c.B, c.Hq, c.T)
	b.Attention(out, lse, upload(b, engine.Float32, qf, qShape...), upload(b, engine.Float32, kf, kShape...), upload(b, engine.Float32, vf, kShape...), engine.AttentionOptions{})
	ho, hl := h.Alloc(engine.Float32, qShape...), h.Alloc(engine.Float32, c.B, c.Hq, c.T)
	h.Attention(ho, hl, upload(h, engine.Float32, qf, qShape...), upload(h, engine.Float32, kf, kShape...), upload(h, engine.Float32, vf, kShape...), engine.AttentionOptions{})
	compare(t, "D=260 out", b.Download(out), f64s(h.Download(ho)), tolF32)
	if after := b.Stats()["Attention"]; after.Fallback != before.Fallback+1 {
		t.Errorf("D=260: fallback count %d -> %d, want +1", before.Fallback, after.Fallback)
	}
}

// attnTCCases are the tensor-core kernels' shapes: T = 1, 17, 63, 65, 130
// (ragged against the 64-row blocks and the 64- or 32-row streamed tiles),
// keys before the queries S−T = 0, 5, 40, GQA ratios 1, 4, 8, and head
// dims 64, 80 (zero-padded to 128 inside the kernel) and 128.
var attnTCCases = []attnTestCase{
	{1, 1, 1, 1, 1, 64},
	{1, 1, 41, 8, 1, 128},
	{1, 17, 22, 4, 1, 64},
	{1, 17, 57, 1, 1, 80},
	{1, 63, 103, 8, 1, 80},
	{2, 65, 65, 2, 2, 128},
	{1, 65, 70, 4, 1, 80},
	{1, 130, 130, 4, 1, 64},
	{1, 130, 170, 8, 1, 128},
}

// Tolerances of the tensor-core path (BFloat16 storage, relative norm
// error against the float64 reference with the same rounding points on the
// same rounded inputs): what is left is the bfloat16 rounding of the
// stored results (at most 2^-8 relative, ≈ 1.7e-3 observed); see
// kernels/README.md "Attention on tensor cores".
const (
	tolTCOut  = 3e-3
	tolTCLse  = 1e-6
	tolTCGrad = 3e-3
)

// TestAttentionTensorCores checks the mma.sync kernels (BFloat16 q, k, v,
// D <= 128) at the shapes of attnTCCases with tolerances tight enough to
// catch an off-by-one causal mask or a wrong scale. Gradient outputs start
// from small random values (sd 0.01), so the error is measured against the
// gradient itself while accumulation is still exercised (TestAttentionKernels
// checks it against O(1) starting values).
func TestAttentionTensorCores(t *testing.T) {
	b := testBackend(t)
	h := cpu.New()
	rng := testRand(t)
	tol := attnTol{out: tolTCOut, lse: tolTCLse, grad: tolTCGrad, gradInit: 0.01}
	for _, c := range attnTCCases {
		a := attnDims{b: c.B, t: c.T, s: c.S, hq: c.Hq, hkv: c.Hkv, d: c.D}
		q := b.Alloc(engine.BFloat16, c.B, c.T, c.Hq, c.D)
		if _, ok := attnTcFor(a, q, q, q); !ok {
			t.Fatalf("%v: the tensor-core kernels do not take BFloat16 at this shape", c)
		}
		b.Free(q)
		runAttnCase(t, b, h, rng, c, attnOpts{}, engine.BFloat16, tol)
	}
	before := b.Stats()
	for _, c := range attnTCOptionCases {
		runAttnCase(t, b, h, rng, c.attnTestCase, c.opt, engine.BFloat16, tol)
	}
	requireAttnNative(t, b, before)
}

// attnTCOptionCases are the tensor-core kernels' option cases, against
// the CPU backend: windows that skip key tiles in the forward and dq
// kernels and query tiles in dk/dv (T = 130 over 64-row blocks), windows
// that hide the keys before the queries (S − T = 40) from later rows (and
// end a key block's queries at the first row of a query tile),
// segments that let blocks skip tiles both ways, ids shared by separate
// runs (which must not be skipped), segments with visible prefix keys,
// dropout (a seed with the high bit set), soft-capping with a set scale,
// and everything at once with GQA.
var attnTCOptionCases = []attnOptCase{
	{attnTestCase{1, 130, 130, 4, 1, 64}, attnOpts{window: 50}},
	{attnTestCase{1, 130, 170, 4, 1, 128}, attnOpts{window: 74, softCap: 3}}, // key block 0's last query (96) starts a tile
	{attnTestCase{2, 130, 130, 2, 2, 128}, attnOpts{segs: []int{70, 60}}},
	{attnTestCase{1, 130, 130, 4, 1, 80}, attnOpts{segs: []int{20, 45, 30}, ids: 2}},
	// Rows 64..103 and keys 0..31 share an id, keys 32..63 do not: a
	// one-example test of the tile that read only its first 32 ids would
	// take key tile 0 as unmasked for rows 64..79.
	{attnTestCase{1, 130, 130, 2, 1, 64}, attnOpts{segs: []int{32, 32, 40}, ids: 2}},
	{attnTestCase{1, 65, 70, 4, 1, 80}, attnOpts{segs: []int{30, 20, 15}, dropout: 0.2, seed: 1<<63 | 12345}},
	{attnTestCase{1, 65, 65, 2, 2, 64}, attnOpts{dropout: 0.5, seed: 77, scale: 0.2, softCap: 1}},
	{attnTestCase{1, 130, 140, 4, 2, 128}, attnOpts{window: 40, segs: []int{50, 80}, softCap: 2, dropout: 0.1, seed: 3, scale: 0.1}},
}

// TestAttentionDropoutMask reads the dropout mask back from both kernel
// families and compares it bit for bit with engine.DropoutKeep: with q = 0
// every visible probability is 1/(t + S − T + 1), and with one-hot values
// (v[b, j, kvh, :] = e_j) out[b, t, h, j] is nonzero exactly where the
// mask keeps key j. The seed has its high bits set and the counters run
// over two batches, four query heads (GQA) and keys before the queries,
// so the 64-bit arithmetic of the device SplitMix64 is what is checked.
func TestAttentionDropoutMask(t *testing.T) {
	b := testBackend(t)
	const B, T, S, Hq, Hkv, D = 2, 40, 43, 4, 2, 64
	const p = float32(0.3)
	const seed = uint64(0xDEADBEEFCAFEF00D)
	opt := engine.AttentionOptions{Dropout: p, DropoutSeed: seed}
	rng := testRand(t)
	kf, _ := randStored(rng, engine.BFloat16, B*S*Hkv*D, 1)
	onehot := make([]float32, B*S*Hkv*D)
	for i := 0; i < B*S*Hkv; i++ {
		onehot[i*D+(i/Hkv)%S] = 1 // row (b, j, kvh) is e_j
	}
	before := b.Stats()
	for _, dtype := range []engine.DType{engine.Float32, engine.BFloat16} { // SIMT, tensor cores
		q := b.Alloc(dtype, B, T, Hq, D)
		k, v := upload(b, dtype, kf, B, S, Hkv, D), upload(b, dtype, onehot, B, S, Hkv, D)
		out, lse := b.Alloc(engine.Float32, B, T, Hq, D), b.Alloc(engine.Float32, B, Hq, T)
		b.Attention(out, lse, q, k, v, opt)
		got := b.Download(out)
		wrong, kept, visible := 0, 0, 0
		for bi := 0; bi < B; bi++ {
			for h := 0; h < Hq; h++ {
				for tq := 0; tq < T; tq++ {
					for j := 0; j < D; j++ {
						want := j <= tq+S-T && engine.DropoutKeep(seed, engine.AttentionDropoutCounter(bi, h, tq, j, Hq, T, S), engine.DropoutThreshold(p))
						has := got[((bi*T+tq)*Hq+h)*D+j] != 0
						if has != want {
							wrong++
						}
						if j <= tq+S-T {
							visible++
							if want {
								kept++
							}
						}
					}
				}
			}
		}
		assert.Zero(t, wrong, "%v: %d of %d mask bits differ from engine.DropoutKeep", dtype, wrong, B*Hq*T*D)
		assert.InDelta(t, 1-p, float64(kept)/float64(visible), 0.05, "%v: kept fraction", dtype)
	}
	requireAttnNative(t, b, before, "Attention")
}

// unitScale is a compareScaled scale of n ones: errors relative to
// max(‖want‖, √n).
func unitScale(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = 1
	}
	return out
}
