package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gotune/gotune/engine/strictjson"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"
)

// HF is a Hugging Face tokenizer.json tokenizer with a BPE model. It
// follows the tokenizers library's encode path: split off added tokens,
// normalize, split off normalized added tokens, pre-tokenize, run BPE on
// each word, then let the post-processor add special tokens.
type HF struct {
	path string

	vocab   map[string]int // the BPE model's vocabulary
	added   map[string]int // added tokens (they win in TokenToID)
	idToTok []string
	hasID   []bool

	merges       pairTable
	unk          int
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	prefix       string     // continuing_subword_prefix
	suffix       string     // end_of_word_suffix
	fallbackIDs  [256]int32 // ids of the "<0xAB>" tokens, -1 if absent
	byteIDs      [256]int32 // ids of the byte-level characters, -1 if absent
	// splitAtSpace: words may be cut before every "▁" that follows another
	// character without changing the result (see buildVocab).
	splitAtSpace bool

	rawAdded  *addedMatcher // added tokens matched on the raw text
	normAdded *addedMatcher // added tokens matched after normalization
	special   map[int]bool

	normalizer normalizer
	pre        preTokenizer
	decoder    decoder
	addPrefix  []int // added before the sequence by Encode(..., true)
	addSuffix  []int // added after it

	bos, eos, pad int
	chatTemplate  string

	cache     *wordCache // plain words
	byteCache *wordCache // byte-level words, keyed by their raw text
}

var _ Tokenizer = (*HF)(nil)

// hfFile is the part of tokenizer.json this package reads; truncation and
// padding settings are for batching and are ignored.
type hfFile struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	Model         json.RawMessage `json:"model"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
}

type addedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type bpeJSON struct {
	Type                    string          `json:"type"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Vocab                   map[string]int  `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
}

// LoadHF reads a Hugging Face tokenizer.json and, when present beside it,
// tokenizer_config.json (BOS, EOS, PAD, add_bos_token, add_eos_token and
// chat_template).
func LoadHF(path string) (*HF, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var cfg *hfConfig
	cfgPath := filepath.Join(filepath.Dir(path), "tokenizer_config.json")
	if cfgData, err := os.ReadFile(cfgPath); err == nil {
		if cfg, err = parseHFConfig(cfgData); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", cfgPath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := parseHF(data, cfg)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	t.path = path
	return t, nil
}

// ParseHF builds a tokenizer from the bytes of a tokenizer.json and the
// optional bytes of a tokenizer_config.json (nil when there is none).
func ParseHF(tokenizerJSON, configJSON []byte) (*HF, error) {
	var cfg *hfConfig
	if configJSON != nil {
		var err error
		if cfg, err = parseHFConfig(configJSON); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
	}
	return parseHF(tokenizerJSON, cfg)
}

func parseHF(data []byte, cfg *hfConfig) (*HF, error) {
	if err := strictjson.CheckKeys(data); err != nil {
		return nil, err
	}
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("malformed JSON: %w", jsonErrorContext(data, err))
	}
	if isNull(f.Model) {
		return nil, fmt.Errorf("no \"model\" object")
	}
	var kind struct {
		Type   string          `json:"type"`
		Merges json.RawMessage `json:"merges"`
	}
	if err := json.Unmarshal(f.Model, &kind); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if kind.Type == "" && kind.Merges == nil {
		// Old files omit the type; only a vocab with merges is BPE.
		return nil, fmt.Errorf("model has no \"type\" and no \"merges\": only BPE models are supported")
	}
	if kind.Type != "" && kind.Type != "BPE" {
		return nil, fmt.Errorf("unsupported tokenizer model %s (only BPE is supported)", kind.Type)
	}
	var m bpeJSON
	if err := json.Unmarshal(f.Model, &m); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	t := &HF{unk: NoToken, bos: NoToken, eos: NoToken, pad: NoToken, special: map[int]bool{},
		cache: newWordCache(1 << 16), byteCache: newWordCache(1 << 16)}
	if err := t.buildVocab(&m, f.AddedTokens); err != nil {
		return nil, err
	}
	if err := t.buildMerges(m.Merges); err != nil {
		return nil, err
	}
	var err error
	if t.normalizer, err = parseNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	if t.pre, err = parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, err
	}
	if t.decoder, err = parseDecoder(f.Decoder); err != nil {
		return nil, err
	}
	if t.addPrefix, t.addSuffix, err = t.parsePostProcessor(f.PostProcessor); err != nil {
		return nil, err
	}
	if err := t.applyConfig(cfg); err != nil {
		return nil, err
	}
	return t, nil
}

// jsonErrorContext adds the line and column to a JSON syntax error.
func jsonErrorContext(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(data[:se.Offset], []byte("\n"))
		col := int(se.Offset) - bytes.LastIndexByte(data[:se.Offset], '\n')
		return fmt.Errorf("line %d, column %d: %w", line, col, err)
	}
	return err
}

// maxIDSpread bounds a tokenizer's largest id by this many times the
// number of tokens it defines (a few unused ids are fine; a table a
// thousand times the vocabulary is damage or an attack).
const maxIDSpread = 2

func (t *HF) buildVocab(m *bpeJSON, added []addedToken) error {
	if m.Vocab == nil {
		return fmt.Errorf("model: no \"vocab\"")
	}
	t.vocab = make(map[string]int, len(m.Vocab))
	t.added = make(map[string]int, len(added))
	size := 0
	for tok, id := range m.Vocab {
		if id < 0 {
			return fmt.Errorf("model.vocab: token %q has negative id %d", tok, id)
		}
		t.vocab[tok] = id
		size = max(size, id+1)
	}
	for i, a := range added {
		if a.ID < 0 {
			return fmt.Errorf("added_tokens[%d] %q: negative id %d", i, a.Content, a.ID)
		}
		if a.Content == "" {
			return fmt.Errorf("added_tokens[%d] (id %d): empty content", i, a.ID)
		}
		size = max(size, a.ID+1)
	}
	// Ids index a table, so a hostile id (1e9) must not size it: real
	// tokenizers number their tokens densely from 0.
	if entries := len(m.Vocab) + len(added); size > maxIDSpread*entries {
		return fmt.Errorf("model.vocab and added_tokens define %d tokens but use ids up to %d; ids must stay below %d (damaged file?)", entries, size-1, maxIDSpread*entries)
	}
	t.idToTok = make([]string, size)
	t.hasID = make([]bool, size)
	for tok, id := range m.Vocab {
		// Two strings for one id: keep the smaller, so the choice does not
		// depend on map order.
		if !t.hasID[id] || tok < t.idToTok[id] {
			t.idToTok[id] = tok
		}
		t.hasID[id] = true
	}
	var raw, norm []addedToken
	for _, a := range added {
		t.added[a.Content] = a.ID
		t.idToTok[a.ID] = a.Content
		t.hasID[a.ID] = true
		if a.Special {
			t.special[a.ID] = true
		}
		if a.Normalized {
			norm = append(norm, a)
		} else {
			raw = append(raw, a)
		}
	}
	t.rawAdded = newAddedMatcher(raw)
	t.normAdded = newAddedMatcher(norm)

	if m.UnkToken != nil {
		id, ok := m.Vocab[*m.UnkToken]
		if !ok {
			return fmt.Errorf("model.unk_token %q is not in model.vocab", *m.UnkToken)
		}
		t.unk = id
	}
	t.fuseUnk = m.FuseUnk
	t.byteFallback = m.ByteFallback
	t.ignoreMerges = m.IgnoreMerges
	if m.ContinuingSubwordPrefix != nil {
		t.prefix = *m.ContinuingSubwordPrefix
	}
	if m.EndOfWordSuffix != nil {
		t.suffix = *m.EndOfWordSuffix
	}
	// SentencePiece-style files have no pre-tokenizer, so a whole line is
	// one BPE word and the word cache is useless. But when no token holds
	// "▁" after another character (SentencePiece splits its training text at
	// whitespace, so only runs like "▁▁▁" do), no merge can join the two
	// sides of such a boundary, and BPE on each side alone gives the same
	// result: merges on one side never create or remove candidates on the
	// other, and each side sees its own merges in the same order.
	if _, ok := m.Vocab["▁"]; ok && t.prefix == "" && t.suffix == "" && !t.ignoreMerges {
		t.splitAtSpace = true
		for tok := range t.vocab {
			if strings.Contains(strings.TrimLeft(tok, "▁"), "▁") {
				t.splitAtSpace = false
				break
			}
		}
	}
	for b := 0; b < 256; b++ {
		t.fallbackIDs[b], t.byteIDs[b] = -1, -1
		if id, ok := m.Vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			t.fallbackIDs[b] = int32(id)
		}
		if id, ok := m.Vocab[byteToStr[b]]; ok {
			t.byteIDs[b] = int32(id)
		}
	}
	return nil
}

// buildMerges reads the merge list, in either of its two spellings:
// ["a b", ...] (older files) or [["a", "b"], ...] (newer ones, which allow
// spaces inside tokens). Rank is position in the list.
func (t *HF) buildMerges(raw json.RawMessage) error {
	if isNull(raw) {
		return fmt.Errorf("model.merges is missing: a BPE model needs its merge list")
	}
	var pairs [][2]string
	var asStrings []string
	if err := json.Unmarshal(raw, &asStrings); err == nil {
		pairs = make([][2]string, len(asStrings))
		for i, s := range asStrings {
			a, b, ok := strings.Cut(s, " ")
			if !ok || strings.Contains(b, " ") {
				return fmt.Errorf("model.merges[%d] %q: want two tokens separated by one space", i, s)
			}
			pairs[i] = [2]string{a, b}
		}
	} else {
		var asPairs [][]string
		if err2 := json.Unmarshal(raw, &asPairs); err2 != nil {
			return fmt.Errorf("model.merges: want a list of \"a b\" strings or of [a, b] pairs: %w", err)
		}
		pairs = make([][2]string, len(asPairs))
		for i, p := range asPairs {
			if len(p) != 2 {
				return fmt.Errorf("model.merges[%d]: want 2 tokens, got %d", i, len(p))
			}
			pairs[i] = [2]string{p[0], p[1]}
		}
	}
	t.merges = make(pairTable, len(pairs))
	for i, p := range pairs {
		a, ok := t.vocab[p[0]]
		if !ok {
			return fmt.Errorf("model.merges[%d] (%q, %q): %q is not in the vocabulary", i, p[0], p[1], p[0])
		}
		b, ok := t.vocab[p[1]]
		if !ok {
			return fmt.Errorf("model.merges[%d] (%q, %q): %q is not in the vocabulary", i, p[0], p[1], p[1])
		}
		joined := p[0] + strings.TrimPrefix(p[1], t.prefix)
		id, ok := t.vocab[joined]
		if !ok {
			return fmt.Errorf("model.merges[%d] (%q, %q): the merged token %q is not in the vocabulary", i, p[0], p[1], joined)
		}
		k := pairKey(int32(a), int32(b))
		if _, dup := t.merges[k]; !dup { // the first (best) rank wins
			t.merges[k] = merge{rank: int32(i), id: int32(id)}
		}
	}
	return nil
}

// parsePostProcessor returns the ids that add_special_tokens puts before
// and after a single sequence.
func (t *HF) parsePostProcessor(raw json.RawMessage) (pre, post []int, err error) {
	if isNull(raw) {
		return nil, nil, nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, nil, fmt.Errorf("post_processor: %w", err)
	}
	switch c.Type {
	case "ByteLevel":
		return nil, nil, nil // only adjusts offsets
	case "Sequence":
		var v struct {
			Processors []json.RawMessage `json:"processors"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, nil, fmt.Errorf("post_processor Sequence: %w", err)
		}
		for i, r := range v.Processors {
			p, s, err := t.parsePostProcessor(r)
			if err != nil {
				return nil, nil, fmt.Errorf("post_processor Sequence[%d]: %w", i, err)
			}
			pre = append(append([]int{}, p...), pre...)
			post = append(post, s...)
		}
		return pre, post, nil
	case "TemplateProcessing":
		var v struct {
			Single []struct {
				SpecialToken *struct {
					ID string `json:"id"`
				} `json:"SpecialToken"`
				Sequence *struct {
					ID string `json:"id"`
				} `json:"Sequence"`
			} `json:"single"`
			SpecialTokens map[string]struct {
				IDs []int `json:"ids"`
			} `json:"special_tokens"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, nil, fmt.Errorf("post_processor TemplateProcessing: %w", err)
		}
		seen := false
		for i, item := range v.Single {
			switch {
			case item.Sequence != nil:
				if seen {
					return nil, nil, fmt.Errorf("post_processor TemplateProcessing: single[%d]: the sequence appears twice", i)
				}
				seen = true
			case item.SpecialToken != nil:
				st, ok := v.SpecialTokens[item.SpecialToken.ID]
				if !ok {
					return nil, nil, fmt.Errorf("post_processor TemplateProcessing: single[%d]: special token %q is not in special_tokens", i, item.SpecialToken.ID)
				}
				for _, id := range st.IDs {
					if id < 0 || id >= len(t.hasID) || !t.hasID[id] {
						return nil, nil, fmt.Errorf("post_processor TemplateProcessing: special token %q: id %d is not in the vocabulary", item.SpecialToken.ID, id)
					}
				}
				if seen {
					post = append(post, st.IDs...)
				} else {
					pre = append(pre, st.IDs...)
				}
			default:
				return nil, nil, fmt.Errorf("post_processor TemplateProcessing: single[%d]: neither SpecialToken nor Sequence", i)
			}
		}
		if !seen {
			return nil, nil, fmt.Errorf("post_processor TemplateProcessing: single has no sequence ($A)")
		}
		return pre, post, nil
	case "RobertaProcessing", "BertProcessing":
		var v struct {
			Sep []json.RawMessage `json:"sep"`
			Cls []json.RawMessage `json:"cls"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, nil, fmt.Errorf("post_processor %s: %w", c.Type, err)
		}
		cls, err1 := t.tokenIDPair("cls", v.Cls)
		sep, err2 := t.tokenIDPair("sep", v.Sep)
		if err := errors.Join(err1, err2); err != nil {
			return nil, nil, fmt.Errorf("post_processor %s: %w", c.Type, err)
		}
		return []int{cls}, []int{sep}, nil
	}
	return nil, nil, fmt.Errorf("unsupported post_processor %q", c.Type)
}

// tokenIDPair reads the ["<s>", 0] form of RobertaProcessing.
func (t *HF) tokenIDPair(name string, v []json.RawMessage) (int, error) {
	var id int
	if len(v) != 2 || json.Unmarshal(v[1], &id) != nil {
		return 0, fmt.Errorf("%s: want [token, id]", name)
	}
	if id < 0 || id >= len(t.hasID) || !t.hasID[id] {
		return 0, fmt.Errorf("%s: id %d is not in the vocabulary", name, id)
	}
	return id, nil
}

// Encode implements Tokenizer.
func (t *HF) Encode(text string, addSpecial bool) ([]int, error) {
	ids := make([]int, 0, len(text)/3+4)
	if addSpecial {
		ids = append(ids, t.addPrefix...)
	}
	var err error
	for _, seg := range t.rawAdded.split(text) {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		s := seg.text
		if t.normalizer != nil {
			if s, err = t.normalizer(s); err != nil {
				return nil, err
			}
		}
		for _, sub := range t.normAdded.split(s) {
			if sub.id >= 0 {
				ids = append(ids, sub.id)
				continue
			}
			pieces := []piece{{text: sub.text, atStart: seg.start == 0 && sub.start == 0}}
			if t.pre != nil {
				if pieces, err = t.pre(pieces); err != nil {
					return nil, err
				}
			}
			for _, p := range pieces {
				if t.splitAtSpace && !p.byteLevel {
					ids, err = t.encodeAtSpaces(ids, p.text)
				} else {
					ids, err = t.encodeWord(ids, p)
				}
				if err != nil {
					return nil, err
				}
			}
		}
	}
	if addSpecial {
		ids = append(ids, t.addSuffix...)
	}
	return ids, nil
}

// encodeAtSpaces encodes s as words cut before each "▁" that follows
// another character (valid when splitAtSpace is set).
func (t *HF) encodeAtSpaces(out []int, s string) ([]int, error) {
	var err error
	start := 0
	for i := 1; i < len(s); i++ {
		if strings.HasPrefix(s[i:], "▁") && !strings.HasSuffix(s[:i], "▁") {
			if out, err = t.encodeWord(out, piece{text: s[start:i]}); err != nil {
				return out, err
			}
			start = i
		}
	}
	return t.encodeWord(out, piece{text: s[start:]})
}

// encodeWord appends the BPE encoding of one pre-tokenized word.
func (t *HF) encodeWord(out []int, p piece) ([]int, error) {
	if p.text == "" {
		return out, nil
	}
	cache := t.cache
	if p.byteLevel {
		cache = t.byteCache
	}
	cacheable := len(p.text) <= maxCachedWord
	if cacheable {
		if ids, ok := cache.get(p.text); ok {
			return append(out, ids...), nil
		}
	}
	start := len(out)
	var err error
	out, err = t.bpeWord(out, p)
	if err != nil {
		return out[:start], err
	}
	if cacheable {
		cache.put(p.text, append([]int(nil), out[start:]...))
	}
	return out, nil
}

func (t *HF) bpeWord(out []int, p piece) ([]int, error) {
	// Fast path: byte-level text whose bytes all have tokens.
	if p.byteLevel && t.prefix == "" && t.suffix == "" {
		syms := make([]int32, 0, len(p.text))
		for i := 0; i < len(p.text); i++ {
			id := t.byteIDs[p.text[i]]
			if id < 0 {
				syms = nil
				break
			}
			syms = append(syms, id)
		}
		if syms != nil {
			if t.ignoreMerges && len(syms) > 1 {
				if id, ok := t.vocab[byteLevelEncode(p.text)]; ok {
					return append(out, id), nil
				}
			}
			return applyMerges(out, syms, t.merges), nil
		}
	}
	text := p.materialize().text
	if t.ignoreMerges {
		if id, ok := t.vocab[text]; ok {
			return append(out, id), nil
		}
	}
	syms := make([]int32, 0, len(text))
	pendingUnk := false
	for i := 0; i < len(text); {
		_, w := utf8.DecodeRuneInString(text[i:])
		ch := text[i : i+w]
		s := ch
		if i > 0 && t.prefix != "" {
			s = t.prefix + s
		}
		if i+w == len(text) && t.suffix != "" {
			s += t.suffix
		}
		i += w
		if id, ok := t.vocab[s]; ok {
			if pendingUnk {
				syms, pendingUnk = append(syms, int32(t.unk)), false
			}
			syms = append(syms, int32(id))
			continue
		}
		if t.byteFallback {
			all := true
			for k := 0; k < len(ch); k++ {
				all = all && t.fallbackIDs[ch[k]] >= 0
			}
			if all {
				for k := 0; k < len(ch); k++ {
					syms = append(syms, t.fallbackIDs[ch[k]])
				}
				continue
			}
		}
		if t.unk == NoToken {
			return out, fmt.Errorf("tokenizer: cannot encode %q: %w", ch, errUnencodable)
		}
		if pendingUnk && !t.fuseUnk {
			syms = append(syms, int32(t.unk))
		}
		pendingUnk = true
	}
	if pendingUnk {
		syms = append(syms, int32(t.unk))
	}
	return applyMerges(out, syms, t.merges), nil
}

// Decode implements Tokenizer.
func (t *HF) Decode(ids []int) string { return t.decode(ids, true) }

// DecodeWithSpecial implements Tokenizer.
func (t *HF) DecodeWithSpecial(ids []int) string { return t.decode(ids, false) }

func (t *HF) decode(ids []int, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(t.idToTok) || !t.hasID[id] {
			continue
		}
		if skipSpecial && t.special[id] {
			continue
		}
		toks = append(toks, t.idToTok[id])
	}
	if t.decoder == nil {
		return strings.Join(toks, " ") // what Hugging Face does without a decoder
	}
	return strings.Join(t.decoder(toks), "")
}

// VocabSize implements Tokenizer.
func (t *HF) VocabSize() int { return len(t.idToTok) }

// BOS implements Tokenizer.
func (t *HF) BOS() int { return t.bos }

// EOS implements Tokenizer.
func (t *HF) EOS() int { return t.eos }

// PAD implements Tokenizer.
func (t *HF) PAD() int { return t.pad }

// TokenToID implements Tokenizer.
func (t *HF) TokenToID(tok string) (int, bool) {
	if id, ok := t.added[tok]; ok {
		return id, true
	}
	id, ok := t.vocab[tok]
	return id, ok
}

// IDToToken implements Tokenizer.
func (t *HF) IDToToken(id int) (string, bool) {
	if id < 0 || id >= len(t.idToTok) || !t.hasID[id] {
		return "", false
	}
	return t.idToTok[id], true
}

// IsSpecial implements Tokenizer.
func (t *HF) IsSpecial(id int) bool { return t.special[id] }

// ChatTemplate implements Tokenizer.
func (t *HF) ChatTemplate() string { return t.chatTemplate }

// Merges returns the BPE merge list in rank order, each merge as its two
// tokens (a repeated merge once, at its first rank).
func (t *HF) Merges() [][2]string {
	type ranked struct {
		rank int32
		pair [2]string
	}
	all := make([]ranked, 0, len(t.merges))
	for k, m := range t.merges {
		all = append(all, ranked{m.rank, [2]string{t.idToTok[int32(k>>32)], t.idToTok[int32(uint32(k))]}})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].rank < all[j].rank })
	out := make([][2]string, len(all))
	for i, r := range all {
		out[i] = r.pair
	}
	return out
}

// ByteFallback reports a SentencePiece-style vocabulary that spells
// unknown bytes with "<0xAB>" tokens, as opposed to a byte-level one
// (GPT-2, LLaMA-3, Qwen2) whose characters stand for bytes.
func (t *HF) ByteFallback() bool { return t.byteFallback }

// Path is the tokenizer.json the tokenizer was loaded from ("" when it was
// parsed from bytes).
func (t *HF) Path() string { return t.path }

// ---- added tokens ----

// segment is a stretch of text that is either plain (id < 0) or one added
// token; start is its byte offset in the text that was split.
type segment struct {
	text  string
	id    int
	start int
}

// addedMatcher finds added tokens in text, leftmost first and longest at a
// position, as Hugging Face's Aho-Corasick matcher does.
type addedMatcher struct {
	byFirst [256][]addedToken // by first byte, longest first
	empty   bool
}

func newAddedMatcher(toks []addedToken) *addedMatcher {
	m := &addedMatcher{empty: len(toks) == 0}
	for _, a := range toks {
		m.byFirst[a.Content[0]] = append(m.byFirst[a.Content[0]], a)
	}
	for _, l := range m.byFirst {
		sort.SliceStable(l, func(i, j int) bool { return len(l[i].Content) > len(l[j].Content) })
	}
	return m
}

// split cuts s into plain segments and added tokens. A token that must be a
// single word but touches a word character is left as text; lstrip and
// rstrip tokens swallow the whitespace beside them.
func (m *addedMatcher) split(s string) []segment {
	if m.empty {
		return []segment{{text: s, id: -1}}
	}
	var out []segment
	plainStart := 0
	for i := 0; i < len(s); {
		cands := m.byFirst[s[i]]
		var hit *addedToken
		for k := range cands {
			if strings.HasPrefix(s[i:], cands[k].Content) {
				hit = &cands[k]
				break
			}
		}
		if hit == nil {
			i++
			continue
		}
		end := i + len(hit.Content)
		if hit.SingleWord && (endsWithWordChar(s[:i]) || startsWithWordChar(s[end:])) {
			i = end // Hugging Face drops the match without looking inside it
			continue
		}
		start := i
		if hit.LStrip {
			for start > plainStart {
				r, w := utf8.DecodeLastRuneInString(s[plainStart:start])
				if !isSpaceRune(r) {
					break
				}
				start -= w
			}
		}
		if hit.RStrip {
			for end < len(s) {
				r, w := utf8.DecodeRuneInString(s[end:])
				if !isSpaceRune(r) {
					break
				}
				end += w
			}
		}
		if start > plainStart {
			out = append(out, segment{text: s[plainStart:start], id: -1, start: plainStart})
		}
		out = append(out, segment{text: s[start:end], id: hit.ID, start: start})
		plainStart, i = end, end
	}
	if plainStart < len(s) {
		out = append(out, segment{text: s[plainStart:], id: -1, start: plainStart})
	}
	return out
}
