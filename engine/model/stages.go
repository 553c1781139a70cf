package model

import "github.com/gotune/gotune/engine"

// Gradient stages (engine.StagedBackward; not the sub-layer stages of
// lowestTrainableStage, which say where backward may stop), in the order
// the pass runs them: gradStageHead is the LM head and the final norm,
// layer l is stage L-l (the top layer first), and stage L+1 is the input
// side (token and position embeddings, virtual tokens) and the prefix
// encoder.
const gradStageHead = 0

var _ engine.StagedBackward = (*Transformer)(nil)

// gradStageOfLayer returns layer l's backward stage.
func (m *Transformer) gradStageOfLayer(l int) int { return len(m.blocks) - l }

// gradStageInput returns the last stage: the embeddings and virtual tokens.
func (m *Transformer) gradStageInput() int { return len(m.blocks) + 1 }

// GradSpans returns the number of backward stages and the stages during
// which each trainable parameter's gradient is written: its module's
// stage, the union of them for a parameter that several modules share
// (a tied LM head is written at the head and again at the embeddings),
// and every stage for the key/value prefix (each layer adds to it) and
// for any parameter found in no module of a known stage.
func (m *Transformer) GradSpans() (int, map[*engine.Param]engine.GradSpan) {
	spans := map[*engine.Param]engine.GradSpan{}
	widen := func(mod Module, s int) {
		for _, p := range mod.Params() {
			if !p.Trainable {
				continue
			}
			sp, ok := spans[p]
			if !ok {
				sp = engine.GradSpan{First: s, Last: s}
			}
			spans[p] = engine.GradSpan{First: min(sp.First, s), Last: max(sp.Last, s)}
		}
	}
	widen(m.lmHead, gradStageHead)
	widen(m.normF, gradStageHead)
	for _, s := range m.slots {
		if s.layer >= 0 {
			widen(s.get(), m.gradStageOfLayer(s.layer))
		}
	}
	for l, b := range m.blocks {
		for _, h := range b.hooks {
			if h != nil {
				widen(h, m.gradStageOfLayer(l))
			}
		}
	}
	widen(m.embed, m.gradStageInput())
	if m.posEmb != nil {
		widen(m.posEmb, m.gradStageInput())
	}
	if m.prompt != nil {
		widen(m.prompt, m.gradStageInput())
	}
	if m.prefix != nil {
		widen(m.prefix, gradStageHead)
		widen(m.prefix, m.gradStageInput())
	}
	for _, p := range m.Params() {
		if _, ok := spans[p]; p.Trainable && !ok {
			spans[p] = engine.GradSpan{First: gradStageHead, Last: m.gradStageInput()}
		}
	}
	return m.gradStageInput() + 1, spans
}

// ObserveBackward installs o for the following backward passes (nil
// removes it); see engine.StagedBackward.
func (m *Transformer) ObserveBackward(o engine.BackwardObserver) { m.observer = o }

// stageCursor announces a backward pass's stages to an observer: begin(s)
// ends the open stage, announces the skipped ones as empty and opens s,
// so every stage is reported once, in order, whatever the pass skips.
type stageCursor struct {
	o    engine.BackwardObserver
	next int  // the first stage not announced yet
	open bool // stage next-1 began and has not ended
}

// begin opens stage s (≥ next).
func (c *stageCursor) begin(s int) {
	if c.o == nil {
		return
	}
	c.skipTo(s)
	c.o.BeforeStage(s)
	c.next, c.open = s+1, true
}

// finish ends the pass: the open stage and every later one up to n-1.
func (c *stageCursor) finish(n int) {
	if c.o != nil {
		c.skipTo(n)
	}
}

// skipTo ends the open stage and announces the stages before s as empty.
func (c *stageCursor) skipTo(s int) {
	if c.open {
		c.o.AfterStage(c.next - 1)
		c.open = false
	}
	for ; c.next < s; c.next++ {
		c.o.BeforeStage(c.next)
		c.o.AfterStage(c.next)
	}
}
