package prompt

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/methods/peft"
)

// LearningConfig holds the fields every PEFT prompt-learning
// configuration (PromptLearningConfig) saves. Fields gotune does not use
// are kept as read (any JSON value) and written as null.
type LearningConfig struct {
	// AutoMapping is PEFT's auto_mapping (custom model classes; null).
	AutoMapping any `json:"auto_mapping"`
	// BaseModelNameOrPath is the model the adapter was trained on.
	BaseModelNameOrPath *string `json:"base_model_name_or_path"`
	// InferenceMode is true in saved files.
	InferenceMode bool `json:"inference_mode"`
	// ModulesToSave lists extra trained modules (null: none).
	ModulesToSave any `json:"modules_to_save"`
	// NumAttentionHeads is the model's heads (KV heads for prefix tuning
	// of grouped-query models).
	NumAttentionHeads int `json:"num_attention_heads"`
	// NumLayers is the model's number of transformer layers.
	NumLayers int `json:"num_layers"`
	// NumTransformerSubmodules is 1 for decoder-only models.
	NumTransformerSubmodules int `json:"num_transformer_submodules"`
	// NumVirtualTokens is P.
	NumVirtualTokens int `json:"num_virtual_tokens"`
	// PeftType names the method.
	PeftType string `json:"peft_type"`
	// Revision is the base model's revision (null).
	Revision *string `json:"revision"`
	// TaskType is "CAUSAL_LM".
	TaskType *string `json:"task_type"`
	// TokenDim is the width of a virtual token (the hidden size; for
	// prefix tuning the key/value width kv_heads·head_dim).
	TokenDim int `json:"token_dim"`
}

// NewLearningConfig returns the common fields as PEFT fills them for a
// causal LM (one transformer sub-module, inference_mode true as saved).
func NewLearningConfig(peftType, baseModel string, layers, heads, tokenDim, virtualTokens int) LearningConfig {
	task := peft.TaskCausalLM
	c := LearningConfig{
		InferenceMode: true, NumAttentionHeads: heads, NumLayers: layers,
		NumTransformerSubmodules: 1, NumVirtualTokens: virtualTokens,
		PeftType: peftType, TaskType: &task, TokenDim: tokenDim,
	}
	if baseModel != "" {
		c.BaseModelNameOrPath = &baseModel
	}
	return c
}

// Check validates the common fields against what the model allows: a
// positive number of virtual tokens, one transformer sub-module (decoder
// only) and, when wantDim > 0, token_dim equal to it.
func (c *LearningConfig) Check(path string, wantDim int) error {
	switch {
	case c.NumVirtualTokens <= 0:
		return fmt.Errorf("%s: num_virtual_tokens must be positive, got %d", path, c.NumVirtualTokens)
	case c.NumTransformerSubmodules != 1 && c.NumTransformerSubmodules != 0:
		return fmt.Errorf("%s: num_transformer_submodules is %d; a decoder-only model has 1", path, c.NumTransformerSubmodules)
	case wantDim > 0 && c.TokenDim != wantDim:
		return fmt.Errorf("%s: token_dim is %d, but this model needs %d", path, c.TokenDim, wantDim)
	}
	return nil
}

// Base returns base_model_name_or_path ("" when null).
func (c *LearningConfig) Base() string {
	if c.BaseModelNameOrPath == nil {
		return ""
	}
	return *c.BaseModelNameOrPath
}

// TuningPeftConfig is PEFT's PromptTuningConfig as saved.
type TuningPeftConfig struct {
	LearningConfig
	// PromptTuningInit is "RANDOM" or "TEXT".
	PromptTuningInit string `json:"prompt_tuning_init"`
	// PromptTuningInitText is the text of TEXT initialisation.
	PromptTuningInitText *string `json:"prompt_tuning_init_text"`
	// TokenizerKwargs are tokenizer options (null).
	TokenizerKwargs any `json:"tokenizer_kwargs"`
	// TokenizerNameOrPath is the tokenizer of TEXT initialisation.
	TokenizerNameOrPath *string `json:"tokenizer_name_or_path"`
}

// PTuningPeftConfig is PEFT's PromptEncoderConfig as saved.
type PTuningPeftConfig struct {
	LearningConfig
	// EncoderDropout is the LSTM's inter-layer dropout (only 0 is
	// supported).
	EncoderDropout peft.Float `json:"encoder_dropout"`
	// EncoderHiddenSize is H.
	EncoderHiddenSize int `json:"encoder_hidden_size"`
	// EncoderNumLayers is the LSTM's depth.
	EncoderNumLayers int `json:"encoder_num_layers"`
	// EncoderReparameterizationType is "MLP" or "LSTM".
	EncoderReparameterizationType string `json:"encoder_reparameterization_type"`
}

// learning returns the common fields for this adapter's model.
func (a *Adapter) learning(base string) LearningConfig {
	c := a.m.Config()
	return NewLearningConfig(a.peftType, base, c.Layers, c.Heads, c.Hidden, a.NumTokens())
}

// PeftConfig returns the adapter_config.json content Save writes: a
// *TuningPeftConfig or a *PTuningPeftConfig.
func (a *Adapter) PeftConfig() any {
	if a.peftType == PeftTypePTuning {
		c := a.ptuning
		return &PTuningPeftConfig{
			LearningConfig:    a.learning(c.BaseModel),
			EncoderHiddenSize: c.hidden(a.m.Config().Hidden), EncoderNumLayers: c.layers(),
			EncoderReparameterizationType: string(c.Encoder),
		}
	}
	c := a.tuning
	pc := &TuningPeftConfig{LearningConfig: a.learning(c.BaseModel), PromptTuningInit: "RANDOM"}
	if c.Init == InitText {
		pc.PromptTuningInit = "TEXT"
		text := c.InitText
		pc.PromptTuningInitText = &text
		if c.TokenizerPath != "" {
			tok := c.TokenizerPath
			pc.TokenizerNameOrPath = &tok
		}
	}
	return pc
}

// ReadTuningConfig reads a PROMPT_TUNING adapter_config.json for model m.
func ReadTuningConfig(dir string, m model.Model) (TuningConfig, error) {
	var pc TuningPeftConfig
	if err := peft.ReadConfig(dir, PeftTypePromptTuning, &pc); err != nil {
		return TuningConfig{}, fmt.Errorf("prompt: %w", err)
	}
	path := filepath.Join(dir, peft.ConfigFile)
	if err := pc.Check(path, m.Config().Hidden); err != nil {
		return TuningConfig{}, fmt.Errorf("prompt: %w", err)
	}
	c := TuningConfig{NumVirtualTokens: pc.NumVirtualTokens, Init: InitRandom, BaseModel: pc.Base()}
	if strings.EqualFold(pc.PromptTuningInit, "TEXT") && pc.PromptTuningInitText != nil {
		// Only recorded: the loaded weights replace any initialisation.
		c.Init, c.InitText = InitText, *pc.PromptTuningInitText
		if pc.TokenizerNameOrPath != nil {
			c.TokenizerPath = *pc.TokenizerNameOrPath
		}
	}
	return c, nil
}

// ReadPTuningConfig reads a P_TUNING adapter_config.json for model m.
func ReadPTuningConfig(dir string, m model.Model) (PTuningConfig, error) {
	var pc PTuningPeftConfig
	if err := peft.ReadConfig(dir, PeftTypePTuning, &pc); err != nil {
		return PTuningConfig{}, fmt.Errorf("prompt: %w", err)
	}
	path := filepath.Join(dir, peft.ConfigFile)
	if err := pc.Check(path, m.Config().Hidden); err != nil {
		return PTuningConfig{}, fmt.Errorf("prompt: %w", err)
	}
	typ := pc.EncoderReparameterizationType
	if typ == "" {
		typ = string(EncoderMLP) // PEFT's default
	}
	enc, err := ParseEncoderType(typ)
	if err != nil {
		return PTuningConfig{}, fmt.Errorf("prompt: %s: encoder_reparameterization_type: %w", path, err)
	}
	if pc.EncoderDropout != 0 {
		return PTuningConfig{}, fmt.Errorf("prompt: %s: encoder_dropout %v is not supported (only 0)", path, float64(pc.EncoderDropout))
	}
	c := PTuningConfig{
		NumVirtualTokens: pc.NumVirtualTokens, Encoder: enc,
		EncoderHidden: pc.EncoderHiddenSize, EncoderLayers: pc.EncoderNumLayers, BaseModel: pc.Base(),
	}
	if err := c.Validate(); err != nil {
		return PTuningConfig{}, fmt.Errorf("prompt: %s: %w", path, err)
	}
	return c, nil
}
