package model

import (
	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/arch"
)

// Model is a causal LM of this package: engine.CausalLM plus everything
// fine-tuning methods, generation and checkpointing need.
type Model interface {
	engine.CausalLM

	// Config returns the model's configuration.
	Config() *Config
	// Family returns the descriptor of the model's architecture.
	Family() *arch.Family
	// NumLayers returns the number of transformer layers.
	NumLayers() int

	// Modules lists every module with its Hugging Face path, in forward
	// order.
	Modules() []NamedModule
	// Module returns the module at a Hugging Face path.
	Module(name string) (Module, bool)
	// Linear returns the Linear at a Hugging Face path.
	Linear(name string) (Linear, bool)
	// ReplaceLinear puts l in place of the Linear at name.
	ReplaceLinear(name string, l Linear) error
	// SetHook installs a hook on a sub-layer output of layer (nil removes).
	SetHook(layer int, site Site, h SublayerHook) error
	// Hook returns the hook at a site, or nil.
	Hook(layer int, site Site) SublayerHook
	// SetPrompt installs virtual-token embeddings (nil removes them).
	SetPrompt(p Prompt) error
	// Prompt returns the installed virtual-token source, or nil.
	Prompt() Prompt
	// SetPrefix installs key/value prefixes (nil removes them).
	SetPrefix(p Prefix) error
	// Prefix returns the installed prefix source, or nil.
	Prefix() Prefix
	// TokenEmbeddingScale is the multiplier the embedding module applies
	// to token embeddings (Gemma 3's sqrt(hidden) in the model dtype; 1
	// for the other families): what PEFT's word_embeddings(ids) returns
	// is the table's rows times it.
	TokenEmbeddingScale() float32

	// BaseParams returns the checkpoint's tensors, in save order.
	BaseParams() []*engine.Param
	// Param returns a base parameter by its Hugging Face name.
	Param(name string) (*engine.Param, bool)

	// NewKVCache allocates a key/value cache for generation.
	NewKVCache(batch, maxLen int) (*KVCache, error)
	// Logits runs a forward pass over new tokens (see Transformer.Logits).
	Logits(c *KVCache, ids []int32, B, T int, all bool) (*engine.Tensor, error)
	// ReleaseActivations frees cached activation buffers.
	ReleaseActivations()
	// SetGradCheckpoint turns gradient checkpointing on or off.
	SetGradCheckpoint(on bool)
	// GradCheckpoint reports whether gradient checkpointing is on.
	GradCheckpoint() bool
	// SetDropoutSeed sets the run's seed the base model's dropout masks
	// derive from (see SetTrainingPass).
	SetDropoutSeed(seed uint64)
	// SetTrainingPass tells the model which training pass the next
	// ForwardBackward is (engine.TrainingPassSetter).
	SetTrainingPass(p engine.TrainingPass)

	// Save writes config.json and the weights (model.safetensors, or
	// shards with an index) to dir in the config's torch_dtype.
	Save(dir string) error
	// SaveWithOptions is Save with a chosen stored dtype and shard size.
	SaveWithOptions(dir string, opts SaveOptions) error
	// HFWeights downloads the base weights with Hugging Face names, in
	// the Hugging Face layout (see Transformer.HFWeights).
	HFWeights() ([]NamedWeight, error)
}

var (
	_ Model = (*Llama)(nil)
	_ Model = (*GPT2)(nil)
)
