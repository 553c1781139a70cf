package model

import "github.com/gotune/gotune/engine"

// Activation memory, llm.c style: every buffer a pass needs is allocated
// once per pass shape and reused by every later pass of that shape. A
// training pass keeps one layerActs per layer that backward will visit;
// layers below the lowest trainable one (and every layer of an inference
// pass) share two scratch sets used alternately, so frozen lower layers
// keep nothing.

// actKey is the shape a set of buffers was allocated for.
type actKey struct {
	B, T     int  // sequences and tokens per sequence (virtual included)
	Pv       int  // virtual prompt tokens per sequence
	P        int  // key/value prefix length (0 with a KV cache)
	heads    int  // rows the LM head scores per sequence (all real, or 1)
	first    bool // the last virtual token is scored too (Batch.FirstLabels)
	lowLayer int  // first layer that keeps its own activations
	backward bool // gradient buffers are needed
	version  int  // hooks/prompt/prefix layout
	// recompute: gradient checkpointing; layers keep only their input and
	// share one set of the other buffers (see gradckpt.go).
	recompute bool
}

// layerActs are one layer's activations. 2-D tensors are [N, features]
// with N = B·T; the *4 fields view the same storage as [B, T, heads, D].
type layerActs struct {
	x        *engine.Tensor // input: the residual stream
	st1, st2 normStats
	xn1, xn2 *engine.Tensor // normalised inputs of the two sub-layers
	q, k, v  *engine.Tensor // projections, after RoPE
	// qRaw, kRaw are the q/k projections before their norms (families
	// with q/k norms; nil otherwise), stQ, stK those norms' statistics.
	qRaw, kRaw *engine.Tensor
	stQ, stK   normStats
	q4, k4, v4 *engine.Tensor
	kAll, vAll *engine.Tensor // [B, P+T, kvHeads, D] with a prefix
	att, att4  *engine.Tensor // attention output (o_proj input)
	lse        *engine.Tensor // [B, heads, T]
	h1, y1     *engine.Tensor // attention sub-layer output, hooked output
	xmid       *engine.Tensor // residual stream between the sub-layers
	f1, f2, fa *engine.Tensor // MLP: gate (or c_fc) output, up output, activation
	h2, y2     *engine.Tensor // MLP sub-layer output, hooked output
	// pn1, pn2 are the normalised (hooked) sub-layer outputs added to
	// the residual stream (post-norm families; nil otherwise).
	pn1, pn2 *engine.Tensor
	// stP1, stP2 are the statistics of a sandwich-norm family's output
	// norms (st1, st2 are its input norms').
	stP1, stP2 normStats

	// rand is, with gradient checkpointing, the random state the layer's
	// modules drew from in the forward pass, replayed when it is
	// recomputed.
	rand []moduleRand
}

// actSet is every buffer of one pass shape.
type actSet struct {
	key     actKey
	tensors []*engine.Tensor // for Free
	layers  []*layerActs

	ids     *engine.Tensor // Int32 [B·Treal] (inference passes upload here)
	posIDs  *engine.Tensor // Int32 [N] GPT-2 positions
	posHost []int32
	posAt   int            // first position posIDs was uploaded for (-1: none)
	posTmp  *engine.Tensor // [N, D]
	embReal *engine.Tensor // token embeddings before the prompt is prepended
	qkv     *engine.Tensor // fused projection output [N, q+2kv] (scratch)
	gu      *engine.Tensor // fused gate|up projection output [N, 2I] (scratch)
	// rot holds the rotated elements of q or k (or of their gradients)
	// under partial rotary: [N·heads, rotDim] (scratch).
	rot *engine.Tensor

	xf, xnf *engine.Tensor // final residual stream and its norm
	stf     normStats
	head    *engine.Tensor // rows the LM head scores (xnf itself or a gather)
	// logits is [rows, V]; overwritten by dlogits in backward. Rows are
	// B·heads real positions, then (with key.first) each sequence's last
	// virtual position.
	logits *engine.Tensor
	losses *engine.Tensor
	// ropeRows, ropeLocalRows are the RoPE rows of a packed pass's
	// positions [N, rotDim/2] in the tables and the local ones (Gemma 3),
	// allocated by the first packed pass of this shape.
	ropeRows, ropeLocalRows ropeRows

	// backward scratch, shared by all layers
	dres, dmid, dxn, dh *engine.Tensor
	datt, dq, dk, dv    *engine.Tensor
	dkAll, dvAll        *engine.Tensor
	dqkv                *engine.Tensor
	dgu                 *engine.Tensor // gradient of gu
	dqRaw, dkRaw        *engine.Tensor // gradients of qRaw, kRaw
	dpost               *engine.Tensor // gradient of a post-norm's input (post-norm families)
	dsub                *engine.Tensor // resMul·(residual gradient) (Granite)
	ddrop               *engine.Tensor // a sub-layer output's gradient through its dropout
	df1, df2, dfa       *engine.Tensor
	dhead, dembReal     *engine.Tensor
	dprompt             *engine.Tensor
	// dy is a sub-layer output's gradient in the activation dtype, when
	// the residual gradient (always float32) must be rounded to feed the
	// sub-layer's matrix products.
	dy *engine.Tensor
}

func (s *actSet) free(be engine.Backend) {
	for _, t := range s.tensors {
		be.Free(t)
	}
	s.tensors = nil
}

// newActs allocates the buffers for key k.
func (m *Transformer) newActs(k actKey) *actSet {
	s := &actSet{key: k, posAt: -1}
	d := &m.d
	f32 := func(shape ...int) *engine.Tensor {
		t := m.be.Alloc(engine.Float32, shape...)
		s.tensors = append(s.tensors, t)
		return t
	}
	// act allocates buffers that feed or come out of matrix products:
	// bfloat16 under mixed precision. The residual stream, norm statistics
	// and gradients summed from several products stay float32.
	act := func(shape ...int) *engine.Tensor {
		t := m.be.Alloc(m.prec.ActDType(), shape...)
		s.tensors = append(s.tensors, t)
		return t
	}
	i32 := func(n int) *engine.Tensor {
		t := m.be.Alloc(engine.Int32, n)
		s.tensors = append(s.tensors, t)
		return t
	}
	B, T := k.B, k.T
	N, D, qd, kvd, I := B*T, d.hidden, d.qDim(), d.kvDim(), d.inter
	S := k.P + T
	treal := T - k.Pv
	var hookAttn, hookMLP bool
	for _, b := range m.blocks {
		hookAttn = hookAttn || b.hooks[SiteAttn] != nil
		hookMLP = hookMLP || b.hooks[SiteMLP] != nil
	}
	gated := m.blocks[0].gate != nil || m.blocks[0].gateUp != nil
	fusedGateUp := m.blocks[0].gateUp != nil
	sandwich := m.blocks[0].postAttn != nil
	qkNorm := m.blocks[0].qNorm != nil
	post := m.postNorm()
	centered := m.normF.centered()
	stats := func() normStats {
		st := normStats{rstd: f32(N)}
		if centered {
			st.mean = f32(N)
		}
		return st
	}
	newLayer := func() *layerActs {
		a := &layerActs{x: f32(N, D), st1: stats(), st2: stats(), xn1: act(N, D), xn2: act(N, D)}
		a.q, a.k, a.v = act(N, qd), act(N, kvd), act(N, kvd)
		if qkNorm {
			a.qRaw, a.kRaw = act(N, qd), act(N, kvd)
			a.stQ = normStats{rstd: f32(N * qd / m.qkNormWidth(qd))}
			a.stK = normStats{rstd: f32(N * kvd / m.qkNormWidth(kvd))}
		}
		a.q4 = a.q.Reshape(B, T, d.heads, d.headDim)
		a.k4 = a.k.Reshape(B, T, d.kvHeads, d.headDim)
		a.v4 = a.v.Reshape(B, T, d.kvHeads, d.headDim)
		a.kAll, a.vAll = a.k4, a.v4
		if k.P > 0 {
			a.kAll = act(B, S, d.kvHeads, d.headDim)
			a.vAll = act(B, S, d.kvHeads, d.headDim)
		}
		a.att = act(N, qd)
		a.att4 = a.att.Reshape(B, T, d.heads, d.headDim)
		a.lse = f32(B, d.heads, T)
		a.h1, a.y1 = act(N, D), nil
		if hookAttn {
			a.y1 = act(N, D)
		}
		a.xmid = f32(N, D)
		a.f1, a.fa = act(N, I), act(N, I)
		if gated {
			a.f2 = act(N, I)
		}
		a.h2 = act(N, D)
		if hookMLP {
			a.y2 = act(N, D)
		}
		if post {
			a.pn1, a.pn2 = act(N, D), act(N, D)
		}
		if sandwich {
			a.stP1, a.stP2 = stats(), stats()
		}
		return a
	}
	L := len(m.blocks)
	s.layers = make([]*layerActs, L)
	if k.recompute {
		s.layers = checkpointedLayers(k, L, newLayer(), func() *engine.Tensor { return f32(N, D) })
	}
	var scratch [2]*layerActs
	for l := 0; l < L && !k.recompute; l++ {
		if k.backward && l >= k.lowLayer {
			s.layers[l] = newLayer()
			continue
		}
		if scratch[l%2] == nil {
			scratch[l%2] = newLayer()
		}
		s.layers[l] = scratch[l%2]
	}
	s.ids = i32(B * treal)
	if m.posEmb != nil {
		s.posIDs = i32(N)
		s.posHost = make([]int32, N)
		s.posTmp = f32(N, D)
	}
	if k.Pv > 0 {
		s.embReal = f32(B*treal, D)
	}
	if m.blocks[0].qkv != nil {
		s.qkv = act(N, qd+2*kvd)
	}
	if fusedGateUp {
		s.gu = act(N, 2*I)
	}
	if m.rope != nil && m.rope.partial(d.headDim) {
		s.rot = act(N*d.heads, m.rope.rotDim)
	}
	s.xf, s.xnf, s.stf = f32(N, D), act(N, D), stats()
	rows := B * k.heads
	if k.first {
		rows += B
	}
	s.head = s.xnf
	if k.heads != T || k.first {
		s.head = act(rows, D)
	}
	s.logits, s.losses = act(rows, d.vocab), f32(rows)
	if !k.backward {
		return s
	}
	s.dres, s.dmid, s.dxn, s.dh = f32(N, D), f32(N, D), f32(N, D), act(N, D)
	if m.prec.ActDType() != engine.Float32 {
		s.dy = act(N, D)
	}
	s.datt, s.dq, s.dk, s.dv = act(N, qd), act(N, qd), act(N, kvd), act(N, kvd)
	if k.P > 0 {
		s.dkAll, s.dvAll = act(B, S, d.kvHeads, d.headDim), act(B, S, d.kvHeads, d.headDim)
	}
	if s.qkv != nil {
		s.dqkv = act(N, qd+2*kvd)
	}
	if fusedGateUp {
		s.dgu = act(N, 2*I)
	}
	if qkNorm {
		s.dqRaw, s.dkRaw = act(N, qd), act(N, kvd)
	}
	if post {
		s.dpost = f32(N, D)
	}
	if d.resMul != 1 {
		s.dsub = f32(N, D)
	}
	if d.residDrop > 0 {
		s.ddrop = act(N, D)
	}
	s.df1, s.dfa = act(N, I), act(N, I)
	if gated {
		s.df2 = act(N, I)
	}
	s.dhead = s.dxn
	if s.head != s.xnf {
		s.dhead = f32(rows, D)
	}
	if k.Pv > 0 {
		s.dembReal = f32(B*treal, D)
		s.dprompt = f32(k.Pv, D)
	}
	return s
}

// asAct returns the residual-stream gradient d as a sub-layer output's
// gradient in the activation dtype: d itself in float32 passes, else
// rounded into s.dy (torch's autocast casts it at the same point).
func (s *actSet) asAct(be engine.Backend, d *engine.Tensor) *engine.Tensor {
	if s.dy == nil {
		return d
	}
	be.Copy(s.dy, d)
	return s.dy
}

// acts returns the buffers for key k, reallocating (and freeing the old
// ones) only when the shape changed.
func (m *Transformer) acts(cur **actSet, k actKey) *actSet {
	if *cur != nil && (*cur).key == k {
		return *cur
	}
	if *cur != nil {
		(*cur).free(m.be)
	}
	*cur = m.newActs(k)
	return *cur
}

// ReleaseActivations frees the cached activation buffers (they are
// reallocated by the next pass), e.g. between training and generation.
func (m *Transformer) ReleaseActivations() {
	for _, s := range []**actSet{&m.trainActs, &m.evalActs, &m.inferActs} {
		if *s != nil {
			(*s).free(m.be)
			*s = nil
		}
	}
	m.last = nil
}

// forwardOnlyActs returns buffers for a forward-only pass of key k. A
// training set of the same shape serves it (its layers below the lowest
// trainable one share scratch space, which a forward pass allows), so
// evaluating between training steps allocates nothing.
func (m *Transformer) forwardOnlyActs(k actKey) *actSet {
	if t := m.trainActs; t != nil && t.key.B == k.B && t.key.T == k.T && t.key.Pv == k.Pv &&
		t.key.P == k.P && t.key.heads == k.heads && t.key.first == k.first && t.key.version == k.version {
		return t
	}
	return m.acts(&m.evalActs, k)
}
