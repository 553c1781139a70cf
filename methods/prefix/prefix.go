// Package prefix implements prefix tuning (Li & Liang, 2021) and P-Tuning
// v2 (Liu et al., 2022) with Hugging Face PEFT's semantics and file
// format: P trainable key/value vectors are placed in front of the keys
// and values of the attention of every layer (the "global" form) or of
// chosen layers (the "local" form, gotune's extension), and every real
// token attends to them (see model.Prefix).
//
// # Geometry (PEFT's PREFIX_TUNING)
//
// token_dim is kv_heads·head_dim (the model's key/value width, PEFT's
// rule for grouped-query models; the hidden size for GPT-2) and
// num_attention_heads the KV heads. The prefix of virtual token p is one
// vector of L'·2·token_dim values, L' the number of prefixed layers,
// which PEFT's get_prompt views as [L'·2, kv_heads, head_dim]: block 2j
// holds the keys and block 2j+1 the values of the j-th prefixed layer. As
// transformers treats PEFT's past_key_values, prefix keys are not rotated
// by RoPE and the real tokens take positions P..P+T-1.
//
// Without projection the one trainable tensor is that table,
// prompt_embeddings [P, L'·2·token_dim] (N(0, 1) initially, as
// nn.Embedding). With --prefix-projection (ChatGLM-6B's P-Tuning v2
// encoder, PEFT's PrefixEncoder) the table is computed by
// embedding [P, token_dim] → Linear(token_dim, encoder_hidden_size) →
// tanh → Linear(encoder_hidden_size, L'·2·token_dim), whose tensors are
// prompt_encoder.embedding.weight and prompt_encoder.transform.{0,2}.
// {weight,bias} (torch's default initialisations).
//
// # Files
//
// Save writes what PEFT's save_pretrained writes: adapter_config.json
// (PrefixTuningConfig's fields, keys sorted) and adapter_model.safetensors
// holding prompt_embeddings [P, L'·2·token_dim], the table itself or,
// with projection, the encoder's output (PEFT keeps only that and uses it
// as a fixed table for inference). With projection gotune also writes
// the encoder's tensors to prompt_encoder.safetensors, so that training
// can continue. The local form adds "prefix_layers" (the layer list, in
// table order) to adapter_config.json; PEFT cannot load such a folder
// (the table's width is not num_layers·2·token_dim, which it checks).
package prefix

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
	"github.com/gotune/gotune/methods/prompt"
)

// PeftType is adapter_config.json's peft_type.
const PeftType = "PREFIX_TUNING"

// EncoderFile holds the projection's tensors beside the PEFT files (the
// same file name as P-Tuning's encoder: both are PEFT's prompt_encoder).
const EncoderFile = prompt.EncoderFile

// Config holds prefix tuning's hyper-parameters.
type Config struct {
	// NumVirtualTokens is the prefix length P.
	NumVirtualTokens int
	// Layers lists the layers that get a prefix, in table order; nil
	// means every layer (the global form).
	Layers []int
	// Projection computes the prefixes with PEFT's PrefixEncoder.
	Projection bool
	// EncoderHidden is the projection's hidden size; 0 means token_dim
	// (PEFT's default).
	EncoderHidden int
	// Seed seeds the initialisation.
	Seed uint64
	// BaseModel is recorded as base_model_name_or_path.
	BaseModel string
}

// Validate reports the first invalid field as a *fielderr.Error (layer
// indices are checked against the model by Apply).
func (c *Config) Validate() error {
	if c.NumVirtualTokens <= 0 {
		return fielderr.Errorf("NumVirtualTokens", "must be positive, got %d", c.NumVirtualTokens)
	}
	if c.Layers != nil && len(c.Layers) == 0 {
		return fielderr.Errorf("Layers", "is empty (leave it out for every layer)")
	}
	seen := map[int]bool{}
	for _, l := range c.Layers {
		if seen[l] {
			return fielderr.Errorf("Layers", "lists layer %d twice", l)
		}
		seen[l] = true
	}
	if c.EncoderHidden < 0 {
		return fielderr.Errorf("EncoderHidden", "must not be negative, got %d", c.EncoderHidden)
	}
	return nil
}

// geometry is a model's prefix layout.
type geometry struct {
	tokenDim, heads, layers int
}

func geometryOf(m model.Model) geometry {
	c := m.Config()
	return geometry{tokenDim: c.KVHeads * c.HeadDim, heads: c.KVHeads, layers: m.NumLayers()}
}

// Adapter is a prefix installed in a model; it is the model.Prefix.
type Adapter struct {
	m       model.Model
	be      engine.Backend
	cfg     Config
	geo     geometry
	layers  []int       // prefixed layers in table order
	where   map[int]int // layer → block index j
	width   int         // len(layers)·2·token_dim
	removed bool

	// Without projection (or loaded for inference): the table.
	table *engine.Param
	// With projection, in training.
	emb    *engine.Param // [P, token_dim]
	t0, t2 *model.Dense
	z, a   *engine.Tensor // [P, enc] pre-activation and tanh output
	out    *engine.Tensor // [P, width]
	dout   *engine.Tensor // its gradient, accumulated by the model
	dz, da *engine.Tensor
}

// Apply installs a freshly initialised prefix (see the package
// documentation) and freezes every other parameter of m.
func Apply(m model.Model, cfg Config) (*Adapter, error) {
	a, err := newAdapter(m, cfg)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x70726566)) // "pref"
	if a.table != nil {
		a.be.Upload(a.table.W, params.Normal(rng, a.table.W.Len(), 1))
	} else {
		a.be.Upload(a.emb.W, params.Normal(rng, a.emb.W.Len(), 1))
		for _, d := range []*model.Dense{a.t0, a.t2} {
			bound := 1 / math.Sqrt(float64(d.In()))
			a.be.Upload(d.Weight.W, params.Uniform(rng, d.Weight.W.Len(), bound))
			a.be.Upload(d.Bias.W, params.Uniform(rng, d.Bias.W.Len(), bound))
		}
	}
	if err := a.install(); err != nil {
		return nil, err
	}
	return a, nil
}

// newAdapter validates cfg against m and allocates zero tensors: the
// table, or (projection) the encoder.
func newAdapter(m model.Model, cfg Config) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("prefix: %w", err)
	}
	if err := peft.CheckVirtualTokens(cfg.NumVirtualTokens, m.Config().MaxPos); err != nil {
		return nil, fmt.Errorf("prefix: %w", err)
	}
	geo := geometryOf(m)
	layers := cfg.Layers
	if layers == nil {
		for i := 0; i < geo.layers; i++ {
			layers = append(layers, i)
		}
	}
	where := map[int]int{}
	for j, l := range layers {
		if l < 0 || l >= geo.layers {
			return nil, fmt.Errorf("prefix: %w", fielderr.Errorf("Layers", "names layer %d, which does not exist: the model has %d layers (0..%d)", l, geo.layers, geo.layers-1))
		}
		where[l] = j
	}
	be, P := m.Backend(), cfg.NumVirtualTokens
	a := &Adapter{m: m, be: be, cfg: cfg, geo: geo, layers: layers, where: where, width: len(layers) * 2 * geo.tokenDim}
	if !cfg.Projection {
		a.table = &engine.Param{Name: prompt.EmbeddingsName, W: be.Alloc(engine.Float32, P, a.width), Decay: true}
		return a, nil
	}
	enc := a.encoderHidden()
	a.emb = &engine.Param{Name: "prompt_encoder.embedding.weight", W: be.Alloc(engine.Float32, P, geo.tokenDim), Decay: true}
	dense := func(name string, in, out int) *model.Dense {
		return &model.Dense{
			Weight: &engine.Param{Name: name + ".weight", W: be.Alloc(engine.Float32, out, in), Decay: true},
			Bias:   &engine.Param{Name: name + ".bias", W: be.Alloc(engine.Float32, out)},
		}
	}
	a.t0 = dense("prompt_encoder.transform.0", geo.tokenDim, enc)
	a.t2 = dense("prompt_encoder.transform.2", enc, a.width)
	a.z, a.a = be.Alloc(engine.Float32, P, enc), be.Alloc(engine.Float32, P, enc)
	a.out, a.dout = be.Alloc(engine.Float32, P, a.width), be.Alloc(engine.Float32, P, a.width)
	return a, nil
}

// encoderHidden returns the projection's hidden size.
func (a *Adapter) encoderHidden() int {
	if a.cfg.EncoderHidden > 0 {
		return a.cfg.EncoderHidden
	}
	return a.geo.tokenDim
}

// install freezes the model, installs the prefix and makes it trainable.
func (a *Adapter) install() error {
	if a.m.Prefix() != nil {
		a.release()
		return fmt.Errorf("prefix: the model already has a key/value prefix")
	}
	if a.m.Prompt() != nil {
		a.release()
		return fmt.Errorf("prefix: the model has virtual tokens; one prompt-learning method at a time")
	}
	params.SetTrainable(a.m.Params(), false)
	if err := a.m.SetPrefix(a); err != nil {
		a.release()
		return fmt.Errorf("prefix: %w", err)
	}
	a.SetTrainable(true)
	return nil
}

// Params returns the trainable tensors: the table, or the projection's
// embedding and linear layers.
func (a *Adapter) Params() []*engine.Param {
	if a.table != nil {
		return []*engine.Param{a.table}
	}
	return append(append([]*engine.Param{a.emb}, a.t0.Params()...), a.t2.Params()...)
}

// SetTrainable marks the adapter's tensors trainable or frozen.
func (a *Adapter) SetTrainable(on bool) { params.SetTrainable(a.Params(), on) }

// Config returns the adapter's hyper-parameters.
func (a *Adapter) Config() Config { return a.cfg }

// NumTokens returns the prefix length P.
func (a *Adapter) NumTokens() int { return a.cfg.NumVirtualTokens }

// Forward computes the prefix table for this pass (with projection) and
// clears its gradient buffer.
func (a *Adapter) Forward(train bool) {
	if a.table != nil {
		return
	}
	be := a.be
	// Products read compute copies and write activations of their dtype
	// (bfloat16 under mixed precision); the table a.out stays float32.
	dt := a.t0.Weight.Compute().DType()
	a.z, a.a = model.ActBuffer(be, a.z, dt, a.z.Shape()...), model.ActBuffer(be, a.a, dt, a.a.Shape()...)
	a.t0.Forward(a.z, a.emb.Compute(), train)
	be.Activation(a.a, a.z, engine.ActTanh)
	a.t2.Forward(a.out, a.a, train)
	be.Fill(a.dout, 0)
}

// values returns the tensor holding the [P, width] table.
func (a *Adapter) values() *engine.Tensor {
	if a.table != nil {
		return a.table.W
	}
	return a.out
}

// rows returns layer l's key and value blocks of a [P, width] tensor.
func (a *Adapter) rows(t *engine.Tensor, l int) (k, v model.Rows, ok bool) {
	j, ok := a.where[l]
	if !ok {
		return model.Rows{}, model.Rows{}, false
	}
	d := a.geo.tokenDim
	return model.Rows{T: t, Off: 2 * j * d, Stride: a.width}, model.Rows{T: t, Off: (2*j + 1) * d, Stride: a.width}, true
}

// KV returns layer l's prefix keys and values, views into the table.
func (a *Adapter) KV(l int) (k, v model.Rows, ok bool) { return a.rows(a.values(), l) }

// Grads returns where the model accumulates layer l's prefix gradients:
// the table's gradient, or the projection output's gradient buffer.
func (a *Adapter) Grads(l int) (dk, dv model.Rows, ok bool) {
	if a.table != nil {
		if g := model.Grad(a.table); g != nil {
			return a.rows(g, l)
		}
		return model.Rows{}, model.Rows{}, false
	}
	if !model.Trainable(a) {
		return model.Rows{}, model.Rows{}, false
	}
	return a.rows(a.dout, l)
}

// Backward backpropagates the accumulated prefix gradient through the
// projection (nothing to do for a plain table, whose gradient the model
// accumulated directly).
func (a *Adapter) Backward() {
	if a.table != nil {
		return
	}
	be := a.be
	a.da = model.ActBuffer(be, a.da, a.a.DType(), a.a.Shape()...)
	a.dz = model.ActBuffer(be, a.dz, a.z.DType(), a.z.Shape()...)
	be.Fill(a.da, 0)
	a.t2.Backward(a.da, a.dout, a.a)
	be.Fill(a.dz, 0)
	be.ActivationBackward(a.dz, a.da, a.z, engine.ActTanh)
	a.t0.Backward(model.Grad(a.emb), a.dz, a.emb.Compute())
}

// Table returns the [P, width] prefix table the model reads (computed by
// the projection, if any). It is the adapter's own tensor: read it
// before the model's next pass.
func (a *Adapter) Table() *engine.Tensor {
	a.Forward(false)
	return a.values()
}

// PeftConfig is PEFT's PrefixTuningConfig as saved, plus gotune's
// prefix_layers for the local form.
type PeftConfig struct {
	prompt.LearningConfig
	// EncoderHiddenSize is the projection's hidden size (token_dim by
	// default, saved even without projection, as PEFT does).
	EncoderHiddenSize int `json:"encoder_hidden_size"`
	// PrefixProjection selects the projection encoder.
	PrefixProjection bool `json:"prefix_projection"`
	// PrefixLayers lists the prefixed layers of the local form (absent
	// for the global form).
	PrefixLayers []int `json:"prefix_layers,omitempty"`
}

// PeftConfig returns the adapter_config.json content Save writes.
func (a *Adapter) PeftConfig() *PeftConfig {
	return &PeftConfig{
		LearningConfig:    prompt.NewLearningConfig(PeftType, a.cfg.BaseModel, a.geo.layers, a.geo.heads, a.geo.tokenDim, a.cfg.NumVirtualTokens),
		EncoderHiddenSize: a.encoderHidden(), PrefixProjection: a.cfg.Projection,
		PrefixLayers: a.cfg.Layers,
	}
}

// Save writes the adapter folder (see the package documentation).
func (a *Adapter) Save(dir string) error {
	if a.removed {
		return fmt.Errorf("prefix: cannot save an adapter removed from its model")
	}
	saved := &engine.Param{Name: prompt.EmbeddingsName, W: a.Table()}
	if err := peft.Save(dir, a.PeftConfig(), []*engine.Param{saved}); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	if a.table != nil {
		return nil
	}
	if err := peft.WriteWeightsFile(filepath.Join(dir, EncoderFile), a.Params()); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	return nil
}

// Remove takes the prefix out of the model and frees its buffers; the
// base parameters stay frozen.
func (a *Adapter) Remove() {
	if a.removed {
		return
	}
	a.removed = true
	if a.m.Prefix() == model.Prefix(a) {
		_ = a.m.SetPrefix(nil) // removing cannot fail
	}
	a.SetTrainable(false)
	a.release()
}

// release frees the projection's activation buffers.
func (a *Adapter) release() {
	for _, t := range []*engine.Tensor{a.z, a.a, a.out, a.dout, a.dz, a.da} {
		if t != nil {
			a.be.Free(t)
		}
	}
	a.z, a.a, a.out, a.dout, a.dz, a.da = nil, nil, nil, nil, nil, nil
}

// ReadConfig reads a PREFIX_TUNING adapter_config.json and checks it
// against model m's geometry.
func ReadConfig(dir string, m model.Model) (Config, error) {
	var pc PeftConfig
	if err := peft.ReadConfig(dir, PeftType, &pc); err != nil {
		return Config{}, fmt.Errorf("prefix: %w", err)
	}
	path := filepath.Join(dir, peft.ConfigFile)
	geo := geometryOf(m)
	if err := pc.Check(path, 0); err != nil {
		return Config{}, fmt.Errorf("prefix: %w", err)
	}
	if pc.TokenDim != geo.tokenDim || pc.NumAttentionHeads != geo.heads {
		return Config{}, fmt.Errorf("prefix: %s: token_dim %d with %d attention heads, but this model's keys and values are %d wide in %d heads (PEFT's layout for grouped-query attention: token_dim = kv_heads·head_dim)", path, pc.TokenDim, pc.NumAttentionHeads, geo.tokenDim, geo.heads)
	}
	if pc.PrefixLayers == nil && pc.NumLayers != geo.layers {
		return Config{}, fmt.Errorf("prefix: %s: num_layers is %d, but the model has %d layers", path, pc.NumLayers, geo.layers)
	}
	c := Config{
		NumVirtualTokens: pc.NumVirtualTokens, Layers: pc.PrefixLayers,
		Projection: pc.PrefixProjection, EncoderHidden: pc.EncoderHiddenSize, BaseModel: pc.Base(),
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("prefix: %s: %w", path, err)
	}
	return c, nil
}

// LoadOptions adjust how Load installs an adapter.
type LoadOptions struct {
	// BaseModel, when not empty, replaces the file\'s base_model_name_or_path
	// (the model the adapter is now trained on).
	BaseModel string
	// Frozen loads the adapter for inference: the prefixes are
	// adapter_model.safetensors' prompt_embeddings, frozen (with
	// projection, the saved encoder output, as PEFT's inference mode uses
	// it).
	Frozen bool
}

// Load installs the prefix of a PEFT adapter folder (peft_type
// PREFIX_TUNING) and freezes the base model. To train a projected prefix
// further, the folder must also hold prompt_encoder.safetensors (PEFT's
// files keep only the projection's output); its encoder must reproduce
// the saved prompt_embeddings. On error the model is left as it was.
func Load(m model.Model, dir string, opt LoadOptions) (*Adapter, error) {
	cfg, err := ReadConfig(dir, m)
	if err != nil {
		return nil, err
	}
	if opt.BaseModel != "" {
		cfg.BaseModel = opt.BaseModel
	}
	w, err := peft.ReadWeights(dir)
	if err != nil {
		return nil, fmt.Errorf("prefix: %w", err)
	}
	project := cfg.Projection
	if opt.Frozen {
		cfg.Projection = false // the saved output is the table
	}
	a, err := newAdapter(m, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, peft.ConfigFile), err)
	}
	a.cfg.Projection = project
	saved, err := w.Take(prompt.EmbeddingsName, cfg.NumVirtualTokens, a.width)
	if err != nil {
		a.release()
		return nil, fmt.Errorf("prefix: %w", err)
	}
	if err := w.CheckAllUsed("prompt_embeddings"); err != nil {
		a.release()
		return nil, fmt.Errorf("prefix: %w", err)
	}
	if a.table != nil {
		a.be.Upload(a.table.W, saved)
	} else if err := a.loadEncoder(dir, saved); err != nil {
		a.release()
		return nil, err
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

// loadEncoder reads the projection's tensors and checks that they
// compute the saved table.
func (a *Adapter) loadEncoder(dir string, saved []float32) error {
	path := filepath.Join(dir, EncoderFile)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("prefix: %s holds only the prefix projection's output (PEFT saves no encoder weights), so training cannot continue from it: %s, which gotune writes beside it, is missing", dir, EncoderFile)
	}
	ew, err := peft.ReadWeightsFile(path)
	if err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	if err := ew.LoadAll(a.Params(), "the tensors of the prefix projection"); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	if e := params.RelDiff(a.be.Download(a.Table()), saved); e > 1e-3 {
		return fmt.Errorf("prefix: %s: the projection computes prefixes %.2g (relative) away from %s's prompt_embeddings: the two files belong to different adapters", path, e, peft.WeightsFile)
	}
	return nil
}
