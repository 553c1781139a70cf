// Package prompt implements prompt tuning (Lester et al., 2021) and
// P-Tuning (Liu et al., 2021) with Hugging Face PEFT's semantics and file
// format: P trainable virtual tokens are placed in front of every
// sequence of a frozen model (see model.Prompt).
//
//   - Prompt tuning (PEFT's PROMPT_TUNING) trains the [P, hidden] table of
//     virtual-token embeddings itself, initialised at random (N(0, 1), as
//     nn.Embedding) or from the embeddings of a text's tokens, repeated or
//     cut to P tokens.
//   - P-Tuning (P_TUNING) trains a prompt encoder whose output are the
//     virtual tokens: a [P, hidden] embedding followed by an MLP
//     (Linear(D, H) ReLU Linear(H, H) ReLU Linear(H, D)) or by a
//     bidirectional LSTM(D → H, encoder_num_layers layers) and
//     Linear(2H, 2H) ReLU Linear(2H, D), with torch's default
//     initialisations.
//
// Training semantics are PeftModelForCausalLM's: the labels are padded in
// front with P ignored labels, so the last virtual token's logits are
// scored against the first real token's label (the model does this when
// the batch carries engine.Batch.FirstLabels, which the trainer passes
// while a prompt is installed), and the real tokens take positions
// P..P+T-1.
//
// # Files
//
// Save writes what PEFT's save_pretrained writes: adapter_config.json
// (the PromptTuningConfig or PromptEncoderConfig fields, keys sorted) and
// adapter_model.safetensors holding one tensor, prompt_embeddings [P,
// hidden]: the table for prompt tuning, the encoder's output for P-Tuning
// (PEFT saves no encoder weights and, for inference, uses the saved
// output as a fixed prompt). So that P-Tuning can be trained further,
// gotune also writes the encoder's own tensors to
// prompt_encoder.safetensors beside them, under PEFT's state-dict names
// (prompt_encoder.embedding.weight, prompt_encoder.mlp_head.0.weight,
// prompt_encoder.lstm_head.weight_ih_l0, ...); PEFT ignores that file.
package prompt

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/methods/internal/params"
	"github.com/gotune/gotune/methods/peft"
)

// PEFT types this package reads and writes.
const (
	PeftTypePromptTuning = "PROMPT_TUNING"
	PeftTypePTuning      = "P_TUNING"
)

// EncoderFile holds P-Tuning's encoder tensors beside the PEFT files.
const EncoderFile = "prompt_encoder.safetensors"

// EmbeddingsName is the tensor PEFT saves for every prompt-learning
// method.
const EmbeddingsName = "prompt_embeddings"

// Init is prompt tuning's initialisation of the virtual tokens.
type Init string

const (
	// InitRandom draws N(0, 1) values, as PEFT's RANDOM (nn.Embedding's
	// default).
	InitRandom Init = "random"
	// InitText copies the embeddings of a text's tokens, as PEFT's TEXT.
	InitText Init = "text"
)

// TuningConfig holds prompt tuning's hyper-parameters.
type TuningConfig struct {
	// NumVirtualTokens is P.
	NumVirtualTokens int
	// Init chooses the initialisation ("" means InitRandom).
	Init Init
	// InitText is the text of InitText, recorded as
	// prompt_tuning_init_text.
	InitText string
	// InitTokenIDs are InitText's tokens as the model's tokenizer encodes
	// them (special tokens included, as PEFT's tokenizer(text) call
	// does). They are repeated or cut to NumVirtualTokens.
	InitTokenIDs []int32
	// TokenizerPath is recorded as tokenizer_name_or_path (PEFT needs it
	// for TEXT).
	TokenizerPath string
	// Seed seeds the random initialisation.
	Seed uint64
	// BaseModel is recorded as base_model_name_or_path.
	BaseModel string
}

// Validate reports the first invalid field as a *fielderr.Error.
func (c *TuningConfig) Validate() error {
	if c.NumVirtualTokens <= 0 {
		return fielderr.Errorf("NumVirtualTokens", "must be positive, got %d", c.NumVirtualTokens)
	}
	switch c.Init {
	case "", InitRandom:
	case InitText:
		if len(c.InitTokenIDs) == 0 {
			return fielderr.Errorf("InitTokenIDs", "is empty: initialisation from text needs a non-empty text (it encoded to no tokens)")
		}
	default:
		return fielderr.Errorf("Init", "%q: unknown prompt initialisation (want random or text)", c.Init)
	}
	return nil
}

// PTuningConfig holds P-Tuning's hyper-parameters.
type PTuningConfig struct {
	// NumVirtualTokens is P.
	NumVirtualTokens int
	// Encoder is EncoderMLP or EncoderLSTM.
	Encoder EncoderType
	// EncoderHidden is encoder_hidden_size H; 0 means the model's hidden
	// size (PEFT's default, token_dim).
	EncoderHidden int
	// EncoderLayers is encoder_num_layers, the LSTM's depth; 0 means 2
	// (PEFT's default). The MLP encoder ignores it, as PEFT does.
	EncoderLayers int
	// Seed seeds the initialisation.
	Seed uint64
	// BaseModel is recorded as base_model_name_or_path.
	BaseModel string
}

// Validate reports the first invalid field as a *fielderr.Error.
func (c *PTuningConfig) Validate() error {
	if c.NumVirtualTokens <= 0 {
		return fielderr.Errorf("NumVirtualTokens", "must be positive, got %d", c.NumVirtualTokens)
	}
	if c.Encoder != EncoderMLP && c.Encoder != EncoderLSTM {
		return fielderr.Errorf("Encoder", "%q: unknown P-Tuning encoder (want MLP or LSTM)", c.Encoder)
	}
	if c.EncoderHidden < 0 {
		return fielderr.Errorf("EncoderHidden", "must not be negative, got %d", c.EncoderHidden)
	}
	if c.EncoderLayers < 0 {
		return fielderr.Errorf("EncoderLayers", "must not be negative, got %d", c.EncoderLayers)
	}
	return nil
}

func (c *PTuningConfig) hidden(d int) int {
	if c.EncoderHidden > 0 {
		return c.EncoderHidden
	}
	return d
}

func (c *PTuningConfig) layers() int {
	if c.EncoderLayers > 0 {
		return c.EncoderLayers
	}
	return 2
}

// Adapter is a prompt-tuning or P-Tuning prompt installed in a model.
type Adapter struct {
	m        model.Model
	peftType string
	tuning   TuningConfig
	ptuning  PTuningConfig
	table    *table   // prompt tuning, or a P-Tuning adapter loaded for inference
	enc      *encoder // P-Tuning in training
	removed  bool
}

// ApplyPromptTuning installs freshly initialised virtual tokens (see
// TuningConfig) and freezes every other parameter of m.
func ApplyPromptTuning(m model.Model, cfg TuningConfig) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	if err := peft.CheckVirtualTokens(cfg.NumVirtualTokens, m.Config().MaxPos); err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	if cfg.Init == "" {
		cfg.Init = InitRandom
	}
	be, D, P := m.Backend(), m.Config().Hidden, cfg.NumVirtualTokens
	tb := &table{e: &engine.Param{Name: EmbeddingsName, W: be.Alloc(engine.Float32, P, D), Decay: true}}
	if cfg.Init == InitText {
		ids, err := textTokens(cfg.InitTokenIDs, P, m.Config().VocabSize)
		if err != nil {
			be.Free(tb.e.W)
			return nil, fmt.Errorf("prompt: %w", err)
		}
		idt := be.Alloc(engine.Int32, P)
		be.UploadInt32(idt, ids)
		be.Embedding(tb.e.W, tokenEmbedding(m).W, idt)
		be.Free(idt)
		if s := m.TokenEmbeddingScale(); s != 1 {
			// PEFT reads word_embeddings(ids): Gemma 3's module scales them.
			be.Scale(tb.e.W, s)
		}
	} else {
		rng := rand.New(rand.NewPCG(cfg.Seed, 0x70726f6d)) // "prom"
		be.Upload(tb.e.W, params.Normal(rng, P*D, 1))
	}
	a := &Adapter{m: m, peftType: PeftTypePromptTuning, tuning: cfg, table: tb}
	if err := a.install(); err != nil {
		return nil, err
	}
	return a, nil
}

// textTokens repeats or cuts ids to n tokens as PEFT does for TEXT
// initialisation, checking them against the vocabulary.
func textTokens(ids []int32, n, vocab int) ([]int32, error) {
	for _, id := range ids {
		if id < 0 || int(id) >= vocab {
			return nil, fmt.Errorf("init text token id %d is outside the model's vocabulary [0, %d)", id, vocab)
		}
	}
	out := make([]int32, n)
	for i := range out {
		out[i] = ids[i%len(ids)]
	}
	return out, nil
}

// tokenEmbedding returns the model's input embedding table.
func tokenEmbedding(m model.Model) *engine.Param {
	for _, name := range []string{"model.embed_tokens.weight", "transformer.wte.weight"} {
		if p, ok := m.Param(name); ok {
			return p
		}
	}
	panic("prompt: the model has no token embedding") // every architecture of package model has one
}

// ApplyPTuning installs a freshly initialised P-Tuning prompt encoder
// (torch's default initialisations: the embedding N(0, 1), Linear and
// LSTM weights and biases U(±1/sqrt(fan))) and freezes every other
// parameter of m.
func ApplyPTuning(m model.Model, cfg PTuningConfig) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	if err := peft.CheckVirtualTokens(cfg.NumVirtualTokens, m.Config().MaxPos); err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	be, D := m.Backend(), m.Config().Hidden
	H := cfg.hidden(D)
	enc := newEncoder(be, cfg.Encoder, cfg.NumVirtualTokens, D, H, cfg.layers())
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x70747567)) // "ptug"
	for _, p := range enc.Params() {
		var host []float32
		switch {
		case p == enc.emb:
			host = params.Normal(rng, p.W.Len(), 1)
		case enc.lstm != nil && isLSTM(p.Name):
			host = params.Uniform(rng, p.W.Len(), 1/math.Sqrt(float64(H))) // nn.LSTM: U(±1/sqrt(hidden))
		default:
			host = params.Uniform(rng, p.W.Len(), 1/math.Sqrt(float64(fanIn(enc, p)))) // nn.Linear
		}
		be.Upload(p.W, host)
	}
	a := &Adapter{m: m, peftType: PeftTypePTuning, ptuning: cfg, enc: enc}
	if err := a.install(); err != nil {
		return nil, err
	}
	return a, nil
}

// isLSTM reports whether a tensor belongs to the LSTM.
func isLSTM(name string) bool {
	return len(name) > len(encoderPrefix+"lstm_head.") && name[:len(encoderPrefix+"lstm_head.")] == encoderPrefix+"lstm_head."
}

// fanIn returns the input features of the head layer a tensor belongs to.
func fanIn(e *encoder, p *engine.Param) int {
	for _, d := range e.head {
		if d.Weight == p || d.Bias == p {
			return d.In()
		}
	}
	panic("prompt: " + p.Name + " is not a head tensor")
}

// source returns the model.Prompt the adapter installs.
func (a *Adapter) source() model.Prompt {
	if a.enc != nil {
		return a.enc
	}
	return a.table
}

// install freezes the model, installs the prompt and makes it trainable.
func (a *Adapter) install() error {
	if a.m.Prompt() != nil {
		a.release()
		return fmt.Errorf("prompt: the model already has virtual tokens")
	}
	if a.m.Prefix() != nil {
		// Not a limitation of the model, but PEFT has no such combination
		// and its files could not describe it.
		a.release()
		return fmt.Errorf("prompt: the model has a key/value prefix; one prompt-learning method at a time")
	}
	params.SetTrainable(a.m.Params(), false)
	if err := a.m.SetPrompt(a.source()); err != nil {
		a.release()
		return fmt.Errorf("prompt: %w", err)
	}
	a.SetTrainable(true)
	return nil
}

// PeftType returns "PROMPT_TUNING" or "P_TUNING".
func (a *Adapter) PeftType() string { return a.peftType }

// NumTokens returns the number of virtual tokens.
func (a *Adapter) NumTokens() int { return a.source().NumTokens() }

// Params returns the adapter's trainable tensors: the table, or the
// encoder's tensors.
func (a *Adapter) Params() []*engine.Param { return a.source().Params() }

// SetTrainable marks the adapter's tensors trainable or frozen.
func (a *Adapter) SetTrainable(on bool) { params.SetTrainable(a.Params(), on) }

// Embeddings computes the virtual tokens [P, hidden] (the encoder's
// output for P-Tuning). The tensor is the adapter's own: read it before
// the model's next pass.
func (a *Adapter) Embeddings() *engine.Tensor { return a.source().Forward(false) }

// Save writes the adapter folder (see the package documentation).
func (a *Adapter) Save(dir string) error {
	if a.removed {
		return fmt.Errorf("prompt: cannot save an adapter removed from its model")
	}
	saved := &engine.Param{Name: EmbeddingsName, W: a.Embeddings()}
	if err := peft.Save(dir, a.PeftConfig(), []*engine.Param{saved}); err != nil {
		return fmt.Errorf("prompt: %w", err)
	}
	if a.enc == nil {
		return nil
	}
	if err := peft.WriteWeightsFile(filepath.Join(dir, EncoderFile), a.enc.Params()); err != nil {
		return fmt.Errorf("prompt: %w", err)
	}
	return nil
}

// Remove takes the prompt out of the model and frees its buffers; the
// base parameters stay frozen.
func (a *Adapter) Remove() {
	if a.removed {
		return
	}
	a.removed = true
	if a.m.Prompt() == a.source() {
		_ = a.m.SetPrompt(nil) // removing cannot fail
	}
	a.SetTrainable(false)
	a.release()
}

// release frees the encoder's activation buffers.
func (a *Adapter) release() {
	if a.enc != nil {
		a.enc.release()
	}
}

// LoadOptions adjust how Load installs an adapter.
type LoadOptions struct {
	// BaseModel, when not empty, replaces the file\'s base_model_name_or_path
	// (the model the adapter is now trained on).
	BaseModel string
	// Frozen loads the adapter for inference: the virtual tokens are
	// adapter_model.safetensors' prompt_embeddings, frozen (for P-Tuning,
	// the saved encoder output, as PEFT's inference mode uses it).
	Frozen bool
}

// Load installs the prompt of a PEFT adapter folder (peft_type
// PROMPT_TUNING or P_TUNING) and freezes the base model. To train a
// P-Tuning adapter further, the folder must also hold
// prompt_encoder.safetensors (PEFT's files keep only the encoder's
// output); its encoder must reproduce the saved prompt_embeddings. On
// error the model is left as it was.
func Load(m model.Model, dir string, opt LoadOptions) (*Adapter, error) {
	h, err := peft.ReadHeader(dir)
	if err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	w, err := peft.ReadWeights(dir)
	if err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	a := &Adapter{m: m, peftType: h.PeftType}
	var P int
	switch h.PeftType {
	case PeftTypePromptTuning:
		if a.tuning, err = ReadTuningConfig(dir, m); err != nil {
			return nil, err
		}
		P = a.tuning.NumVirtualTokens
		if opt.BaseModel != "" {
			a.tuning.BaseModel = opt.BaseModel
		}
	case PeftTypePTuning:
		if a.ptuning, err = ReadPTuningConfig(dir, m); err != nil {
			return nil, err
		}
		P = a.ptuning.NumVirtualTokens
		if opt.BaseModel != "" {
			a.ptuning.BaseModel = opt.BaseModel
		}
	default:
		return nil, fmt.Errorf("prompt: %s: peft_type %q is not prompt tuning or P-Tuning", filepath.Join(dir, peft.ConfigFile), h.PeftType)
	}
	be, D := m.Backend(), m.Config().Hidden
	saved, err := w.Take(EmbeddingsName, P, D)
	if err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	if err := w.CheckAllUsed("prompt_embeddings"); err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	if h.PeftType == PeftTypePTuning && !opt.Frozen {
		a.enc, err = loadEncoder(m, dir, a.ptuning, saved)
		if err != nil {
			return nil, err
		}
	} else {
		a.table = &table{e: &engine.Param{Name: EmbeddingsName, W: be.Alloc(engine.Float32, P, D), Decay: true}}
		be.Upload(a.table.e.W, saved)
	}
	before := params.Snapshot(m)
	if err := a.install(); err != nil {
		before.Restore()
		return nil, err
	}
	if opt.Frozen {
		a.SetTrainable(false)
	}
	return a, nil
}

// loadEncoder builds a P-Tuning encoder from dir/prompt_encoder.safetensors
// and checks that it computes the saved prompt_embeddings.
func loadEncoder(m model.Model, dir string, cfg PTuningConfig, saved []float32) (*encoder, error) {
	path := filepath.Join(dir, EncoderFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("prompt: %s holds only the P-Tuning encoder's output (PEFT saves no encoder weights), so training cannot continue from it: %s, which gotune writes beside it, is missing", dir, EncoderFile)
	}
	ew, err := peft.ReadWeightsFile(path)
	if err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	be, D := m.Backend(), m.Config().Hidden
	enc := newEncoder(be, cfg.Encoder, cfg.NumVirtualTokens, D, cfg.hidden(D), cfg.layers())
	if err := ew.LoadAll(enc.Params(), fmt.Sprintf("the tensors of a %s prompt encoder", cfg.Encoder)); err != nil {
		enc.release()
		return nil, fmt.Errorf("prompt: %w", err)
	}
	out := be.Download(enc.Forward(false))
	if e := params.RelDiff(out, saved); e > 1e-3 {
		enc.release()
		return nil, fmt.Errorf("prompt: %s: the encoder computes virtual tokens %.2g (relative) away from %s's prompt_embeddings: the two files belong to different adapters", path, e, peft.WeightsFile)
	}
	return enc, nil
}
