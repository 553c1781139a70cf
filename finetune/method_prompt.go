package finetune

import (
	"fmt"
	"strings"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/prompt"
)

// loadPrompt installs a prompt-tuning or P-Tuning folder for inference.
func loadPrompt(m model.Model, dir string) error {
	_, err := prompt.Load(m, dir, prompt.LoadOptions{Frozen: true})
	return err
}

// promptTuningMethod is prompt tuning (trained virtual-token embeddings).
func promptTuningMethod() *Method {
	return &Method{Name: "prompt", PeftTypes: []string{prompt.PeftTypePromptTuning}, Apply: applyPromptTuning, Load: loadPrompt, VirtualTokens: true}
}

// pTuningMethod is P-Tuning (virtual tokens from a prompt encoder).
func pTuningMethod() *Method {
	return &Method{Name: "ptuning", PeftTypes: []string{prompt.PeftTypePTuning}, Apply: applyPTuning, Load: loadPrompt, VirtualTokens: true}
}

// promptOption maps the fields of prompt.TuningConfig and
// prompt.PTuningConfig to the options that set them (the token ids come
// from InitText).
var promptOption = optionsOf("Prompt", map[string]string{"InitTokenIDs": "Prompt.InitText"})

func applyPromptTuning(m model.Model, o *MethodOptions) (train.Saver, error) {
	p := &o.Prompt
	if o.InitAdapter != "" {
		if err := o.checkPeftType("prompt", prompt.PeftTypePromptTuning); err != nil {
			return nil, err
		}
		file, err := prompt.ReadTuningConfig(o.InitAdapter, m)
		if err != nil {
			return nil, o.initAdapterErr(err)
		}
		var bad []string
		if o.given("Prompt.NumVirtualTokens") && p.NumVirtualTokens != file.NumVirtualTokens {
			bad = append(bad, fmt.Sprintf("%s %d (num_virtual_tokens is %d)", o.name("Prompt.NumVirtualTokens"), p.NumVirtualTokens, file.NumVirtualTokens))
		}
		// The adapter's values replace any initialisation; the options
		// only have to describe the file.
		if o.given("Prompt.Init") && prompt.Init(strings.ToLower(p.Init)) != file.Init {
			bad = append(bad, fmt.Sprintf("%s %s (prompt_tuning_init is %s)", o.name("Prompt.Init"), p.Init, strings.ToUpper(string(file.Init))))
		}
		if o.given("Prompt.InitText") && p.InitText != file.InitText {
			bad = append(bad, fmt.Sprintf("%s %q (prompt_tuning_init_text is %q)", o.name("Prompt.InitText"), p.InitText, file.InitText))
		}
		return loadPromptInit(m, o, bad)
	}
	cfg := prompt.TuningConfig{
		NumVirtualTokens: p.NumVirtualTokens, Init: prompt.Init(strings.ToLower(p.Init)),
		Seed: o.Seed, BaseModel: o.BaseModel,
	}
	switch {
	case cfg.Init == prompt.InitText && strings.TrimSpace(p.InitText) == "":
		return nil, optionErrorf("Prompt.InitText", "%s text needs %s", o.name("Prompt.Init"), o.name("Prompt.InitText"))
	case cfg.Init != prompt.InitText && p.InitText != "":
		return nil, optionErrorf("Prompt.InitText", "%s is used only with %s text", o.name("Prompt.InitText"), o.name("Prompt.Init"))
	}
	if cfg.Init == prompt.InitText {
		tok, err := tokenizer.Load(o.BaseModel)
		if err != nil {
			return nil, fmt.Errorf("%s text needs the model's tokenizer: %w", o.name("Prompt.Init"), err)
		}
		ids, err := tok.Encode(p.InitText, true) // PEFT calls tokenizer(text): special tokens included
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.name("Prompt.InitText"), err)
		}
		for _, id := range ids {
			cfg.InitTokenIDs = append(cfg.InitTokenIDs, int32(id))
		}
		cfg.InitText, cfg.TokenizerPath = p.InitText, o.BaseModel
	}
	if err := cfg.Validate(); err != nil {
		return nil, FieldOptionError(err, promptOption, o.Names)
	}
	a, err := prompt.ApplyPromptTuning(m, cfg)
	if err != nil {
		return nil, FieldOptionError(err, promptOption, o.Names)
	}
	return a, nil
}

func applyPTuning(m model.Model, o *MethodOptions) (train.Saver, error) {
	p := &o.Prompt
	enc, err := prompt.ParseEncoderType(p.Encoder)
	if err != nil {
		return nil, optionErrorf("Prompt.Encoder", "%s: %v", o.name("Prompt.Encoder"), err)
	}
	cfg := prompt.PTuningConfig{
		NumVirtualTokens: p.NumVirtualTokens, Encoder: enc, EncoderHidden: p.EncoderHidden,
		EncoderLayers: p.EncoderLayers, Seed: o.Seed, BaseModel: o.BaseModel,
	}
	if err := cfg.Validate(); err != nil {
		return nil, FieldOptionError(err, promptOption, o.Names)
	}
	if o.InitAdapter == "" {
		a, err := prompt.ApplyPTuning(m, cfg)
		if err != nil {
			return nil, FieldOptionError(err, promptOption, o.Names)
		}
		return a, nil
	}
	if err := o.checkPeftType("ptuning", prompt.PeftTypePTuning); err != nil {
		return nil, err
	}
	file, err := prompt.ReadPTuningConfig(o.InitAdapter, m)
	if err != nil {
		return nil, o.initAdapterErr(err)
	}
	D := m.Config().Hidden
	hidden := func(h int) int {
		if h > 0 {
			return h
		}
		return D
	}
	var bad []string
	if o.given("Prompt.NumVirtualTokens") && cfg.NumVirtualTokens != file.NumVirtualTokens {
		bad = append(bad, fmt.Sprintf("%s %d (num_virtual_tokens is %d)", o.name("Prompt.NumVirtualTokens"), cfg.NumVirtualTokens, file.NumVirtualTokens))
	}
	if o.given("Prompt.Encoder") && cfg.Encoder != file.Encoder {
		bad = append(bad, fmt.Sprintf("%s %s (encoder_reparameterization_type is %s)", o.name("Prompt.Encoder"), p.Encoder, file.Encoder))
	}
	if o.given("Prompt.EncoderHidden") && hidden(cfg.EncoderHidden) != hidden(file.EncoderHidden) {
		bad = append(bad, fmt.Sprintf("%s %d (encoder_hidden_size is %d)", o.name("Prompt.EncoderHidden"), cfg.EncoderHidden, hidden(file.EncoderHidden)))
	}
	if o.given("Prompt.EncoderLayers") && file.Encoder == prompt.EncoderLSTM && cfg.EncoderLayers != file.EncoderLayers {
		bad = append(bad, fmt.Sprintf("%s %d (encoder_num_layers is %d)", o.name("Prompt.EncoderLayers"), cfg.EncoderLayers, file.EncoderLayers))
	}
	return loadPromptInit(m, o, bad)
}

// loadPromptInit loads the InitAdapter folder for training, unless bad
// lists options that contradict it.
func loadPromptInit(m model.Model, o *MethodOptions, bad []string) (train.Saver, error) {
	if err := o.contradict(bad); err != nil {
		return nil, err
	}
	a, err := prompt.Load(m, o.InitAdapter, prompt.LoadOptions{BaseModel: o.BaseModel})
	if err != nil {
		return nil, o.initAdapterErr(err)
	}
	return a, nil
}
