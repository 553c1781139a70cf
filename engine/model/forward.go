package model

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/arch"
)

// ForwardBackward runs the model on a batch and returns the summed
// cross-entropy of the counted targets; with backward it accumulates
// gradScale·∂loss/∂p into every trainable parameter's G (see
// engine.CausalLM). Gradient buffers of trainable parameters are allocated
// here on first use.
func (m *Transformer) ForwardBackward(bt *engine.Batch, backward bool, gradScale float32) (float64, error) {
	if err := m.checkBatch(bt); err != nil {
		return 0, err
	}
	L := len(m.blocks)
	low := 2*L + 1
	if backward {
		low = m.lowestTrainableStage()
		m.ensureGrads()
	}
	doBack := low <= 2*L
	Pv, P := 0, 0
	if m.prompt != nil {
		Pv = m.prompt.NumTokens()
	}
	if m.prefix != nil {
		P = m.prefix.NumTokens()
	}
	T := bt.T + Pv
	if err := m.checkPositions(P, T); err != nil {
		return 0, err
	}
	// PEFT scores the last virtual token against the first label.
	first := Pv > 0 && bt.FirstLabels != nil
	lowLayer := L
	if doBack {
		lowLayer = max(low, 0) / 2
	}
	key := actKey{B: bt.B, T: T, Pv: Pv, P: P, heads: bt.T, first: first, lowLayer: lowLayer, backward: doBack, version: m.version,
		recompute: doBack && m.gradCheckpoint}
	var s *actSet
	if doBack {
		s = m.acts(&m.trainActs, key)
	} else {
		s = m.forwardOnlyActs(key)
	}
	m.last = s
	p := &pass{B: bt.B, T: T, Pv: Pv, P: P, pos: P, train: backward, s: s, low: low}
	m.preparePacked(p, bt)
	m.forward(p, bt.InputIDs)

	var dlogits *engine.Tensor
	if doBack {
		dlogits = s.logits // overwritten in place: logits are not needed afterwards
	}
	if first {
		// Rows past the real ones are the last virtual positions.
		n := bt.B * bt.T
		var dreal, dfirst *engine.Tensor
		if doBack {
			dreal, dfirst = dlogits.Slice(0, n), dlogits.Slice(n, n+bt.B)
		}
		m.be.CrossEntropy(s.losses.Slice(0, n), dreal, s.logits.Slice(0, n), bt.Targets, gradScale, m.d.logitCap)
		m.be.CrossEntropy(s.losses.Slice(n, n+bt.B), dfirst, s.logits.Slice(n, n+bt.B), bt.FirstLabels, gradScale, m.d.logitCap)
	} else {
		m.be.CrossEntropy(s.losses, dlogits, s.logits, bt.Targets, gradScale, m.d.logitCap)
	}
	if doBack {
		m.backward(p, bt.InputIDs)
	} else if backward {
		(&stageCursor{o: m.observer}).finish(m.gradStageInput() + 1) // nothing trainable: every stage is empty
	}
	var sum float64
	for _, l := range m.be.Download(s.losses) {
		sum += float64(l)
	}
	if err := m.be.Synchronize(); err != nil {
		return 0, fmt.Errorf("model: forward/backward on %s: %w", m.be.Name(), err)
	}
	return sum, nil
}

// ScoresFirstLabels reports whether ForwardBackward scores a batch's
// FirstLabels: while virtual tokens are prepended, the last one's logits
// are scored against each sequence's first label, as PEFT's prompt tuning
// and P-Tuning do (engine.FirstLabelScorer).
func (m *Transformer) ScoresFirstLabels() bool { return m.prompt != nil }

// forward runs embeddings, every layer, the final norm and the LM head on
// the rows the pass scores, leaving logits in p.s.logits.
func (m *Transformer) forward(p *pass, ids *engine.Tensor) {
	s, L, D := p.s, len(m.blocks), m.d.hidden
	m.embedForward(p, ids)
	if m.prefix != nil && p.P > 0 {
		m.prefix.Forward(p.train)
	}
	for l := 0; l < L; l++ {
		out := s.xf
		if l+1 < L {
			out = s.layers[l+1].x
		}
		if p.train && s.key.recompute && l >= s.key.lowLayer {
			m.saveLayerRand(l, s.layers[l])
		}
		m.blockForward(l, p, s.layers[l], out)
	}
	m.normF.forward(s.xnf, s.stf, s.xf)
	if h := s.key.heads; s.head != s.xnf {
		// Score only the last h positions of each sequence (the real
		// tokens, or the last one when generating).
		m.be.CopyBlock(s.head, 0, h*D, s.xnf, (p.T-h)*D, p.T*D, p.B, h*D, false)
		if s.key.first {
			// Then each sequence's last virtual position.
			m.be.CopyBlock(s.head, p.B*h*D, D, s.xnf, (p.Pv-1)*D, p.T*D, p.B, D, false)
		}
	}
	m.lmHead.Forward(s.logits, s.head, p.train)
	if m.d.logitMul != 1 {
		m.be.Scale(s.logits, m.d.logitMul)
	}
	if c := m.d.logitCap; c != 0 {
		// Gemma's final_logit_softcapping, as transformers writes it:
		// divide, tanh, multiply. CrossEntropy's softCap differentiates it.
		m.be.Scale(s.logits, 1/c)
		m.be.Activation(s.logits, s.logits, engine.ActTanh)
		m.be.Scale(s.logits, c)
	}
}

// backward runs the backward pass from dlogits (in p.s.logits) down to
// stage p.low (lowestTrainableStage's numbering), announcing the gradient
// stages of engine.StagedBackward (stages.go) to the observer, if any.
func (m *Transformer) backward(p *pass, ids *engine.Tensor) {
	be, s, L, D := m.be, p.s, len(m.blocks), m.d.hidden
	stages := &stageCursor{o: m.observer}
	defer stages.finish(m.gradStageInput() + 1)
	stages.begin(gradStageHead)
	needX := p.low < 2*L
	needXn := needX || Trainable(m.normF)
	var dhead *engine.Tensor
	if needXn {
		dhead = s.dhead
		be.Fill(dhead, 0)
	}
	if m.d.logitMul != 1 {
		be.Scale(s.logits, m.d.logitMul) // dlogits, in place
	}
	backLinear(m.lmHead, dhead, s.logits, s.head)
	if needXn && s.head != s.xnf {
		h := s.key.heads
		be.Fill(s.dxn, 0)
		be.CopyBlock(s.dxn, (p.T-h)*D, p.T*D, s.dhead, 0, h*D, p.B, h*D, false)
		if s.key.first {
			be.CopyBlock(s.dxn, (p.Pv-1)*D, p.T*D, s.dhead, p.B*h*D, D, p.B, D, false)
		}
	}
	var dres *engine.Tensor
	if needX {
		dres = s.dres
		be.Fill(dres, 0)
	}
	if needXn {
		m.normF.backward(dres, s.dxn, s.xf, s.stf)
	}
	if !needX {
		return
	}
	for l := L - 1; l >= 0 && 2*l+1 >= p.low; l-- {
		stages.begin(m.gradStageOfLayer(l))
		if s.key.recompute && l < L-1 {
			// The top layer's activations are still in the shared
			// buffers; every other layer's are rebuilt from its input.
			m.recomputeLayer(l, p, s.layers[l])
		}
		m.blockBackward(l, p, s.layers[l], dres)
	}
	stages.begin(m.gradStageInput())
	if p.low < 0 {
		m.embedBackward(p, ids, dres)
	}
	if m.prefix != nil && p.P > 0 && Trainable(m.prefix) {
		m.prefix.Backward()
	}
}

// embedForward writes the first layer's input: token embeddings (after
// the virtual tokens, if any) plus learned positions for GPT-2.
func (m *Transformer) embedForward(p *pass, ids *engine.Tensor) {
	be, s, D := m.be, p.s, m.d.hidden
	x := s.layers[0].x
	inMul, tokMul := m.embedMuls()
	if p.Pv == 0 {
		be.Embedding(x, m.embed.Weight.W, ids)
		inMul *= tokMul
	} else {
		treal := p.T - p.Pv
		be.Embedding(s.embReal, m.embed.Weight.W, ids)
		if tokMul != 1 {
			be.Scale(s.embReal, tokMul)
		}
		be.CopyBlock(x, p.Pv*D, p.T*D, s.embReal, 0, treal*D, p.B, treal*D, false)
		pe := m.prompt.Forward(p.train)
		for b := 0; b < p.B; b++ {
			be.CopyBlock(x, b*p.T*D, p.Pv*D, pe, 0, p.Pv*D, 1, p.Pv*D, false)
		}
	}
	if m.posEmb != nil {
		if s.posAt != p.pos && p.packed == nil {
			for b := 0; b < p.B; b++ {
				for t := 0; t < p.T; t++ {
					s.posHost[b*p.T+t] = int32(p.pos + t)
				}
			}
			be.UploadInt32(s.posIDs, s.posHost)
			s.posAt = p.pos
		}
		table, ids := m.positionLookup(p, m.posEmb.Weight.W)
		be.Embedding(s.posTmp, table, ids)
		be.Add(x, x, s.posTmp)
	}
	if inMul != 1 {
		be.Scale(x, inMul)
	}
	m.dropout(p, x, m.d.embdDrop, 0, engine.DropoutEmbedding)
}

// TokenEmbeddingScale is the multiplier the embedding module applies to
// token embeddings (Gemma 3's sqrt(hidden); 1 otherwise); see Model.
func (m *Transformer) TokenEmbeddingScale() float32 {
	_, tokens := m.embedMuls()
	return tokens
}

// embedMuls returns the multipliers of the layers' input sequence
// (Granite's embedding_multiplier, Gemma 2's sqrt(hidden): virtual
// tokens included) and of the token embeddings alone (Gemma 3's scaled
// embedding module); 1 when a family has none. Gemma's sqrt(hidden) is
// computed in the model dtype as transformers does: bfloat16 under
// PrecisionBF16 (sqrt(3072) = 55.4256 becomes 55.5).
func (m *Transformer) embedMuls() (inputs, tokens float32) {
	inputs, tokens = m.d.embMul, 1
	if m.d.embScale == arch.NoEmbedScale {
		return inputs, tokens
	}
	v := float32(math.Sqrt(float64(m.d.hidden)))
	if m.prec.ActDType() == engine.BFloat16 {
		v = roundBF16(v)
	}
	if m.d.embScale == arch.ScaleInputs {
		return inputs * v, tokens
	}
	return inputs, v
}

// embedBackward scatters the gradient of the first layer's input into the
// trainable embedding tables and virtual tokens.
func (m *Transformer) embedBackward(p *pass, ids, demb *engine.Tensor) {
	be, s, D := m.be, p.s, m.d.hidden
	treal := p.T - p.Pv
	m.dropout(p, demb, m.d.embdDrop, 0, engine.DropoutEmbedding) // the mask's own backward, in place
	inMul, tokMul := m.embedMuls()
	if p.Pv == 0 {
		inMul *= tokMul
	}
	if inMul != 1 {
		be.Scale(demb, inMul) // demb is not needed afterwards
	}
	if g := Grad(m.embed.Weight); g != nil {
		if p.Pv == 0 {
			be.EmbeddingBackward(g, demb, ids)
		} else {
			be.CopyBlock(s.dembReal, 0, treal*D, demb, p.Pv*D, p.T*D, p.B, treal*D, false)
			if tokMul != 1 {
				be.Scale(s.dembReal, tokMul)
			}
			be.EmbeddingBackward(g, s.dembReal, ids)
		}
	}
	if m.posEmb != nil {
		if g := Grad(m.posEmb.Weight); g != nil {
			table, ids := m.positionLookup(p, g)
			be.EmbeddingBackward(table, demb, ids)
		}
	}
	if m.prompt != nil && Trainable(m.prompt) {
		be.Fill(s.dprompt, 0)
		for b := 0; b < p.B; b++ {
			be.CopyBlock(s.dprompt, 0, p.Pv*D, demb, b*p.T*D, p.Pv*D, 1, p.Pv*D, true)
		}
		m.prompt.Backward(s.dprompt)
	}
}

// ensureGrads allocates a zero gradient for every trainable parameter
// that has none yet.
func (m *Transformer) ensureGrads() {
	for _, p := range m.Params() {
		if p.Trainable && p.G == nil {
			p.G = m.be.Alloc(engine.Float32, p.W.Shape()...)
		}
	}
}

// checkBatch validates a batch's geometry (its contents live on the
// backend and were validated by whoever built it).
func (m *Transformer) checkBatch(bt *engine.Batch) error {
	switch {
	case bt == nil:
		return fmt.Errorf("model: nil batch")
	case bt.B <= 0 || bt.T <= 0:
		return fmt.Errorf("model: batch of %d sequences × %d tokens", bt.B, bt.T)
	case bt.InputIDs == nil || bt.Targets == nil:
		return fmt.Errorf("model: batch without input ids or targets")
	case bt.InputIDs.DType() != engine.Int32 || bt.Targets.DType() != engine.Int32:
		return fmt.Errorf("model: batch ids and targets must be Int32 (got %v, %v)", bt.InputIDs.DType(), bt.Targets.DType())
	case bt.InputIDs.Len() != bt.B*bt.T || bt.Targets.Len() != bt.B*bt.T:
		return fmt.Errorf("model: batch %d×%d has %d input ids and %d targets", bt.B, bt.T, bt.InputIDs.Len(), bt.Targets.Len())
	case bt.FirstLabels != nil && (bt.FirstLabels.DType() != engine.Int32 || bt.FirstLabels.Len() != bt.B):
		return fmt.Errorf("model: batch of %d sequences has first labels %v (want Int32 with %d elements)", bt.B, bt.FirstLabels, bt.B)
	}
	return m.checkPacked(bt)
}

// checkPacked validates a packed batch's segments and positions.
func (m *Transformer) checkPacked(bt *engine.Batch) error {
	switch {
	case bt.Segments == nil && bt.Positions == nil:
		return nil
	case bt.Segments == nil || bt.Positions == nil:
		return fmt.Errorf("model: a packed batch needs both segments and positions (got %v, %v)", bt.Segments, bt.Positions)
	case bt.Segments.DType() != engine.Int32 || bt.Positions.DType() != engine.Int32 || bt.Segments.Len() != bt.B*bt.T || bt.Positions.Len() != bt.B*bt.T:
		return fmt.Errorf("model: packed batch %d×%d has segments %v and positions %v (want Int32 with %d elements each)", bt.B, bt.T, bt.Segments, bt.Positions, bt.B*bt.T)
	case m.prompt != nil:
		return fmt.Errorf("model: packed batches cannot be used with %d virtual tokens in front of each sequence: every example of a sequence would share them", m.prompt.NumTokens())
	}
	if m.prefix != nil {
		S := m.prefix.NumTokens() + bt.T
		for l, b := range m.blocks {
			if w := b.attn.Window; w > 0 && w < S {
				return fmt.Errorf("model: packed batches cannot be used with a %d-token prefix on layer %d's sliding window of %d: the window would hide the prefix from an example by its place in the packed sequence, not by its own positions", m.prefix.NumTokens(), l, w)
			}
		}
	}
	return nil
}

// checkPositions rejects contexts that run past GPT-2's learned position
// table (RoPE models extrapolate, as transformers lets them).
func (m *Transformer) checkPositions(first, n int) error {
	if m.posEmb != nil && first+n > m.d.maxPos {
		return fmt.Errorf("model: positions %d..%d exceed n_positions %d of this GPT-2 model", first, first+n-1, m.d.maxPos)
	}
	return nil
}
