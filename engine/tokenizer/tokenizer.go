// Package tokenizer turns text into token ids and back, with the tokenizer
// that ships with a model.
//
// Two file formats are read:
//
//   - Hugging Face tokenizer.json files whose model is BPE: byte-level BPE
//     (GPT-2, LLaMA-3, Qwen2) and SentencePiece-style BPE with byte fallback
//     (LLaMA-2, Mistral), with the normalizers, pre-tokenizers,
//     post-processors and decoders those files use, their added and special
//     tokens, and BOS/EOS/PAD and the chat template from a
//     tokenizer_config.json next to the file;
//   - llama2.c's tokenizer.bin (vocabulary with merge scores).
//
// Load picks the format from the path. Both formats are behind the
// Tokenizer interface, so dataset, training and generation code never needs
// to know which one a model uses.
package tokenizer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// NoToken is the id returned by BOS, EOS and PAD when the tokenizer has no
// such token (Qwen2 has no BOS, most models have no PAD).
const NoToken = -1

// Tokenizer encodes text to token ids and decodes ids back to text.
// Implementations are safe for concurrent use.
type Tokenizer interface {
	// Encode tokenizes text. Special tokens written in the text (for example
	// "<|im_start|>" or "</s>") are recognised as such where the format has
	// them (Hugging Face added tokens; llama2.c has none). addSpecial asks
	// for the tokens the model's own convention adds around a sequence:
	// the tokenizer.json post-processor (or add_bos_token/add_eos_token of
	// tokenizer_config.json when it sets them) and, for llama2.c, BOS.
	// It fails only when some character can be represented neither by the
	// vocabulary nor by byte fallback nor by an unknown token.
	Encode(text string, addSpecial bool) ([]int, error)
	// Decode turns ids back into text, leaving out special tokens (BOS,
	// EOS, PAD, <unk> and added tokens marked special), as Hugging Face's
	// decode(ids, skip_special_tokens=True) does. Ids outside the
	// vocabulary are skipped. Bytes are returned as they are, so a
	// sequence cut in the middle of a multi-byte character gives invalid
	// UTF-8 rather than U+FFFD; to stream generated text, decode the whole
	// sequence so far and print what was added, because some decoders strip
	// a leading space from the first token.
	Decode(ids []int) string
	// DecodeWithSpecial is Decode keeping special tokens, written as their
	// token strings (for example "<s>" or "<|im_end|>").
	DecodeWithSpecial(ids []int) string
	// VocabSize is one more than the largest token id, counting added
	// tokens: the number of rows the embedding matrix needs at least.
	VocabSize() int
	// BOS is the beginning-of-sequence id, or NoToken.
	BOS() int
	// EOS is the end-of-sequence id (generation stops at it), or NoToken.
	EOS() int
	// PAD is the padding id, or NoToken.
	PAD() int
	// TokenToID looks up a token by its string form as stored in the
	// vocabulary (for example "<|im_end|>", "<s>", "▁the" or "Ġthe").
	TokenToID(token string) (int, bool)
	// IDToToken returns the string form of an id, as TokenToID takes it.
	IDToToken(id int) (string, bool)
	// IsSpecial reports whether Decode leaves the id out.
	IsSpecial(id int) bool
	// ChatTemplate is the Jinja chat template from tokenizer_config.json,
	// or "" when there is none.
	ChatTemplate() string
}

// Load reads a tokenizer from path, which may be
//   - a model folder holding tokenizer.json (with tokenizer_config.json
//     beside it, optional), or else tokenizer.bin, or else a single tok*.bin
//     (llama2.c);
//   - a tokenizer.json file (tokenizer_config.json is looked for next to it);
//   - a tokenizer_config.json file (tokenizer.json must be next to it);
//   - any other file, read as a llama2.c tokenizer.bin.
func Load(path string) (Tokenizer, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if info.IsDir() {
		return loadDir(path)
	}
	base := filepath.Base(path)
	switch {
	case base == "tokenizer_config.json":
		return LoadHF(filepath.Join(filepath.Dir(path), "tokenizer.json"))
	case strings.HasSuffix(strings.ToLower(base), ".json"):
		return LoadHF(path)
	case strings.HasSuffix(strings.ToLower(base), ".model"):
		return nil, fmt.Errorf("tokenizer: %s: SentencePiece .model files are not read directly; use the model's tokenizer.json (transformers' LlamaTokenizerFast writes one)", path)
	}
	return LoadLlama2C(path)
}

func loadDir(dir string) (Tokenizer, error) {
	if p := filepath.Join(dir, "tokenizer.json"); fileExists(p) {
		return LoadHF(p)
	}
	if p := filepath.Join(dir, "tokenizer.bin"); fileExists(p) {
		return LoadLlama2C(p)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "tok*.bin"))
	sort.Strings(matches)
	switch len(matches) {
	case 1:
		return LoadLlama2C(matches[0])
	case 0:
	default:
		return nil, fmt.Errorf("tokenizer: %s holds several llama2.c tokenizers (%s): pass the file itself", dir, strings.Join(baseNames(matches), ", "))
	}
	if fileExists(filepath.Join(dir, "tokenizer.model")) {
		return nil, fmt.Errorf("tokenizer: %s has only a SentencePiece tokenizer.model, which is not read directly; add the model's tokenizer.json", dir)
	}
	return nil, fmt.Errorf("tokenizer: %s has no tokenizer.json, tokenizer.bin or tok*.bin", dir)
}

func fileExists(p string) bool {
	info, err := os.Stat(p)
	return err == nil && !info.IsDir()
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

// errUnencodable is wrapped by Encode errors for characters the vocabulary
// cannot represent.
var errUnencodable = errors.New("character not in the vocabulary, and the tokenizer has neither byte fallback nor an unknown token")
