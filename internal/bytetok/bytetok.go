// Package bytetok writes the smallest useful Hugging Face tokenizer: a
// byte-level BPE tokenizer.json with no merges, so every byte of the text
// is one token (ids 0-255 in byte order), followed by named special tokens.
// Any text encodes, decoding is exact, and the vocabulary is small enough
// for a model of a few megabytes; gotune's built-in demo model and many
// tests use one.
package bytetok

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	"github.com/gotune/gotune/engine/fsutil"
)

// Spec describes a tokenizer: its special tokens, in id order from 256,
// and which of them are BOS, EOS and PAD (each "" for none, else one of
// Specials).
type Spec struct {
	Specials      []string
	BOS, EOS, PAD string
	// ChatTemplate, if not empty, is written as tokenizer_config.json's
	// chat_template.
	ChatTemplate string
}

// byteChars returns GPT-2's byte-to-character table: printable Latin-1
// bytes stand for themselves, the others are shifted to U+0100 and up in
// byte order, so every byte has a visible, whitespace-free character.
func byteChars() [256]rune {
	var table [256]rune
	next := rune(256)
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			table[b] = rune(b)
		} else {
			table[b] = next
			next++
		}
	}
	return table
}

// TokenizerJSON returns the tokenizer.json of spec.
func TokenizerJSON(spec Spec) ([]byte, error) {
	vocab := map[string]int{}
	chars := byteChars()
	for b, r := range chars {
		vocab[string(r)] = b
	}
	type added struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	var addedTokens []added
	for i, s := range spec.Specials {
		if s == "" {
			return nil, fmt.Errorf("bytetok: special token %d is empty", i)
		}
		if _, dup := vocab[s]; dup {
			return nil, fmt.Errorf("bytetok: special token %q is already in the vocabulary", s)
		}
		vocab[s] = 256 + i
		addedTokens = append(addedTokens, added{ID: 256 + i, Content: s, Special: true})
	}
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
	f := map[string]any{
		"version":        "1.0",
		"truncation":     nil,
		"padding":        nil,
		"added_tokens":   addedTokens,
		"normalizer":     nil,
		"pre_tokenizer":  byteLevel,
		"post_processor": nil,
		"decoder":        byteLevel,
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": nil,
			"continuing_subword_prefix": nil, "end_of_word_suffix": nil,
			"fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
			"vocab": vocab, "merges": []string{},
		},
	}
	return json.MarshalIndent(f, "", " ")
}

// ConfigJSON returns the tokenizer_config.json of spec.
func ConfigJSON(spec Spec) ([]byte, error) {
	tok := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	for _, s := range []string{spec.BOS, spec.EOS, spec.PAD} {
		if s == "" {
			continue
		}
		found := false
		for _, x := range spec.Specials {
			found = found || x == s
		}
		if !found {
			return nil, fmt.Errorf("bytetok: %q is not one of the special tokens", s)
		}
	}
	c := map[string]any{
		"tokenizer_class": "PreTrainedTokenizerFast",
		"bos_token":       tok(spec.BOS),
		"eos_token":       tok(spec.EOS),
		"pad_token":       tok(spec.PAD),
		"add_bos_token":   false,
		"add_eos_token":   false,
	}
	if spec.ChatTemplate != "" {
		c["chat_template"] = spec.ChatTemplate
	}
	return json.MarshalIndent(c, "", " ")
}

// Write writes tokenizer.json and tokenizer_config.json of spec into dir
// (which must exist), atomically.
func Write(dir string, spec Spec) error {
	tj, err := TokenizerJSON(spec)
	if err != nil {
		return err
	}
	cj, err := ConfigJSON(spec)
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{"tokenizer.json": tj, "tokenizer_config.json": cj} {
		data := append(data, '\n')
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, name), 0o644, func(w io.Writer) error {
			_, err := w.Write(data)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}
