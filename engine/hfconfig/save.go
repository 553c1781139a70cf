package hfconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/gotune/gotune/engine/fsutil"
)

// ownedKeys are the config.json keys backed by Config fields.
var ownedKeys = map[string]bool{
	"architectures": true, "model_type": true, "vocab_size": true,
	"hidden_size": true, "n_embd": true, "num_hidden_layers": true, "n_layer": true,
	"num_attention_heads": true, "n_head": true, "num_key_value_heads": true,
	"head_dim": true, "intermediate_size": true, "n_inner": true,
	"max_position_embeddings": true, "n_positions": true, "rms_norm_eps": true,
	"layer_norm_epsilon": true, "rope_theta": true, "rope_scaling": true,
	"tie_word_embeddings": true, "attention_bias": true, "mlp_bias": true,
	"hidden_act": true, "activation_function": true, "bos_token_id": true,
	"eos_token_id": true, "pad_token_id": true, "torch_dtype": true, "dtype": true,
	"sliding_window": true, "use_sliding_window": true, "max_window_layers": true, "layer_types": true,
	"attention_dropout": true, "attn_pdrop": true, "resid_pdrop": true, "embd_pdrop": true,
	"hidden_activation": true, "query_pre_attn_scalar": true, "attn_logit_softcapping": true,
	"final_logit_softcapping": true, "rope_local_base_freq": true, "sliding_window_pattern": true,
	"partial_rotary_factor": true, "original_max_position_embeddings": true,
}

// Save validates c and writes DIR/config.json atomically. Keys of the
// original file are kept; keys backed by fields that changed since Parse (or
// since the constructor, or the last Save) are rewritten. The layout is
// transformers' own (json.dumps(indent=2, sort_keys=True) plus a newline), so
// a config that round-trips unchanged is byte-identical to one written by
// transformers.
func (c *Config) Save(dir string) error {
	path := filepath.Join(dir, FileName)
	data, raw, err := c.encode()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := fsutil.WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}); err != nil {
		return err
	}
	c.markSaved(raw)
	return nil
}

// Marshal validates c and returns the config.json bytes Save would write.
func (c *Config) Marshal() ([]byte, error) {
	data, _, err := c.encode()
	return data, err
}

func (c *Config) encode() ([]byte, map[string]json.RawMessage, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	raw, err := c.merged()
	if err != nil {
		return nil, nil, err
	}
	// Re-decode through one JSON document so nested values are formatted
	// uniformly; the raw messages were validated when parsed.
	doc, err := json.Marshal(raw)
	if err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	writePyValue(&buf, v, 0)
	buf.WriteByte('\n')
	return buf.Bytes(), raw, nil
}

// merged returns raw with the keys of changed fields replaced.
func (c *Config) merged() (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(c.raw)+8)
	for k, v := range c.raw {
		out[k] = v
	}
	o := c.orig
	if o == nil {
		o = &Config{}
	}
	var firstErr error
	set := func(key string, v any) {
		var data []byte
		var err error
		switch x := v.(type) {
		case float64:
			data = []byte(pyFloat(x))
		case *int:
			if x == nil {
				data = []byte("null")
			} else {
				data = []byte(strconv.Itoa(*x))
			}
		default:
			data, err = json.Marshal(v)
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("field %q: %w", key, err)
		}
		out[key] = data
	}
	g := c.IsGPT2()
	k := c.Family().Keys
	if c.Arch != o.Arch {
		set("architectures", []string{c.Arch})
	}
	if c.ModelType != o.ModelType {
		set("model_type", c.ModelType)
	}
	ints := []struct {
		key    string
		v, old int
	}{
		{"vocab_size", c.VocabSize, o.VocabSize},
		{k.Hidden, c.Hidden, o.Hidden},
		{k.Layers, c.Layers, o.Layers},
		{k.Heads, c.Heads, o.Heads},
		{k.Intermediate, c.Intermediate, o.Intermediate},
		{k.MaxPos, c.MaxPos, o.MaxPos},
	}
	if !g {
		ints = append(ints,
			struct {
				key    string
				v, old int
			}{"num_key_value_heads", c.KVHeads, o.KVHeads},
			struct {
				key    string
				v, old int
			}{"head_dim", c.HeadDim, o.HeadDim})
	}
	for _, f := range ints {
		if f.v != f.old {
			set(f.key, f.v)
		}
	}
	if c.NormEps != o.NormEps {
		set(k.NormEps, c.NormEps)
	}
	if !g && c.RopeTheta != o.RopeTheta {
		set("rope_theta", c.RopeTheta)
	}
	if !g && !reflect.DeepEqual(c.RopeScaling, o.RopeScaling) {
		if c.RopeScaling == nil {
			out["rope_scaling"] = json.RawMessage("null")
		} else {
			r := c.RopeScaling
			m := map[string]json.RawMessage{
				"rope_type": json.RawMessage(strconv.Quote(r.Type)),
				"factor":    json.RawMessage(pyFloat(r.Factor)),
			}
			switch r.Type {
			case "llama3":
				m["low_freq_factor"] = json.RawMessage(pyFloat(r.LowFreqFactor))
				m["high_freq_factor"] = json.RawMessage(pyFloat(r.HighFreqFactor))
				m["original_max_position_embeddings"] = json.RawMessage(strconv.Itoa(r.OriginalMaxPos))
			case "longrope":
				// Phi3Config keeps original_max_position_embeddings at
				// the top level and derives the factor.
				delete(m, "factor")
				m["short_factor"] = pyFloats(r.ShortFactor)
				m["long_factor"] = pyFloats(r.LongFactor)
				if r.AttentionFactor != 0 {
					m["attention_factor"] = json.RawMessage(pyFloat(r.AttentionFactor))
				}
				if o.RopeScaling == nil || o.RopeScaling.OriginalMaxPos != r.OriginalMaxPos {
					set("original_max_position_embeddings", r.OriginalMaxPos)
				}
			}
			data, _ := json.Marshal(m)
			out["rope_scaling"] = data
		}
	}
	if !g && c.PartialRotaryFactor != o.PartialRotaryFactor && (c.Arch == ArchPhi3 || c.Arch == ArchGlm || c.Arch == ArchGlm4) {
		set("partial_rotary_factor", c.PartialRotaryFactor)
	}
	if c.TieEmbeddings != o.TieEmbeddings {
		set("tie_word_embeddings", c.TieEmbeddings)
	}
	if c.Arch == ArchGranite {
		setChanged(set, out, []floatField{
			{"embedding_multiplier", c.EmbeddingMultiplier, o.EmbeddingMultiplier},
			{"residual_multiplier", c.ResidualMultiplier, o.ResidualMultiplier},
			{"attention_multiplier", c.AttentionMultiplier, o.AttentionMultiplier},
			{"logits_scaling", c.LogitsScaling, o.LogitsScaling},
		}, false)
	}
	if c.isGemma() {
		c.mergeGemma(o, set, out)
	}
	if (c.Arch == ArchGlm || c.Arch == ArchGlm4) && c.AttentionBias != o.AttentionBias {
		set("attention_bias", c.AttentionBias)
	}
	if c.Arch == ArchLlama || c.Arch == ArchQwen3 || c.Arch == ArchOlmo2 || c.Arch == ArchGranite || c.isGemma() {
		if c.AttentionBias != o.AttentionBias {
			set("attention_bias", c.AttentionBias)
		}
		if c.MLPBias != o.MLPBias {
			set("mlp_bias", c.MLPBias)
		}
	}
	if c.HiddenAct != o.HiddenAct {
		set(k.Act, c.HiddenAct)
	}
	if !reflect.DeepEqual(c.BosTokenID, o.BosTokenID) {
		set("bos_token_id", c.BosTokenID)
	}
	if !reflect.DeepEqual(c.EosTokenIDs, o.EosTokenIDs) {
		switch len(c.EosTokenIDs) {
		case 0:
			out["eos_token_id"] = json.RawMessage("null")
		case 1:
			set("eos_token_id", c.EosTokenIDs[0])
		default:
			set("eos_token_id", c.EosTokenIDs)
		}
	}
	if !reflect.DeepEqual(c.PadTokenID, o.PadTokenID) {
		set("pad_token_id", c.PadTokenID)
	}
	if c.TorchDtype != o.TorchDtype {
		key := "torch_dtype"
		if _, newer := c.raw["dtype"]; newer {
			if _, older := c.raw["torch_dtype"]; !older {
				key = "dtype"
			}
		}
		set(key, c.TorchDtype)
	}
	c.mergeWindow(o, set)
	c.mergeDropouts(o, set)
	if c.Quantization == nil && o.Quantization != nil {
		// The weights were dequantized (a merged model): the saved
		// checkpoint is no longer a bitsandbytes one.
		delete(out, QuantKey)
	}
	return out, firstErr
}

// floatField is a float-valued key with its current and saved values.
type floatField struct {
	key    string
	v, old float64
}

// setChanged writes the fields whose value changed; with zeroNull a zero
// is written as null (transformers' None).
func setChanged(set func(string, any), out map[string]json.RawMessage, fields []floatField, zeroNull bool) {
	for _, f := range fields {
		switch {
		case f.v == f.old:
		case f.v == 0 && zeroNull:
			out[f.key] = json.RawMessage("null")
		default:
			set(f.key, f.v)
		}
	}
}

// mergeGemma writes Gemma's changed attention and logit fields into out
// (a soft cap of 0 as null, transformers' None).
func (c *Config) mergeGemma(o *Config, set func(string, any), out map[string]json.RawMessage) {
	setChanged(set, out, []floatField{
		{"attn_logit_softcapping", c.AttnSoftCap, o.AttnSoftCap},
		{"final_logit_softcapping", c.FinalSoftCap, o.FinalSoftCap},
	}, true)
	setChanged(set, out, []floatField{
		{"query_pre_attn_scalar", c.QueryPreAttnScalar, o.QueryPreAttnScalar},
		{"rope_local_base_freq", c.RopeLocalTheta, o.RopeLocalTheta},
	}, false)
}

// pyFloats formats a list of numbers as json.dumps writes Python floats.
func pyFloats(v []float64) json.RawMessage {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = pyFloat(x)
	}
	return json.RawMessage("[" + strings.Join(parts, ",") + "]")
}

// markSaved records the current fields as the saved state.
func (c *Config) markSaved(raw map[string]json.RawMessage) {
	c.raw = raw
	c.orig = c.Clone()
	c.orig.raw = nil
}

// pyFloat formats a float64 the way Python's repr (and so json.dumps) does:
// the shortest round-tripping digits, exponent notation when the decimal
// exponent is below -4 or at least 16 (1e-05, 1e+16), and ".0" on integral
// values (10000.0).
func pyFloat(f float64) string {
	switch {
	case f != f:
		return "NaN"
	case f > 1.7976931348623157e308:
		return "Infinity"
	case f < -1.7976931348623157e308:
		return "-Infinity"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, exp, _ := strings.Cut(e, "e")
	x, _ := strconv.Atoi(exp)
	if x < -4 || x >= 16 {
		sign := "+"
		if x < 0 {
			sign, x = "-", -x
		}
		return fmt.Sprintf("%se%s%02d", mant, sign, x)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// writePyValue writes a decoded JSON value (json.Number for numbers) the
// way Python's json.dumps(indent=2, sort_keys=True) does: sorted keys, ": "
// and "," separators, two-space indentation, non-ASCII escaped as \uXXXX,
// floats in repr form.
func writePyValue(w *bytes.Buffer, v any, depth int) {
	indent := func(d int) {
		w.WriteByte('\n')
		for i := 0; i < d; i++ {
			w.WriteString("  ")
		}
	}
	switch x := v.(type) {
	case nil:
		w.WriteString("null")
	case bool:
		if x {
			w.WriteString("true")
		} else {
			w.WriteString("false")
		}
	case json.Number:
		s := x.String()
		if strings.ContainsAny(s, ".eE") {
			f, _ := strconv.ParseFloat(s, 64)
			s = pyFloat(f)
		}
		w.WriteString(s)
	case string:
		writePyString(w, x)
	case []any:
		if len(x) == 0 {
			w.WriteString("[]")
			return
		}
		w.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				w.WriteByte(',')
			}
			indent(depth + 1)
			writePyValue(w, e, depth+1)
		}
		indent(depth)
		w.WriteByte(']')
	case map[string]any:
		if len(x) == 0 {
			w.WriteString("{}")
			return
		}
		keys := sortedKeys(x) // UTF-8 byte order is Python's code point order
		w.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				w.WriteByte(',')
			}
			indent(depth + 1)
			writePyString(w, k)
			w.WriteString(": ")
			writePyValue(w, x[k], depth+1)
		}
		indent(depth)
		w.WriteByte('}')
	}
}

// writePyString writes s as json.dumps(ensure_ascii=True) does.
func writePyString(w *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	w.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			w.WriteString(`\"`)
		case '\\':
			w.WriteString(`\\`)
		case '\n':
			w.WriteString(`\n`)
		case '\r':
			w.WriteString(`\r`)
		case '\t':
			w.WriteString(`\t`)
		case '\b':
			w.WriteString(`\b`)
		case '\f':
			w.WriteString(`\f`)
		default:
			if r >= 0x20 && r < 0x80 {
				w.WriteRune(r)
				continue
			}
			units := []rune{r}
			if r > 0xffff {
				a, b := utf16.EncodeRune(r)
				units = []rune{a, b}
			}
			for _, u := range units {
				w.WriteString(`\u`)
				w.WriteByte(hex[u>>12&0xf])
				w.WriteByte(hex[u>>8&0xf])
				w.WriteByte(hex[u>>4&0xf])
				w.WriteByte(hex[u&0xf])
			}
		}
	}
	w.WriteByte('"')
}
