package ggufexport

import (
	"fmt"
	"strings"

	"github.com/gotune/gotune/engine/gguf"
	"github.com/gotune/gotune/engine/tokenizer"
)

// tokenType is llama.cpp's tokenizer.ggml.token_type value of a token.
type tokenType int32

// Token types as llama.cpp numbers them (llama_token_type).
const (
	tokenNormal      tokenType = 1
	tokenUnknown     tokenType = 2
	tokenControl     tokenType = 3
	tokenUserDefined tokenType = 4
	tokenUnused      tokenType = 5
	tokenByte        tokenType = 6
)

// Tokenizer models llama.cpp implements: SentencePiece-style BPE with
// scores ("llama") and byte-level BPE with merges ("gpt2").
const (
	modelSPM       = "llama"
	modelByteLevel = "gpt2"
)

// spmSpace is SentencePiece's visible space, which llama.cpp's "llama"
// tokenizer expects in tokens where llama2.c files store " ".
const spmSpace = "▁"

// vocab is a tokenizer laid out as llama.cpp's parallel arrays.
type vocab struct {
	model  string
	tokens []string
	scores []float32 // SentencePiece-style only
	types  []int32
	merges []string // byte-level only, "a b"
}

// vocabulary returns the tokenizer.* metadata for tok, padded to n tokens.
func vocabulary(arch string, tok tokenizer.Tokenizer, n int) ([]gguf.KV, error) {
	var v *vocab
	switch t := tok.(type) {
	case *tokenizer.Llama2C:
		v = llama2cVocab(t)
	case *tokenizer.HF:
		v = hfVocab(t)
	default:
		return nil, fmt.Errorf("ggufexport: tokenizer type %T has no GGUF mapping", tok)
	}
	v.pad(n)
	kvs := []gguf.KV{{Key: "tokenizer.ggml.model", Value: v.model}}
	if v.model == modelByteLevel {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.pre", Value: preTokenizer(arch)})
	}
	kvs = append(kvs,
		gguf.KV{Key: "tokenizer.ggml.tokens", Value: gguf.Strings(v.tokens)},
		gguf.KV{Key: "tokenizer.ggml.token_type", Value: gguf.Int32s(v.types)})
	if v.scores != nil {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.scores", Value: gguf.Float32s(v.scores)})
	}
	if v.merges != nil {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.merges", Value: gguf.Strings(v.merges)})
	}
	for _, id := range []struct {
		key string
		id  int
	}{{"bos_token_id", tok.BOS()}, {"eos_token_id", tok.EOS()}, {"padding_token_id", tok.PAD()}} {
		if id.id != tokenizer.NoToken {
			kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml." + id.key, Value: uint32(id.id)})
		}
	}
	if unk := unknownID(v); unk >= 0 {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(unk)})
	}
	addBOS, addEOS, err := addsSpecial(tok)
	if err != nil {
		return nil, err
	}
	kvs = append(kvs,
		gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: addBOS},
		gguf.KV{Key: "tokenizer.ggml.add_eos_token", Value: addEOS})
	if v.model == modelSPM {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.add_space_prefix", Value: true})
	}
	if tmpl := tok.ChatTemplate(); tmpl != "" {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.chat_template", Value: tmpl})
	}
	return kvs, nil
}

// preTokenizer names llama.cpp's pre-tokenizer (the regex that splits
// text before byte-level BPE) for the architecture's usual tokenizer:
// Qwen3 keeps Qwen2's tokenizer; OLMo-2's (cl100k) and the rest split as
// LLaMA-3 does.
func preTokenizer(arch string) string {
	switch arch {
	case "qwen2", "qwen3":
		return "qwen2"
	case "glm4":
		return "glm4"
	case "gpt2":
		return "gpt-2"
	}
	return "llama-bpe"
}

// addsSpecial reports whether encoding with special tokens adds BOS in
// front and EOS at the end.
func addsSpecial(tok tokenizer.Tokenizer) (bos, eos bool, err error) {
	ids, err := tok.Encode("a", true)
	if err != nil {
		return false, false, fmt.Errorf("ggufexport: tokenizer: %w", err)
	}
	bos = len(ids) > 0 && tok.BOS() != tokenizer.NoToken && ids[0] == tok.BOS()
	eos = len(ids) > 1 && tok.EOS() != tokenizer.NoToken && ids[len(ids)-1] == tok.EOS()
	return bos, eos, nil
}

func unknownID(v *vocab) int {
	for i, t := range v.types {
		if tokenType(t) == tokenUnknown {
			return i
		}
	}
	return -1
}

// pad extends the vocabulary to n entries with unused placeholder tokens,
// as llama.cpp's converter does: the embedding has a row per token.
func (v *vocab) pad(n int) {
	for i := len(v.tokens); i < n; i++ {
		v.tokens = append(v.tokens, fmt.Sprintf("[PAD%d]", i))
		v.types = append(v.types, int32(tokenUnused))
		if v.scores != nil {
			v.scores = append(v.scores, 0)
		}
	}
}

// isByteToken reports SentencePiece's byte tokens "<0xAB>".
func isByteToken(s string) bool {
	return len(s) == 6 && strings.HasPrefix(s, "<0x") && strings.HasSuffix(s, ">")
}

// llama2cVocab converts a llama2.c vocabulary: ids 0-2 are <unk>, BOS and
// EOS; spaces become "▁"; the merge scores are kept.
func llama2cVocab(t *tokenizer.Llama2C) *vocab {
	n := t.VocabSize()
	v := &vocab{model: modelSPM, tokens: make([]string, n), scores: make([]float32, n), types: make([]int32, n)}
	for id := 0; id < n; id++ {
		s, _ := t.IDToToken(id)
		typ := tokenNormal
		switch {
		case id == 0:
			typ = tokenUnknown
		case t.IsSpecial(id):
			typ = tokenControl
		case isByteToken(s):
			typ = tokenByte
		default:
			s = strings.ReplaceAll(s, " ", spmSpace)
		}
		v.tokens[id], v.scores[id], v.types[id] = s, t.Score(id), int32(typ)
	}
	return v
}

// hfVocab converts a tokenizer.json vocabulary. Byte-level BPE keeps its
// merge list; SentencePiece-style BPE becomes llama.cpp's score-driven
// merging, with each token scored by minus the rank of the merge that
// makes it (so the best-ranked merge wins, as in BPE) and tokens no merge
// makes below all of them.
func hfVocab(t *tokenizer.HF) *vocab {
	n := t.VocabSize()
	v := &vocab{model: modelByteLevel, tokens: make([]string, n), types: make([]int32, n)}
	merges := t.Merges()
	for id := 0; id < n; id++ {
		s, ok := t.IDToToken(id)
		typ := tokenNormal
		switch {
		case !ok:
			s, typ = fmt.Sprintf("[PAD%d]", id), tokenUnused
		case t.IsSpecial(id):
			typ = tokenControl
		case t.ByteFallback() && isByteToken(s):
			typ = tokenByte
		}
		v.tokens[id], v.types[id] = s, int32(typ)
	}
	if !t.ByteFallback() {
		v.merges = make([]string, len(merges))
		for i, m := range merges {
			v.merges[i] = m[0] + " " + m[1]
		}
		return v
	}
	v.model = modelSPM
	v.scores = make([]float32, n)
	for i := range v.scores {
		v.scores[i] = -float32(len(merges) + 1)
	}
	for rank := len(merges) - 1; rank >= 0; rank-- {
		if id, ok := t.TokenToID(merges[rank][0] + merges[rank][1]); ok {
			v.scores[id] = -float32(rank)
		}
	}
	return v
}
