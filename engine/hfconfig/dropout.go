package hfconfig

import "fmt"

// Base-model dropout as the families' transformers modules apply it in
// training (model.train()): GPT-2's embd_pdrop on token plus position
// embeddings, attn_pdrop on the attention probabilities and resid_pdrop
// on the outputs of attn.c_proj and mlp.c_proj (GPT2Config defaults each
// to 0.1); the attention_dropout of the LLaMA-like families on the
// attention probabilities (default 0); Phi-3's resid_pdrop on the outputs
// of o_proj and down_proj (default 0). Other dropout keys are read by
// none of these families' modules (see honesty.go).

// dropoutKey is one dropout probability a family reads.
type dropoutKey struct {
	key string
	def float64
	v   func(c *Config) *float64
}

func attnDropout(c *Config) *float64  { return &c.AttentionDropout }
func residDropout(c *Config) *float64 { return &c.ResidDropout }
func embdDropout(c *Config) *float64  { return &c.EmbdDropout }

// dropoutKeysOf returns the dropout keys arch reads.
func dropoutKeysOf(arch string) []dropoutKey {
	switch arch {
	case ArchGPT2:
		return []dropoutKey{{"attn_pdrop", 0.1, attnDropout}, {"resid_pdrop", 0.1, residDropout}, {"embd_pdrop", 0.1, embdDropout}}
	case ArchPhi3:
		// Phi3DecoderLayer's resid_attn_dropout and resid_mlp_dropout;
		// Phi3Model has no embedding dropout, so embd_pdrop is warned about.
		return []dropoutKey{{"attention_dropout", 0, attnDropout}, {"resid_pdrop", 0, residDropout}}
	}
	return []dropoutKey{{"attention_dropout", 0, attnDropout}}
}

// dropouts reads the family's dropout probabilities.
func (p *parser) dropouts(c *Config) error {
	for _, k := range dropoutKeysOf(c.Arch) {
		v, err := p.floatOr(k.key, k.def)
		if err != nil {
			return err
		}
		*k.v(c) = v
	}
	return nil
}

// validateDropouts checks that every probability is in [0, 1).
func (c *Config) validateDropouts() error {
	for _, k := range dropoutKeysOf(c.Arch) {
		if v := *k.v(c); !(v >= 0 && v < 1) {
			return fmt.Errorf("field %q must be a probability in [0, 1), got %v", k.key, v)
		}
	}
	return nil
}

// mergeDropouts writes the dropout keys whose fields changed since o
// (Save).
func (c *Config) mergeDropouts(o *Config, set func(key string, v any)) {
	for _, k := range dropoutKeysOf(c.Arch) {
		if v := *k.v(c); v != *k.v(o) {
			set(k.key, v)
		}
	}
}

// HasDropout reports whether training applies any base-model dropout.
func (c *Config) HasDropout() bool {
	return c.AttentionDropout > 0 || c.ResidDropout > 0 || c.EmbdDropout > 0
}
