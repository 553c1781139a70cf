package benchkernels

import (
	"fmt"
	"math"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fused"
	"github.com/gotune/gotune/internal/benchutil"
)

// benchCase is one operation at one shape.
type benchCase struct {
	op, impl   string
	dtype      engine.DType
	m, n, k, r int
	attn       attnShape // attention operations only
}

// attnShape is a causal grouped-query attention problem: B sequences of T
// tokens, Hq query heads reading Hkv key/value heads of dimension D, and a
// sliding window of Window keys (0: none; engine.AttentionOptions.Window).
type attnShape struct {
	B, T, Hq, Hkv, D, Window int
}

// Attention operations: the forward, or the forward and the backward;
// with a sliding window the same with the attnWindowed suffix.
const (
	attnFwd      = "attn_fwd"
	attnFwdBwd   = "attn_fwdbwd"
	attnWindowed = "_window"
)

// isAttn reports whether op is an attention operation.
func isAttn(op string) bool { return strings.HasPrefix(op, "attn_") }

// attnShapes are the attention problems timed: on a GPU those of the
// 0.5B and 1.5B models `gotune bench train` uses (head dimensions 64 and
// 128, two query heads per kv head, the same tokens per step); elsewhere
// a small one. The last shape again with a sliding window of an eighth
// (a quarter) of the sequence: its time next to the causal one's shows
// whether the kernels skip the key tiles outside the window.
func attnShapes(gpu, small bool) []attnShape {
	var s []attnShape
	switch {
	case gpu && !small:
		s = []attnShape{{B: 4, T: 2048, Hq: 16, Hkv: 8, D: 64}, {B: 2, T: 2048, Hq: 16, Hkv: 8, D: 128}}
	case gpu:
		s = []attnShape{{B: 2, T: 2048, Hq: 16, Hkv: 8, D: 128}}
	case small:
		s = []attnShape{{B: 1, T: 32, Hq: 4, Hkv: 2, D: 16}}
	default:
		s = []attnShape{{B: 1, T: 512, Hq: 8, Hkv: 4, D: 64}}
	}
	w := s[len(s)-1]
	w.Window = w.T / 8
	if !gpu {
		w.Window = w.T / 4
	}
	return append(s, w)
}

// cases lists what to time. On a GPU: tokens 4096 and 16384, the LLaMA-7B
// and Mistral-7B projection widths (4096→4096, 4096→11008, 4096→14336, and
// the 11008→4096 down projection), LoRA ranks 8, 16 and 64. On the CPU (or
// the emulator, or with --quick) scaled-down shapes of the same kinds.
func cases(gpu, small bool) []benchCase {
	type lin struct{ k, n int }
	var tokens []int
	var lins []lin
	var ranks []int
	adapterD, adapterR := 0, 64
	dtypes := []engine.DType{engine.BFloat16}
	switch {
	case gpu && !small:
		tokens = []int{4096, 16384}
		lins = []lin{{4096, 4096}, {4096, 11008}, {11008, 4096}, {4096, 14336}}
		ranks = []int{8, 16, 64}
		adapterD = 4096
	case gpu:
		tokens = []int{4096}
		lins = []lin{{4096, 4096}, {4096, 14336}}
		ranks = []int{16}
		adapterD = 4096
	case small && !gpu:
		// Emulator or CPU smoke test: seconds, not minutes.
		tokens = []int{64}
		lins = []lin{{128, 96}}
		ranks = []int{8}
		adapterD, adapterR = 128, 16
		dtypes = []engine.DType{engine.Float32}
	default:
		// The CPU backend: a 16th of the token counts and an 8th of the
		// widths, float32 (the CPU backend computes in float32 anyway).
		tokens = []int{256, 1024}
		lins = []lin{{512, 512}, {512, 1376}}
		ranks = []int{8, 16, 64}
		adapterD = 512
		dtypes = []engine.DType{engine.Float32}
	}
	var out []benchCase
	for _, dt := range dtypes {
		for _, m := range tokens {
			for _, l := range lins {
				out = append(out, benchCase{op: "gemm", impl: "cublas", dtype: dt, m: m, n: l.n, k: l.k})
				out = append(out, benchCase{op: "gemm", impl: "gotune", dtype: dt, m: m, n: l.n, k: l.k})
				for _, r := range ranks {
					out = append(out, benchCase{op: "lora_fwd", impl: "gotune", dtype: dt, m: m, n: l.n, k: l.k, r: r})
				}
				out = append(out, benchCase{op: "lora_bwd", impl: "gotune", dtype: dt, m: m, n: l.n, k: l.k, r: ranks[len(ranks)/2]})
			}
			out = append(out, benchCase{op: "adapter_fwd", impl: "gotune", dtype: dt, m: m, n: adapterD, k: adapterD, r: adapterR})
			out = append(out, benchCase{op: "adapter_bwd", impl: "gotune", dtype: dt, m: m, n: adapterD, k: adapterD, r: adapterR})
		}
	}
	attnDType := engine.Float32
	if gpu {
		attnDType = engine.BFloat16
	}
	for _, a := range attnShapes(gpu, small) {
		for _, op := range []string{attnFwd, attnFwdBwd} {
			k := a.T // keys a query sees at most
			if a.Window > 0 {
				op, k = op+attnWindowed, a.Window
			}
			out = append(out, benchCase{op: op, impl: "gotune", dtype: attnDType, m: a.B * a.T, n: a.Hq * a.D, k: k, attn: a})
		}
	}
	if gpu {
		// The float32 path (SIMT, exact) against cublasSgemm, one shape.
		m, k, n := 4096, 4096, 4096
		if small {
			m = 2048
		}
		out = append(out,
			benchCase{op: "gemm", impl: "cublas", dtype: engine.Float32, m: m, n: n, k: k},
			benchCase{op: "gemm", impl: "gotune", dtype: engine.Float32, m: m, n: n, k: k},
			benchCase{op: "lora_fwd", impl: "gotune", dtype: engine.Float32, m: m, n: n, k: k, r: 16},
			// A device-to-device copy of 1 GiB: the achievable bandwidth.
			benchCase{op: "copy", impl: "driver", dtype: engine.Float32, m: 1 << 28, n: 1, k: 1})
	}
	return out
}

// work returns the FLOPs and the least bytes an operation moves.
func work(c benchCase) (flops, bytes float64) {
	m, n, k, r := float64(c.m), float64(c.n), float64(c.k), float64(c.r)
	e := float64(c.dtype.Size())
	const g = 4 // float32 weight gradients
	switch c.op {
	case "gemm":
		return 2 * m * n * k, e * (m*k + n*k + m*n)
	case "lora_fwd":
		// X·Aᵀ, X·Wᵀ, (X·Aᵀ)·Bᵀ; X, W, A, B, bias read, Y written, the
		// rank-r intermediate written and read once.
		return 2*m*n*k + 2*m*k*r + 2*m*n*r, e * (m*k + n*k + r*k + n*r + n + m*n + 2*m*r)
	case "lora_bwd":
		// dXA = s·dY·B, dB += dYᵀ·XA, dA += dXAᵀ·X, dX += dY·W + dXA·A.
		return 2*m*n*k + 4*m*n*r + 4*m*k*r,
			e*(m*n+n*k+m*k+r*k+n*r+m*r+2*m*r+2*m*k) + g*2*(r*k+n*r)
	case "adapter_fwd":
		// down (with bias, activation, pre-activation saved), up (bias, residual).
		return 4 * m * k * r, e * (m*k + 2*k*r + r + k + 3*m*r + m*k)
	case "adapter_bwd":
		return 8 * m * k * r, e*(m*k+m*k+2*m*r+2*k*r+2*m*r+2*m*k) + g*2*(2*k*r+r+k)
	case "copy":
		return 0, 2 * m * e
	}
	if isAttn(c.op) {
		return attnWork(c.op, c.attn, e)
	}
	return 0, 0
}

// buf is a tensor of the run; the bench frees them after each case.
type setup struct {
	b    *bench
	bufs []*engine.Tensor
}

// tensor allocates a rows×cols tensor filled with random values (never
// zeros: they hide unwritten outputs and can run faster than real data).
// A block of random values is uploaded once and tiled across the tensor
// with device-side copies, so large tensors cost no host time.
func (s *setup) tensor(dt engine.DType, rows, cols int, scale float64) *engine.Tensor {
	be := s.b.be
	t := be.Alloc(dt, rows, cols)
	s.bufs = append(s.bufs, t)
	n := rows * cols
	block := min(n, 1<<20)
	vals := make([]float32, block)
	for i := range vals {
		vals[i] = float32(s.b.rng.NormFloat64() * scale)
	}
	src := be.Alloc(dt, block)
	be.Upload(src, vals)
	for off := 0; off < n; off += block {
		c := min(block, n-off)
		be.CopyBlock(t, off, 0, src, 0, 0, 1, c, false)
	}
	be.Free(src)
	return t
}

func (s *setup) free() {
	for _, t := range s.bufs {
		s.b.be.Free(t)
	}
}

// attention prepares q, k, v (and for the backward dout and the
// gradients) and returns the timed work: the forward, or the forward and
// then the backward (dq, dk, dv accumulate across repeats, which costs
// the same as overwriting).
func (s *setup) attention(c benchCase) func() {
	be, a, dt := s.b.be, c.attn, c.dtype
	shape := func(t *engine.Tensor, h int) *engine.Tensor { return t.Reshape(a.B, a.T, h, a.D) }
	q := shape(s.tensor(dt, a.B*a.T, a.Hq*a.D, 1), a.Hq)
	k := shape(s.tensor(dt, a.B*a.T, a.Hkv*a.D, 1), a.Hkv)
	v := shape(s.tensor(dt, a.B*a.T, a.Hkv*a.D, 1), a.Hkv)
	out := shape(s.tensor(dt, a.B*a.T, a.Hq*a.D, 1), a.Hq)
	lse := s.tensor(engine.Float32, a.B*a.Hq, a.T, 1).Reshape(a.B, a.Hq, a.T)
	opt := engine.AttentionOptions{Window: a.Window}
	if !strings.HasPrefix(c.op, attnFwdBwd) {
		return func() { be.Attention(out, lse, q, k, v, opt) }
	}
	dout := shape(s.tensor(dt, a.B*a.T, a.Hq*a.D, 1), a.Hq)
	dq := shape(s.tensor(dt, a.B*a.T, a.Hq*a.D, 1), a.Hq)
	dk := shape(s.tensor(dt, a.B*a.T, a.Hkv*a.D, 1), a.Hkv)
	dv := shape(s.tensor(dt, a.B*a.T, a.Hkv*a.D, 1), a.Hkv)
	return func() {
		be.Attention(out, lse, q, k, v, opt)
		be.AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse, opt)
	}
}

// runCase prepares inputs, warms up, times the repeats and fills a Result.
func (b *bench) runCase(c benchCase) (Result, error) {
	s := &setup{b: b}
	defer s.free()
	be := b.be
	dt := c.dtype
	var fn func()
	wscale := 1 / math.Sqrt(float64(max(c.k, 1)))
	switch c.op {
	case "gemm":
		x, w, y := s.tensor(dt, c.m, c.k, 1), s.tensor(dt, c.n, c.k, wscale), s.tensor(dt, c.m, c.n, 1)
		if c.impl == "cublas" {
			px, pw, py := b.gpu.DevicePointer(x), b.gpu.DevicePointer(w), b.gpu.DevicePointer(y)
			var err error
			fn = func() {
				if e := b.blas.LinearRowMajor(dt == engine.BFloat16, c.m, c.n, c.k, px, pw, py); e != nil && err == nil {
					err = e
				}
			}
			defer func() {
				if err != nil {
					fmt.Fprintf(b.log, "cuBLAS: %v\n", err)
				}
			}()
		} else {
			fn = func() { be.Gemm(y, x, w, false, true, 1, 0) }
		}
	case "lora_fwd":
		x, w, bias := s.tensor(dt, c.m, c.k, 1), s.tensor(dt, c.n, c.k, wscale), s.tensor(dt, 1, c.n, 0.1)
		a, bm := s.tensor(dt, c.r, c.k, wscale), s.tensor(dt, c.n, c.r, 0.1)
		y, xa := s.tensor(dt, c.m, c.n, 1), s.tensor(dt, c.m, c.r, 1)
		scale := float32(2) / float32(c.r)
		fn = func() { fused.LoRAForward(be, y, xa, x, nil, fused.LoRA{W: w, Bias: bias, A: a, B: bm, Scale: scale}) }
	case "lora_bwd":
		x, w := s.tensor(dt, c.m, c.k, 1), s.tensor(dt, c.n, c.k, wscale)
		a, bm := s.tensor(dt, c.r, c.k, wscale), s.tensor(dt, c.n, c.r, 0.1)
		xa, dy, dx := s.tensor(dt, c.m, c.r, 1), s.tensor(dt, c.m, c.n, 1), s.tensor(dt, c.m, c.k, 1)
		da, db := s.tensor(engine.Float32, c.r, c.k, 1), s.tensor(engine.Float32, c.n, c.r, 1)
		scale := float32(2) / float32(c.r)
		fn = func() {
			fused.LoRABackward(be, dx, nil, da, db, dy, x, xa, fused.LoRA{W: w, A: a, B: bm, Scale: scale})
		}
	case "adapter_fwd":
		d, r := c.k, c.r
		x, wd, bd := s.tensor(dt, c.m, d, 1), s.tensor(dt, r, d, wscale), s.tensor(dt, 1, r, 0.1)
		wu, bu := s.tensor(dt, d, r, 1/math.Sqrt(float64(r))), s.tensor(dt, 1, d, 0.1)
		y, pre, hid := s.tensor(dt, c.m, d, 1), s.tensor(dt, c.m, r, 1), s.tensor(dt, c.m, r, 1)
		ops := fused.Bottleneck{Down: wd, DownBias: bd, Up: wu, UpBias: bu, Act: engine.ActGELUTanh, Scale: 1}
		fn = func() { fused.AdapterForward(be, y, pre, hid, x, x, ops) }
	case "adapter_bwd":
		d, r := c.k, c.r
		x, wd := s.tensor(dt, c.m, d, 1), s.tensor(dt, r, d, wscale)
		wu := s.tensor(dt, d, r, 1/math.Sqrt(float64(r)))
		pre, hid, dy, dx := s.tensor(dt, c.m, r, 1), s.tensor(dt, c.m, r, 1), s.tensor(dt, c.m, d, 1), s.tensor(dt, c.m, d, 1)
		dwd, dwu := s.tensor(engine.Float32, r, d, 1), s.tensor(engine.Float32, d, r, 1)
		dbd, dbu := s.tensor(engine.Float32, 1, r, 1), s.tensor(engine.Float32, 1, d, 1)
		ops := fused.Bottleneck{Down: wd, Up: wu, Act: engine.ActGELUTanh, Scale: 1}
		fn = func() { fused.AdapterBackward(be, dx, dx, dwd, dbd, dwu, dbu, dy, x, pre, hid, ops) }
	case "copy":
		src, dst := s.tensor(dt, c.m, 1, 1), s.tensor(dt, c.m, 1, 1)
		fn = func() { be.Copy(dst, src) }
	default:
		if !isAttn(c.op) {
			return Result{}, fmt.Errorf("unknown operation %q", c.op)
		}
		fn = s.attention(c)
	}
	if err := be.Synchronize(); err != nil {
		return Result{}, err
	}
	for i := 0; i < b.o.warmup; i++ {
		if _, err := b.timeMs(fn); err != nil {
			return Result{}, err
		}
	}
	times := make([]float64, 0, b.o.repeats)
	for i := 0; i < max(1, b.o.repeats); i++ {
		ms, err := b.timeMs(fn)
		if err != nil {
			return Result{}, err
		}
		times = append(times, ms)
	}
	flops, bytes := work(c)
	r := Result{Op: c.op, Impl: c.impl, DType: c.dtype.String(), M: c.m, N: c.n, K: c.k, R: c.r,
		Batch: c.attn.B, Seq: c.attn.T, Heads: c.attn.Hq, KVHeads: c.attn.Hkv, HeadDim: c.attn.D, Window: c.attn.Window,
		MedianMs: benchutil.Median(times), Repeats: len(times), FLOPs: flops, Bytes: bytes}
	r.MinMs, r.MaxMs = times[0], times[0]
	for _, t := range times {
		r.MinMs, r.MaxMs = min(r.MinMs, t), max(r.MaxMs, t)
	}
	if r.MedianMs > 0 {
		r.TFLOPS = flops / (r.MedianMs * 1e-3) / 1e12
		r.GBs = bytes / (r.MedianMs * 1e-3) / 1e9
	}
	peak := b.peaks.F32TFLOPS
	if c.dtype == engine.BFloat16 {
		peak = b.peaks.BF16TFLOPS
	}
	var tc, tm float64 // compute and memory times in ms
	if peak > 0 {
		tc = flops / (peak * 1e12) * 1e3
	}
	if b.peaks.BandwidthGBs > 0 {
		tm = bytes / (b.peaks.BandwidthGBs * 1e9) * 1e3
	}
	if (flops == 0 || tc > 0) && tm > 0 || (tc > 0 && bytes == 0) {
		r.FloorMs, r.Bound = tc, "compute"
		if tm > tc {
			r.FloorMs, r.Bound = tm, "memory"
		}
		if r.MedianMs > 0 {
			r.OfFloor = r.FloorMs / r.MedianMs
		}
	}
	return r, nil
}

// attnWork counts causal attention as FlashAttention's benchmarks do: the
// forward's two T×T×D products per head, halved by the causal mask
// (2·B·Hq·T²·D), and a backward of 2.5 times that (five products, one of
// them recomputing the scores). A sliding window of W keys leaves T·W −
// W²/2 of the T²/2 (query, key) pairs. Bytes: q, k, v read and out, lse
// written; the backward reads those and dout, and writes dq, dk, dv.
func attnWork(op string, a attnShape, e float64) (flops, bytes float64) {
	b, t, hq, hkv, d := float64(a.B), float64(a.T), float64(a.Hq), float64(a.Hkv), float64(a.D)
	pairs := t * t / 2
	if w := float64(a.Window); a.Window > 0 && w < t {
		pairs = t*w - w*w/2
	}
	fwd := 4 * b * hq * pairs * d
	qo, kv, lse := b*t*hq*d*e, b*t*hkv*d*e, b*hq*t*4
	fwdBytes := 2*qo + 2*kv + lse
	if !strings.HasPrefix(op, attnFwdBwd) {
		return fwd, fwdBytes
	}
	bwdBytes := 3*qo + 2*kv + lse + qo + 2*kv // q, out, dout, k, v, lse in; dq, dk, dv out
	return 3.5 * fwd, fwdBytes + bwdBytes
}
