package hfconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/gotune/gotune/engine/arch"
	"github.com/gotune/gotune/engine/strictjson"
)

func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // *PathError names the file
	}
	return data, nil
}

// Parse parses and validates config.json content. source names the file in
// error messages (e.g. "models/tiny/config.json"); syntax errors carry
// line:column.
//
// The architecture comes from the first "architectures" entry, or from
// model_type when that key is absent. vocab_size, hidden_size,
// num_hidden_layers, num_attention_heads and intermediate_size (GPT-2:
// vocab_size, n_embd, n_layer, n_head) are required even though transformers
// has defaults for them: a config.json without them is not describing the
// checkpoint beside it. Every other field falls back to the architecture's
// transformers default.
func Parse(data []byte, source string) (*Config, error) {
	raw, err := decodeObject(data, source)
	if err != nil {
		return nil, err
	}
	p := &parser{src: source, raw: raw}
	c, err := p.config()
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	c.orig = c.Clone()
	c.orig.raw = nil
	return c, nil
}

// decodeObject parses a JSON object into its top-level keys, reporting
// syntax errors with line and column.
func decodeObject(data []byte, source string) (map[string]json.RawMessage, error) {
	if err := strictjson.CheckKeys(data); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := lineCol(data, se.Offset)
			return nil, fmt.Errorf("%s:%d:%d: malformed JSON: %v", source, line, col, err)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%s: must be a JSON object, got %s", source, te.Value)
		}
		return nil, fmt.Errorf("%s: malformed JSON: %v", source, err)
	}
	if raw == nil { // the literal null
		return nil, fmt.Errorf("%s: must be a JSON object, got null", source)
	}
	return raw, nil
}

// lineCol converts a byte offset (as json.SyntaxError reports it: the
// offset after the offending byte) to a 1-based line and column.
func lineCol(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off > 0 {
		off-- // point at the offending byte itself
	}
	before := data[:off]
	line = 1 + bytes.Count(before, []byte{'\n'})
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

func isNull(m json.RawMessage) bool {
	return m == nil || string(bytes.TrimSpace(m)) == "null"
}

// parser reads typed fields out of the raw map, naming the file and field in
// every error.
type parser struct {
	src  string
	raw  map[string]json.RawMessage
	used map[string]bool // keys read (see checkKeys)
}

func (p *parser) errf(key, format string, args ...any) error {
	return fmt.Errorf("%s: field %q: %s", p.src, key, fmt.Sprintf(format, args...))
}

// get returns a key's JSON, or nil when absent or null.
func (p *parser) get(key string) json.RawMessage {
	p.use(key)
	v := p.raw[key]
	if isNull(v) {
		return nil
	}
	return v
}

// use marks key as read.
func (p *parser) use(key string) {
	if p.used == nil {
		p.used = map[string]bool{}
	}
	p.used[key] = true
}

func (p *parser) has(key string) bool { return p.get(key) != nil }

// intVal parses JSON text as an integer; integral floats such as 4096.0 are
// accepted, fractions and non-numbers are not.
func intVal(v json.RawMessage) (int, bool) {
	var n json.Number
	// json.Number also accepts a quoted number ("8"); a string is a type
	// error here, as it is in transformers.
	if t := bytes.TrimSpace(v); len(t) == 0 || t[0] == '"' || json.Unmarshal(t, &n) != nil {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return int(i), true
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int(f), true
}

// optInt reads an optional integer; ok is false when absent or null.
func (p *parser) optInt(key string) (v int, ok bool, err error) {
	j := p.get(key)
	if j == nil {
		return 0, false, nil
	}
	v, ok = intVal(j)
	if !ok {
		return 0, false, p.errf(key, "must be an integer, got %s", j)
	}
	return v, true, nil
}

// intOr reads an optional integer with a default.
func (p *parser) intOr(key string, def int) (int, error) {
	v, ok, err := p.optInt(key)
	if err != nil || !ok {
		return def, err
	}
	return v, nil
}

// required reads a mandatory positive integer.
func (p *parser) required(key string) (int, error) {
	v, ok, err := p.optInt(key)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, p.errf(key, "missing (required)")
	}
	if v <= 0 {
		return 0, p.errf(key, "must be positive, got %d", v)
	}
	return v, nil
}

func (p *parser) floatOr(key string, def float64) (float64, error) {
	j := p.get(key)
	if j == nil {
		return def, nil
	}
	var f float64
	if err := json.Unmarshal(j, &f); err != nil {
		return 0, p.errf(key, "must be a number, got %s", j)
	}
	return f, nil
}

func (p *parser) boolOr(key string, def bool) (bool, error) {
	j := p.get(key)
	if j == nil {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(j, &b); err != nil {
		return false, p.errf(key, "must be true or false, got %s", j)
	}
	return b, nil
}

func (p *parser) stringOr(key, def string) (string, error) {
	j := p.get(key)
	if j == nil {
		return def, nil
	}
	var s string
	if err := json.Unmarshal(j, &s); err != nil {
		return "", p.errf(key, "must be a string, got %s", j)
	}
	return s, nil
}

// tokenID reads an optional token id with a default used only when the key
// is absent (an explicit null means "none").
func (p *parser) tokenID(key string, def *int) (*int, error) {
	p.use(key)
	if _, present := p.raw[key]; !present {
		return clonePtr(def), nil
	}
	v, ok, err := p.optInt(key)
	if err != nil || !ok {
		return nil, err
	}
	if v < 0 {
		return nil, p.errf(key, "must not be negative, got %d", v)
	}
	return &v, nil
}

// eosIDs reads eos_token_id, an int or a list of ints.
func (p *parser) eosIDs(def []int) ([]int, error) {
	const key = "eos_token_id"
	p.use(key)
	if _, present := p.raw[key]; !present {
		return def, nil
	}
	j := p.get(key)
	if j == nil {
		return nil, nil
	}
	if v, ok := intVal(j); ok {
		if v < 0 {
			return nil, p.errf(key, "must not be negative, got %d", v)
		}
		return []int{v}, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(j, &list); err != nil {
		return nil, p.errf(key, "must be an integer or a list of integers, got %s", j)
	}
	out := make([]int, len(list))
	for i, e := range list {
		v, ok := intVal(e)
		if !ok || v < 0 {
			return nil, p.errf(key, "element %d must be a non-negative integer, got %s", i, e)
		}
		out[i] = v
	}
	return out, nil
}

// arch decides the architecture from "architectures" (first entry), or from
// model_type when that key is absent.
func (p *parser) arch() (string, error) {
	unsupported := func(a string) error {
		return fmt.Errorf("unsupported architecture %q in %s; supported: %s", a, p.src, strings.Join(SupportedArchitectures(), ", "))
	}
	if j := p.get("architectures"); j != nil {
		var list []string
		if err := json.Unmarshal(j, &list); err != nil {
			return "", p.errf("architectures", "must be a list of strings, got %s", j)
		}
		if len(list) > 0 {
			if _, ok := arch.Lookup(list[0]); !ok {
				return "", unsupported(list[0])
			}
			return list[0], nil
		}
	}
	mt, err := p.stringOr("model_type", "")
	if err != nil {
		return "", err
	}
	if f, ok := arch.ByModelType(mt); ok {
		return f.Arch, nil
	}
	if mt == "" {
		return "", fmt.Errorf("%s: neither \"architectures\" nor \"model_type\" says which model this is; supported: %s", p.src, strings.Join(SupportedArchitectures(), ", "))
	}
	return "", unsupported("model_type " + mt)
}

func intPtr(v int) *int { return &v }

func (p *parser) config() (*Config, error) {
	archName, err := p.arch()
	if err != nil {
		return nil, err
	}
	c := &Config{Arch: archName, raw: p.raw}
	want := c.Family().ModelType
	if c.ModelType, err = p.stringOr("model_type", want); err != nil {
		return nil, err
	}
	if c.ModelType != want {
		return nil, p.errf("model_type", "%q does not match architecture %s (expected %q)", c.ModelType, archName, want)
	}
	if c.TorchDtype, err = p.stringOr("torch_dtype", ""); err != nil {
		return nil, err
	}
	p.use("dtype") // the newer spelling, read when torch_dtype is absent
	if c.TorchDtype == "" {
		if c.TorchDtype, err = p.stringOr("dtype", ""); err != nil {
			return nil, err
		}
	}
	if c.PadTokenID, err = p.tokenID("pad_token_id", nil); err != nil {
		return nil, err
	}
	if c.Quantization, err = p.quantization(); err != nil {
		return nil, err
	}
	if archName == ArchGPT2 {
		err = p.gpt2(c)
	} else {
		err = p.llama(c)
	}
	if err == nil {
		err = p.graniteScalars(c)
	}
	if err == nil && c.isGemma() {
		err = p.gemma(c)
	}
	if err == nil {
		err = p.dropouts(c)
	}
	if err != nil {
		return nil, err
	}
	if err := p.checkKeys(c); err != nil {
		return nil, err
	}
	return c, nil
}

// gpt2 reads GPT2Config keys, with its defaults.
func (p *parser) gpt2(c *Config) error {
	var err error
	if c.VocabSize, err = p.required("vocab_size"); err != nil {
		return err
	}
	if c.Hidden, err = p.required("n_embd"); err != nil {
		return err
	}
	if c.Layers, err = p.required("n_layer"); err != nil {
		return err
	}
	if c.Heads, err = p.required("n_head"); err != nil {
		return err
	}
	c.KVHeads = c.Heads
	if c.Hidden%c.Heads != 0 {
		return p.errf("n_embd", "%d is not divisible by n_head = %d", c.Hidden, c.Heads)
	}
	c.HeadDim = c.Hidden / c.Heads
	if c.Intermediate, err = p.intOr("n_inner", 4*c.Hidden); err != nil {
		return err
	}
	if c.MaxPos, err = p.intOr("n_positions", 1024); err != nil {
		return err
	}
	if c.NormEps, err = p.floatOr("layer_norm_epsilon", 1e-5); err != nil {
		return err
	}
	if c.HiddenAct, err = p.stringOr("activation_function", "gelu_new"); err != nil {
		return err
	}
	if c.TieEmbeddings, err = p.boolOr("tie_word_embeddings", true); err != nil {
		return err
	}
	c.AttentionBias, c.AttnOutBias, c.MLPBias = true, true, true
	if c.BosTokenID, err = p.tokenID("bos_token_id", intPtr(50256)); err != nil {
		return err
	}
	if c.EosTokenIDs, err = p.eosIDs([]int{50256}); err != nil {
		return err
	}
	// Options that change GPT-2's attention math, which our model does not
	// implement: refuse rather than train something else silently.
	if scale, err := p.boolOr("scale_attn_weights", true); err != nil {
		return err
	} else if !scale {
		return p.errf("scale_attn_weights", "false is not supported (attention scores are always scaled by 1/sqrt(head_dim))")
	}
	if inv, err := p.boolOr("scale_attn_by_inverse_layer_idx", false); err != nil {
		return err
	} else if inv {
		return p.errf("scale_attn_by_inverse_layer_idx", "true is not supported")
	}
	return nil
}

// llama reads LlamaConfig / MistralConfig / Qwen2Config keys, with each
// class's defaults.
func (p *parser) llama(c *Config) error {
	var err error
	if c.VocabSize, err = p.required("vocab_size"); err != nil {
		return err
	}
	if c.Hidden, err = p.required("hidden_size"); err != nil {
		return err
	}
	if c.Layers, err = p.required("num_hidden_layers"); err != nil {
		return err
	}
	if c.Heads, err = p.required("num_attention_heads"); err != nil {
		return err
	}
	if c.Intermediate, err = p.required("intermediate_size"); err != nil {
		return err
	}
	defKV := c.Heads
	switch {
	case c.isGemma():
		defKV = 4 // Gemma2Config's and Gemma3TextConfig's default
	case c.Arch == ArchGlm || c.Arch == ArchGlm4:
		defKV = 2 // GlmConfig's and Glm4Config's default
	}
	if c.KVHeads, err = p.intOr("num_key_value_heads", defKV); err != nil {
		return err
	}
	if p.has("head_dim") {
		if c.HeadDim, err = p.required("head_dim"); err != nil {
			return err
		}
	} else if c.Arch == ArchQwen3 || c.Arch == ArchGlm || c.Arch == ArchGlm4 {
		c.HeadDim = 128 // Qwen3Config's, GlmConfig's and Glm4Config's default
	} else if c.isGemma() {
		c.HeadDim = 256 // Gemma2Config's and Gemma3TextConfig's default
	} else {
		if c.Hidden%c.Heads != 0 {
			return p.errf("hidden_size", "%d is not divisible by num_attention_heads = %d", c.Hidden, c.Heads)
		}
		c.HeadDim = c.Hidden / c.Heads
	}
	if c.KVHeads <= 0 || c.Heads%c.KVHeads != 0 {
		return p.errf("num_key_value_heads", "%d must be positive and divide num_attention_heads = %d", c.KVHeads, c.Heads)
	}
	defMaxPos := map[string]int{ArchLlama: 2048, ArchMistral: 4096 * 32, ArchQwen2: 32768, ArchQwen3: 32768, ArchOlmo2: 2048, ArchGranite: 2048,
		ArchGemma2: 8192, ArchGemma3: 131072, ArchPhi3: 4096, ArchGlm: 131072, ArchGlm4: 131072}[c.Arch]
	if c.MaxPos, err = p.intOr("max_position_embeddings", defMaxPos); err != nil {
		return err
	}
	defEps := 1e-6
	switch c.Arch {
	case ArchOlmo2, ArchPhi3:
		defEps = 1e-5 // Olmo2Config's and Phi3Config's default
	case ArchGlm, ArchGlm4:
		defEps = 1.5625e-07 // GlmConfig's and Glm4Config's default
	}
	if c.NormEps, err = p.floatOr("rms_norm_eps", defEps); err != nil {
		return err
	}
	defTheta := 10000.0
	if c.Arch == ArchGemma3 {
		defTheta = 1e6 // Gemma3TextConfig's global RoPE base
	}
	if c.RopeTheta, err = p.floatOr("rope_theta", defTheta); err != nil {
		return err
	}
	if err := p.partialRotary(c); err != nil {
		return err
	}
	if c.RopeScaling, err = p.ropeScaling(c); err != nil {
		return err
	}
	if c.TieEmbeddings, err = p.boolOr("tie_word_embeddings", c.isGemma()); err != nil {
		return err
	}
	defAct := "silu"
	if c.isGemma() {
		defAct = "gelu_pytorch_tanh"
		// Gemma checkpoints often carry hidden_act too; transformers'
		// Gemma 2 and 3 read hidden_activation only.
		p.use("hidden_act")
	}
	if c.HiddenAct, err = p.stringOr(c.Family().Keys.Act, defAct); err != nil {
		return err
	}
	switch c.Arch {
	case ArchLlama, ArchQwen3, ArchOlmo2, ArchGranite, ArchGemma2, ArchGemma3:
		if c.AttentionBias, err = p.boolOr("attention_bias", false); err != nil {
			return err
		}
		c.AttnOutBias = c.AttentionBias
		if c.Arch == ArchLlama || c.Arch == ArchGranite {
			if c.MLPBias, err = p.boolOr("mlp_bias", false); err != nil {
				return err
			}
		}
	case ArchQwen2:
		c.AttentionBias = true
	case ArchGlm, ArchGlm4:
		// GlmAttention: q, k, v biases by attention_bias (default
		// true); o_proj never has one.
		if c.AttentionBias, err = p.boolOr("attention_bias", true); err != nil {
			return err
		}
	}
	var bos *int
	var eos []int
	switch c.Arch {
	case ArchQwen2, ArchQwen3: // Qwen2Config and Qwen3Config set no token defaults
	case ArchOlmo2:
		eos = []int{50279} // Olmo2Config: no bos, eos 50279
	case ArchGemma2, ArchGemma3:
		bos, eos = intPtr(2), []int{1}
	case ArchPhi3:
		bos, eos = intPtr(1), []int{32000}
	case ArchGlm, ArchGlm4:
		eos = []int{151329, 151336, 151338} // no bos
	default:
		bos, eos = intPtr(1), []int{2}
	}
	if c.BosTokenID, err = p.tokenID("bos_token_id", bos); err != nil {
		return err
	}
	if c.EosTokenIDs, err = p.eosIDs(eos); err != nil {
		return err
	}
	if c.Arch == ArchPhi3 {
		// Phi3Attention's qkv_proj and o_proj and Phi3MLP never have
		// biases, whatever these keys say (transformers ignores them).
		p.use("attention_bias")
		p.use("mlp_bias")
		// Read for longrope (rope_scaling); otherwise it changes nothing.
		if _, err := p.intOr("original_max_position_embeddings", 4096); err != nil {
			return err
		}
	}
	return p.slidingWindow(c)
}

// graniteScalars reads GraniteConfig's multipliers (default 1); the
// other families leave them zero.
func (p *parser) graniteScalars(c *Config) error {
	if c.Arch != ArchGranite {
		return nil
	}
	fields := []struct {
		key string
		v   *float64
	}{
		{"embedding_multiplier", &c.EmbeddingMultiplier}, {"residual_multiplier", &c.ResidualMultiplier},
		{"attention_multiplier", &c.AttentionMultiplier}, {"logits_scaling", &c.LogitsScaling},
	}
	for _, f := range fields {
		v, err := p.floatOr(f.key, 1)
		if err != nil {
			return err
		}
		if !(v > 0) {
			return p.errf(f.key, "must be positive, got %v", v)
		}
		*f.v = v
	}
	return nil
}

// partialRotary reads partial_rotary_factor for the families whose
// configuration class has it (Phi3Config default 1, GlmConfig and
// Glm4Config 0.5); the others rotate whole heads (PartialRotaryFactor
// stays 0; they refuse the key unless it is 1, see mathKeys).
func (p *parser) partialRotary(c *Config) error {
	def := 0.0
	switch c.Arch {
	case ArchPhi3:
		def = 1
	case ArchGlm, ArchGlm4:
		def = 0.5
	default:
		return nil
	}
	f, err := p.floatOr("partial_rotary_factor", def)
	if err != nil {
		return err
	}
	if !(f > 0 && f <= 1) {
		return p.errf("partial_rotary_factor", "must be in (0, 1], got %v", f)
	}
	c.PartialRotaryFactor = f
	return nil
}

// ropeScaling reads rope_scaling; rope_type "default" (or none) means no
// scaling.
func (p *parser) ropeScaling(c *Config) (*RopeScaling, error) {
	const key = "rope_scaling"
	j := p.get(key)
	if j == nil {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(j, &m); err != nil {
		return nil, p.errf(key, "must be an object or null, got %s", j)
	}
	// Errors about the nested keys read "FILE: field "rope_scaling": field "factor": ...".
	sub := &parser{src: fmt.Sprintf("%s: field %q", p.src, key), raw: m}
	typ, err := sub.stringOr("rope_type", "")
	if err != nil {
		return nil, err
	}
	if typ == "" {
		if typ, err = sub.stringOr("type", ""); err != nil {
			return nil, err
		}
	}
	if typ == "default" {
		return nil, nil
	}
	r := &RopeScaling{Type: typ}
	switch typ {
	case "linear":
		r.Factor, err = sub.floatOr("factor", 0)
	case "llama3":
		if r.Factor, err = sub.floatOr("factor", 0); err != nil {
			break
		}
		if r.LowFreqFactor, err = sub.floatOr("low_freq_factor", 0); err != nil {
			break
		}
		if r.HighFreqFactor, err = sub.floatOr("high_freq_factor", 0); err != nil {
			break
		}
		r.OriginalMaxPos, err = sub.intOr("original_max_position_embeddings", 0)
	case "longrope":
		err = p.longRope(c, sub, r)
	case "":
		return nil, p.errf(key, "has no \"rope_type\" (or \"type\")")
	default:
		return nil, p.errf(key, "rope scaling type %q is not supported (supported: %s)", typ, ropeTypes)
	}
	if err != nil {
		return nil, err
	}
	if err := r.validate(); err != nil {
		return nil, p.errf(key, "%v", err)
	}
	return r, nil
}

// isGemma reports whether c is Gemma 2 or Gemma 3 (text).
func (c *Config) isGemma() bool { return c.Arch == ArchGemma2 || c.Arch == ArchGemma3 }

// gemma reads Gemma2Config's and Gemma3TextConfig's attention and logit
// keys, with their defaults (slidingWindow reads their layer pattern).
func (p *parser) gemma(c *Config) error {
	g3 := c.Arch == ArchGemma3
	var err error
	if _, present := p.raw["pad_token_id"]; !present {
		c.PadTokenID = intPtr(0)
	}
	if c.QueryPreAttnScalar, err = p.floatOr("query_pre_attn_scalar", 256); err != nil {
		return err
	}
	// A soft cap of null is none; an absent one is the class default
	// (Gemma 2: 30 and 50; Gemma 3: none).
	softCap := func(key string, g2Default float64) (float64, error) {
		if _, present := p.raw[key]; present || g3 {
			return p.floatOr(key, 0)
		}
		return g2Default, nil
	}
	if c.FinalSoftCap, err = softCap("final_logit_softcapping", 30); err != nil {
		return err
	}
	if c.AttnSoftCap, err = softCap("attn_logit_softcapping", 50); err != nil {
		return err
	}
	if g3 && c.AttnSoftCap != 0 {
		c.warnings = append(c.warnings, fmt.Sprintf("%s: attn_logit_softcapping %v is ignored: Gemma 3's attention does not apply it (as in transformers)", p.src, c.AttnSoftCap))
		c.AttnSoftCap = 0
	}
	if g3 {
		if c.RopeLocalTheta, err = p.floatOr("rope_local_base_freq", 10000); err != nil {
			return err
		}
	}
	return nil
}

// longRope reads a longrope rope_scaling entry (sub) of a Phi-3 config
// into r as transformers' _compute_longrope_parameters reads it: the
// short and long factors, the optional attention_factor, and
// original_max_position_embeddings from the top level (Phi3Config's key,
// default 4096; newer files may repeat it in the entry, which must then
// agree), with factor = max_position_embeddings / original. A factor key
// that disagrees is refused: transformers versions differ on which wins.
func (p *parser) longRope(c *Config, sub *parser, r *RopeScaling) error {
	if c.Arch != ArchPhi3 {
		return p.errf("rope_scaling", "longrope is supported for %s only", ArchPhi3)
	}
	var err error
	if r.OriginalMaxPos, err = p.intOr("original_max_position_embeddings", 4096); err != nil {
		return err
	}
	if v, ok, err := sub.optInt("original_max_position_embeddings"); err != nil {
		return err
	} else if ok && v != r.OriginalMaxPos {
		return sub.errf("original_max_position_embeddings", "%d differs from the top-level original_max_position_embeddings %d", v, r.OriginalMaxPos)
	}
	if r.OriginalMaxPos <= 0 {
		return p.errf("original_max_position_embeddings", "must be positive, got %d", r.OriginalMaxPos)
	}
	r.Factor = float64(c.MaxPos) / float64(r.OriginalMaxPos)
	if f, err := sub.floatOr("factor", r.Factor); err != nil {
		return err
	} else if f != r.Factor {
		return sub.errf("factor", "%v differs from max_position_embeddings / original_max_position_embeddings = %v", f, r.Factor)
	}
	if r.AttentionFactor, err = sub.floatOr("attention_factor", 0); err != nil {
		return err
	}
	if r.AttentionFactor < 0 || sub.has("attention_factor") && r.AttentionFactor == 0 {
		return sub.errf("attention_factor", "must be positive, got %v", r.AttentionFactor)
	}
	if r.ShortFactor, err = sub.floats("short_factor"); err != nil {
		return err
	}
	r.LongFactor, err = sub.floats("long_factor")
	return err
}

// floats reads a required list of numbers.
func (p *parser) floats(key string) ([]float64, error) {
	j := p.get(key)
	if j == nil {
		return nil, p.errf(key, "missing (required)")
	}
	var out []float64
	if err := json.Unmarshal(j, &out); err != nil || len(out) == 0 {
		return nil, p.errf(key, "must be a non-empty list of numbers, got %s", j)
	}
	return out, nil
}
