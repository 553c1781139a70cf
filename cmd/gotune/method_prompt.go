package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/peft"
	"github.com/gotune/gotune/methods/prompt"
)

// promptLearningFlags are the flags shared by --method prompt, ptuning
// and prefix, and those of prompt and ptuning.
type promptLearningFlags struct {
	virtualTokens, encoderHidden, encoderLayers int
	init, initText, encoder                     string
}

var promptOpts promptLearningFlags

func init() {
	registerMethod(&trainMethod{Name: "prompt", Flags: definePromptFlags, Apply: applyPromptTuning})
	registerMethod(&trainMethod{Name: "ptuning", Flags: definePTuningFlags, Apply: applyPTuning})
	load := func(m model.Model, dir string) error {
		_, err := prompt.Load(m, dir, prompt.LoadOptions{Frozen: true})
		return err
	}
	registerAdapterLoader(prompt.PeftTypePromptTuning, load)
	registerAdapterLoader(prompt.PeftTypePTuning, load)
}

// defineSharedPromptFlags defines the flags the prompt-learning methods
// share (once, whichever method's Flags runs first).
func defineSharedPromptFlags(fs *flag.FlagSet) {
	defineAdapterFlags(fs)
	if fs.Lookup("num-virtual-tokens") != nil {
		return
	}
	o := &promptOpts
	fs.IntVar(&o.virtualTokens, "num-virtual-tokens", 20, "--method prompt, ptuning, prefix: number of virtual tokens (prefix length)")
	fs.IntVar(&o.encoderHidden, "encoder-hidden-size", 0, "--method ptuning, prefix (with --prefix-projection): hidden size of the prompt encoder; 0: the model's token width (PEFT's default)")
}

func definePromptFlags(fs *flag.FlagSet) {
	defineSharedPromptFlags(fs)
	o := &promptOpts
	fs.StringVar(&o.init, "prompt-init", string(prompt.InitRandom), "--method prompt: initialisation of the virtual tokens: random (normal, std 1, as PEFT) or text (the embeddings of --prompt-init-text's tokens, repeated or cut to --num-virtual-tokens)")
	fs.StringVar(&o.initText, "prompt-init-text", "", "--method prompt: the text of --prompt-init text, tokenized with the model's tokenizer")
}

func definePTuningFlags(fs *flag.FlagSet) {
	defineSharedPromptFlags(fs)
	o := &promptOpts
	fs.StringVar(&o.encoder, "encoder-reparameterization", "mlp", "--method ptuning: the prompt encoder: mlp (3 linear layers) or lstm (bidirectional LSTM and a 2-layer MLP head)")
	fs.IntVar(&o.encoderLayers, "encoder-num-layers", 2, "--method ptuning: layers of the LSTM encoder")
}

// checkPeftType rejects an --init-adapter folder of another method.
func checkPeftType(method string, want ...string) error {
	h, err := peft.ReadHeader(initAdapterDir)
	if err != nil {
		return fmt.Errorf("--init-adapter: %w", err)
	}
	for _, w := range want {
		if h.PeftType == w {
			return nil
		}
	}
	return &usageError{msg: fmt.Sprintf("--init-adapter %s holds a %s adapter, not one --method %s trains", initAdapterDir, h.PeftType, method)}
}

func applyPromptTuning(m model.Model, seed uint64) (train.Saver, error) {
	o := &promptOpts
	if initAdapterDir != "" {
		if err := checkPeftType("prompt", prompt.PeftTypePromptTuning); err != nil {
			return nil, err
		}
		file, err := prompt.ReadTuningConfig(initAdapterDir, m)
		if err != nil {
			return nil, fmt.Errorf("--init-adapter: %w", err)
		}
		var bad []string
		if flagSet("num-virtual-tokens") && o.virtualTokens != file.NumVirtualTokens {
			bad = append(bad, fmt.Sprintf("--num-virtual-tokens %d (num_virtual_tokens is %d)", o.virtualTokens, file.NumVirtualTokens))
		}
		// The adapter's values replace any initialisation; the options
		// only have to describe the file.
		if flagSet("prompt-init") && prompt.Init(strings.ToLower(o.init)) != file.Init {
			bad = append(bad, fmt.Sprintf("--prompt-init %s (prompt_tuning_init is %s)", o.init, strings.ToUpper(string(file.Init))))
		}
		if flagSet("prompt-init-text") && o.initText != file.InitText {
			bad = append(bad, fmt.Sprintf("--prompt-init-text %q (prompt_tuning_init_text is %q)", o.initText, file.InitText))
		}
		if err := flagsContradict(bad); err != nil {
			return nil, err
		}
		a, err := prompt.Load(m, initAdapterDir, prompt.LoadOptions{BaseModel: trainModelDir()})
		if err != nil {
			return nil, fmt.Errorf("--init-adapter: %w", err)
		}
		return a, nil
	}
	cfg := prompt.TuningConfig{
		NumVirtualTokens: o.virtualTokens, Init: prompt.Init(strings.ToLower(o.init)),
		Seed: seed, BaseModel: trainModelDir(),
	}
	switch {
	case cfg.Init == prompt.InitText && strings.TrimSpace(o.initText) == "":
		return nil, &usageError{msg: "--prompt-init text needs --prompt-init-text"}
	case cfg.Init != prompt.InitText && o.initText != "":
		return nil, &usageError{msg: "--prompt-init-text is used only with --prompt-init text"}
	}
	if cfg.Init == prompt.InitText {
		tok, err := tokenizer.Load(trainModelDir())
		if err != nil {
			return nil, fmt.Errorf("--prompt-init text needs the model's tokenizer: %w", err)
		}
		ids, err := tok.Encode(o.initText, true) // PEFT calls tokenizer(text): special tokens included
		if err != nil {
			return nil, fmt.Errorf("--prompt-init-text: %w", err)
		}
		for _, id := range ids {
			cfg.InitTokenIDs = append(cfg.InitTokenIDs, int32(id))
		}
		cfg.InitText, cfg.TokenizerPath = o.initText, trainModelDir()
	}
	if err := cfg.Validate(); err != nil {
		return nil, &usageError{msg: "--method prompt: " + err.Error()}
	}
	return prompt.ApplyPromptTuning(m, cfg)
}

func applyPTuning(m model.Model, seed uint64) (train.Saver, error) {
	o := &promptOpts
	enc, err := prompt.ParseEncoderType(o.encoder)
	if err != nil {
		return nil, &usageError{msg: "--encoder-reparameterization: " + err.Error()}
	}
	cfg := prompt.PTuningConfig{
		NumVirtualTokens: o.virtualTokens, Encoder: enc, EncoderHidden: o.encoderHidden,
		EncoderLayers: o.encoderLayers, Seed: seed, BaseModel: trainModelDir(),
	}
	if err := cfg.Validate(); err != nil {
		return nil, &usageError{msg: "--method ptuning: " + err.Error()}
	}
	if initAdapterDir == "" {
		return prompt.ApplyPTuning(m, cfg)
	}
	if err := checkPeftType("ptuning", prompt.PeftTypePTuning); err != nil {
		return nil, err
	}
	file, err := prompt.ReadPTuningConfig(initAdapterDir, m)
	if err != nil {
		return nil, fmt.Errorf("--init-adapter: %w", err)
	}
	D := m.Config().Hidden
	hidden := func(h int) int {
		if h > 0 {
			return h
		}
		return D
	}
	var bad []string
	if flagSet("num-virtual-tokens") && cfg.NumVirtualTokens != file.NumVirtualTokens {
		bad = append(bad, fmt.Sprintf("--num-virtual-tokens %d (num_virtual_tokens is %d)", cfg.NumVirtualTokens, file.NumVirtualTokens))
	}
	if flagSet("encoder-reparameterization") && cfg.Encoder != file.Encoder {
		bad = append(bad, fmt.Sprintf("--encoder-reparameterization %s (encoder_reparameterization_type is %s)", o.encoder, file.Encoder))
	}
	if flagSet("encoder-hidden-size") && hidden(cfg.EncoderHidden) != hidden(file.EncoderHidden) {
		bad = append(bad, fmt.Sprintf("--encoder-hidden-size %d (encoder_hidden_size is %d)", cfg.EncoderHidden, hidden(file.EncoderHidden)))
	}
	if flagSet("encoder-num-layers") && file.Encoder == prompt.EncoderLSTM && cfg.EncoderLayers != file.EncoderLayers {
		bad = append(bad, fmt.Sprintf("--encoder-num-layers %d (encoder_num_layers is %d)", cfg.EncoderLayers, file.EncoderLayers))
	}
	if err := flagsContradict(bad); err != nil {
		return nil, err
	}
	a, err := prompt.Load(m, initAdapterDir, prompt.LoadOptions{BaseModel: trainModelDir()})
	if err != nil {
		return nil, fmt.Errorf("--init-adapter: %w", err)
	}
	return a, nil
}
