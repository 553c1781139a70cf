package tokenizer

import (
	"encoding/json"
	"fmt"
	"github.com/gotune/gotune/engine/strictjson"
	"unicode"
	"unicode/utf8"
)

// hfConfig is what this package reads from tokenizer_config.json.
type hfConfig struct {
	// Special token names. present says the key was there, so that an
	// explicit null (Qwen2's bos_token) means "none" rather than "guess".
	bos, eos, pad, unk configToken
	addBOS, addEOS     *bool
	chatTemplate       string
}

type configToken struct {
	present bool
	name    string // "" for null
}

func parseHFConfig(data []byte) (*hfConfig, error) {
	if err := strictjson.CheckKeys(data); err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", jsonErrorContext(data, err))
	}
	c := &hfConfig{}
	var err error
	for key, dst := range map[string]*configToken{"bos_token": &c.bos, "eos_token": &c.eos, "pad_token": &c.pad, "unk_token": &c.unk} {
		raw, ok := m[key]
		if !ok {
			continue
		}
		if *dst, err = parseConfigToken(raw); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	for key, dst := range map[string]**bool{"add_bos_token": &c.addBOS, "add_eos_token": &c.addEOS} {
		raw, ok := m[key]
		if !ok || isNull(raw) {
			continue
		}
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, fmt.Errorf("%s: want true or false: %w", key, err)
		}
		*dst = &b
	}
	if raw, ok := m["chat_template"]; ok && !isNull(raw) {
		if c.chatTemplate, err = parseChatTemplate(raw); err != nil {
			return nil, fmt.Errorf("chat_template: %w", err)
		}
	}
	return c, nil
}

// parseConfigToken reads a token given as "<s>", as null, or as an
// AddedToken object {"content": "<s>", ...}.
func parseConfigToken(raw json.RawMessage) (configToken, error) {
	if isNull(raw) {
		return configToken{present: true}, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return configToken{present: true, name: s}, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
		return configToken{}, fmt.Errorf("want a string, null or an object with \"content\", got %s", raw)
	}
	return configToken{present: true, name: *obj.Content}, nil
}

// parseChatTemplate reads a template string, or a list of named templates
// from which it takes the one named "default" (else the first).
func parseChatTemplate(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var list []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return "", fmt.Errorf("want a string or a list of {name, template}: %w", err)
	}
	for _, e := range list {
		if e.Name == "default" {
			return e.Template, nil
		}
	}
	if len(list) > 0 {
		return list[0].Template, nil
	}
	return "", nil
}

// applyConfig settles BOS, EOS and PAD and what Encode adds. Without a
// tokenizer_config.json (or where it does not name them) BOS and EOS are
// taken from the post-processor's template, else from the usual token
// names. A pad_token that is not in the vocabulary (transformers would add
// it as a new token) leaves PAD at NoToken.
func (t *HF) applyConfig(cfg *hfConfig) error {
	if cfg == nil {
		cfg = &hfConfig{}
	}
	var err error
	if t.bos, err = t.resolve("bos_token", cfg.bos, t.addPrefix, "<s>", "<|begin_of_text|>", "<|endoftext|>"); err != nil {
		return err
	}
	if t.eos, err = t.resolve("eos_token", cfg.eos, t.addSuffix, "</s>", "<|end_of_text|>", "<|endoftext|>"); err != nil {
		return err
	}
	if cfg.pad.present && cfg.pad.name != "" {
		if id, ok := t.TokenToID(cfg.pad.name); ok {
			t.pad = id
		}
	}
	if cfg.unk.present && cfg.unk.name != "" {
		if id, ok := t.TokenToID(cfg.unk.name); ok {
			t.special[id] = true
		}
	}
	if t.unk != NoToken {
		t.special[t.unk] = true
	}
	for _, id := range []int{t.bos, t.eos, t.pad} {
		if id != NoToken {
			t.special[id] = true
		}
	}
	// add_bos_token / add_eos_token, where given, decide what Encode adds
	// (transformers' LlamaTokenizerFast rebuilds its post-processor from
	// them); a side they do not mention keeps the post-processor's choice.
	if cfg.addBOS != nil {
		t.addPrefix = nil
		if *cfg.addBOS {
			if t.bos == NoToken {
				return fmt.Errorf("tokenizer_config.json: add_bos_token is true but there is no bos_token")
			}
			t.addPrefix = []int{t.bos}
		}
	}
	if cfg.addEOS != nil {
		t.addSuffix = nil
		if *cfg.addEOS {
			if t.eos == NoToken {
				return fmt.Errorf("tokenizer_config.json: add_eos_token is true but there is no eos_token")
			}
			t.addSuffix = []int{t.eos}
		}
	}
	t.chatTemplate = cfg.chatTemplate
	return nil
}

// resolve finds a special token: named by the config, else the single id
// the post-processor adds on that side, else the first of the usual names
// that exists.
func (t *HF) resolve(key string, c configToken, template []int, names ...string) (int, error) {
	if c.present {
		if c.name == "" {
			return NoToken, nil
		}
		id, ok := t.TokenToID(c.name)
		if !ok {
			return NoToken, fmt.Errorf("tokenizer_config.json: %s %q is not in the vocabulary", key, c.name)
		}
		return id, nil
	}
	if len(template) == 1 {
		return template[0], nil
	}
	for _, n := range names {
		if id, ok := t.TokenToID(n); ok {
			return id, nil
		}
	}
	return NoToken, nil
}

// isSpaceRune is the whitespace test of lstrip and rstrip.
func isSpaceRune(r rune) bool { return unicode.IsSpace(r) }

// isWordRune is a character a single_word added token may not touch.
func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r)
}

func endsWithWordChar(s string) bool {
	r, w := utf8.DecodeLastRuneInString(s)
	return w > 0 && isWordRune(r)
}

func startsWithWordChar(s string) bool {
	for _, r := range s {
		return isWordRune(r)
	}
	return false
}
