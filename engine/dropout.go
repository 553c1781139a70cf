package engine

// Base-model dropout (GPT-2's embd_pdrop, attn_pdrop and resid_pdrop,
// the attention_dropout of LLaMA-like configs) draws its masks from
// DropoutKeep, a pure function of a seed and an element's index. Each
// mask's seed is DropoutMaskSeed of the run's seed, the training pass and
// where in the model the mask applies, so a run is reproducible from its
// seed, a resumed run draws exactly what the uninterrupted one would
// (no generator state to checkpoint), gradient checkpointing's
// recomputation draws the same masks again, and every backend — and the
// PyTorch goldens — drop the same elements.

// DropoutSite names where in a model a dropout mask applies.
type DropoutSite uint64

// The dropout sites of a decoder layer (the embedding's counts as layer 0).
const (
	// DropoutEmbedding is the first layer's input (GPT-2's embd_pdrop on
	// token plus position embeddings).
	DropoutEmbedding DropoutSite = 1 + iota
	// DropoutAttention is the attention probabilities (attn_pdrop,
	// attention_dropout): AttentionOptions.DropoutSeed.
	DropoutAttention
	// DropoutAttnOutput is the attention sub-layer's output before its
	// residual add (GPT-2's resid_pdrop after attn.c_proj).
	DropoutAttnOutput
	// DropoutMLPOutput is the MLP's output before its residual add
	// (GPT-2's resid_pdrop after mlp.c_proj).
	DropoutMLPOutput
)

// TrainingPass identifies one training forward/backward pass.
type TrainingPass struct {
	// Step is the optimizer step, from 1.
	Step int
	// Micro is the micro-batch within the step, from 0.
	Micro int
	// Rank is the data-parallel rank (0 in a single process): each rank's
	// rows draw their own masks.
	Rank int
}

// TrainingPassSetter is implemented by models whose training passes draw
// dropout masks. A trainer calls SetTrainingPass before each training
// ForwardBackward; a model that was never told uses the zero pass.
type TrainingPassSetter interface {
	SetTrainingPass(p TrainingPass)
}

// DropoutMaskSeed returns the seed of the dropout mask at site of layer
// in pass p of a run seeded with seed: a SplitMix64 chain over seed, step,
// micro-batch, rank, layer and site, so distinct masks get unrelated
// seeds.
func DropoutMaskSeed(seed uint64, p TrainingPass, layer int, site DropoutSite) uint64 {
	h := seed
	for _, v := range [...]uint64{uint64(p.Step), uint64(p.Micro), uint64(p.Rank), uint64(layer), uint64(site)} {
		h = SplitMix64(h ^ v)
	}
	return h
}
