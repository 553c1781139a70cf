package engine

// Param is one named parameter tensor of a model.
type Param struct {
	// Name is the Hugging Face state-dict name, e.g.
	// "model.layers.0.self_attn.q_proj.weight"; adapters use PEFT's names.
	Name string
	// W holds the values.
	W *Tensor
	// G holds the accumulated gradient; nil while the parameter is frozen.
	G *Tensor
	// C is the compute copy matrix products read under mixed precision
	// (bfloat16, refreshed from W after each optimizer step; see
	// Precision), or nil when they read W itself.
	C *Tensor
	// Trainable marks parameters the optimizer updates.
	Trainable bool
	// Decay marks parameters that get weight decay: weight matrices and
	// embeddings, not biases or normalisation weights (the Hugging Face
	// Trainer's convention).
	Decay bool
}

// Compute returns the tensor matrix products read: the compute copy C
// when there is one, else W.
func (p *Param) Compute() *Tensor {
	if p.C != nil {
		return p.C
	}
	return p.W
}

// Batch is one micro-batch of B sequences of T tokens, already on the
// model's backend.
type Batch struct {
	B, T int
	// InputIDs is Int32 [B*T].
	InputIDs *Tensor
	// Targets is Int32 [B*T]: the label the logits at each position are
	// scored against, i.e. Hugging Face's labels shifted left by one
	// (Targets[b, t] = labels[b, t+1], and -100 at t = T-1). Negative
	// targets are ignored.
	Targets *Tensor
	// FirstLabels is Int32 [B]: each sequence's first label, labels[b][0]
	// (-100 when ignored), or nil. Plain causal-LM training never scores it
	// (no logits precede the first token), but with virtual tokens
	// prepended (prompt tuning, P-Tuning) PEFT pads the labels with -100 in
	// front, so the last virtual token's logits are scored against it. A
	// model scores FirstLabels only when it says so through
	// FirstLabelScorer, and ignores them otherwise.
	FirstLabels *Tensor
	// Segments is Int32 [B*T] when the sequences hold several packed
	// examples each, else nil: the example each token belongs to within
	// its sequence (consecutive tokens of one example share an id). The
	// model keeps attention inside each example
	// (AttentionOptions.Segments) and positions each token by Positions,
	// so every example computes what it computes alone.
	Segments *Tensor
	// Positions is Int32 [B*T] with Segments (nil without): each token's
	// position within its example, counted from 0 (so below T).
	Positions *Tensor
	// Counted is the number of targets >= 0 (computed on the host),
	// including the FirstLabels >= 0 when the model scores them.
	Counted int
}

// FirstLabelScorer is implemented by models that can score a batch's
// FirstLabels. Trainers ask it before counting a step's tokens, so that
// the mean loss divides by exactly the number of targets the model
// scores.
type FirstLabelScorer interface {
	// ScoresFirstLabels reports whether ForwardBackward currently scores
	// Batch.FirstLabels (when they are given): true while virtual tokens
	// are prepended to every sequence.
	ScoresFirstLabels() bool
}

// CausalLM is a trainable causal language model on some Backend.
type CausalLM interface {
	// Backend returns the backend the model's tensors live on.
	Backend() Backend
	// Params returns every parameter, trainable or not, in a stable order.
	Params() []*Param
	// ForwardBackward runs the model on a batch and returns the sum of the
	// per-token cross-entropy losses over counted targets. When backward is
	// true it then accumulates (+=) gradScale·∂(loss sum)/∂p into the G of
	// every trainable parameter; the trainer passes gradScale = 1/(tokens
	// counted in the whole optimizer step) so micro-batches add up to the
	// mean loss's gradient.
	ForwardBackward(b *Batch, backward bool, gradScale float32) (lossSum float64, err error)
}

// GradSpan is the range of backward stages [First, Last] during which a
// backward pass writes a parameter's gradient (see StagedBackward).
type GradSpan struct{ First, Last int }

// BackwardObserver follows a backward pass stage by stage.
type BackwardObserver interface {
	// BeforeStage is called before the pass writes the gradient of any
	// parameter whose span starts at stage s: the observer may point
	// those parameters' G at (zeroed) buffers of its choice here.
	BeforeStage(s int)
	// AfterStage is called once the gradients of the parameters whose
	// span ends at stage s are final for this pass (their last write is
	// queued on the backend).
	AfterStage(s int)
}

// StagedBackward is a CausalLM whose backward pass runs in numbered
// stages (0 first, e.g. the LM head, then one stage per layer from the
// top), so that data-parallel training can reduce the gradients a stage
// finished while the later stages compute (bucketed all-reduce
// overlapped with backward, as PyTorch DDP does) and hand out gradient
// buffers only just before they are written (ZeRO-2).
type StagedBackward interface {
	CausalLM
	// GradSpans returns the number of stages and, for every trainable
	// parameter, the stages during which the backward pass writes its
	// gradient.
	GradSpans() (stages int, spans map[*Param]GradSpan)
	// ObserveBackward installs o for the following backward passes (nil
	// removes it). Every backward pass then calls BeforeStage(s) and
	// AfterStage(s) once for every stage s, in increasing order, also for
	// stages with nothing to compute.
	ObserveBackward(o BackwardObserver)
}
