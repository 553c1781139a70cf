package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
)

// llama2.c's fixed special ids (they come from the SentencePiece model the
// vocabularies were exported from).
const (
	llama2cUNK = 0
	llama2cBOS = 1
	llama2cEOS = 2
)

// Llama2C is a llama2.c tokenizer.bin tokenizer: a SentencePiece BPE
// vocabulary exported with one merge score per token. Encoding follows
// llama2.c's run.c: optional BOS, a dummy-prefix space, each UTF-8
// character (at most 4 bytes) looked up as a token or else spelled with
// <0xAB> byte tokens, then repeated merging of the adjacent pair whose
// concatenation is a token with the highest score (leftmost on ties).
type Llama2C struct {
	path      string
	pieces    []string // as stored, e.g. " the", "\n<s>\n", "<0x0A>"
	scores    []float32
	maxLen    int
	lookup    map[string]int
	merges    pairTable
	byteIDs   [256]int32 // ids of "<0xAB>", -1 if absent
	byteOfID  map[int]byte
	spaceSyms []int32 // the dummy prefix " "
	// splitAtSpace: the text may be cut before every space that follows
	// another character, and each part encoded alone (see ParseLlama2C).
	splitAtSpace bool
	cache        *wordCache
}

var _ Tokenizer = (*Llama2C)(nil)

// llama2cNames are the readable names of the special ids; the file stores
// them as "<unk>", "\n<s>\n" and "\n</s>\n".
var llama2cNames = [3]string{"<unk>", "<s>", "</s>"}

// LoadLlama2C reads a llama2.c tokenizer.bin.
func LoadLlama2C(path string) (*Llama2C, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := ParseLlama2C(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	t.path = path
	return t, nil
}

// ParseLlama2C reads the bytes of a llama2.c tokenizer.bin: int32
// max_token_length, then until the end of the file, per token, float32
// score, int32 byte length and the bytes (all little-endian). The file does
// not store the vocabulary size; every entry up to the end is read.
func ParseLlama2C(data []byte) (*Llama2C, error) {
	if len(data) < 4 {
		return nil, fmt.Errorf("llama2.c tokenizer: file is %d bytes, too short for the header", len(data))
	}
	t := &Llama2C{maxLen: int(int32(binary.LittleEndian.Uint32(data))), lookup: map[string]int{}, byteOfID: map[int]byte{}}
	if t.maxLen <= 0 || t.maxLen > 1<<16 {
		return nil, fmt.Errorf("llama2.c tokenizer: max_token_length %d is implausible: not a llama2.c tokenizer.bin?", t.maxLen)
	}
	for off := 4; off < len(data); {
		id := len(t.pieces)
		if len(data)-off < 8 {
			return nil, fmt.Errorf("llama2.c tokenizer: token %d at byte %d: truncated header (%d bytes left)", id, off, len(data)-off)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int(int32(binary.LittleEndian.Uint32(data[off+4:])))
		off += 8
		if n < 0 || n > len(data)-off {
			return nil, fmt.Errorf("llama2.c tokenizer: token %d at byte %d: length %d does not fit in the %d bytes left", id, off-8, n, len(data)-off)
		}
		if n > t.maxLen {
			return nil, fmt.Errorf("llama2.c tokenizer: token %d at byte %d: length %d exceeds max_token_length %d", id, off-8, n, t.maxLen)
		}
		p := string(data[off : off+n])
		off += n
		t.pieces = append(t.pieces, p)
		t.scores = append(t.scores, score)
		if _, dup := t.lookup[p]; !dup {
			t.lookup[p] = id
		}
	}
	if len(t.pieces) <= llama2cEOS {
		return nil, fmt.Errorf("llama2.c tokenizer: only %d tokens; need at least <unk>, BOS and EOS", len(t.pieces))
	}
	for b := 0; b < 256; b++ {
		t.byteIDs[b] = -1
		if id, ok := t.lookup[fmt.Sprintf("<0x%02X>", b)]; ok {
			t.byteIDs[b] = int32(id)
			t.byteOfID[id] = byte(b)
		}
	}
	if id, ok := t.lookup[" "]; ok {
		t.spaceSyms = []int32{int32(id)}
	} else if t.byteIDs[' '] >= 0 {
		t.spaceSyms = []int32{t.byteIDs[' ']}
	}
	t.buildMerges()
	// When no token has a space after another character (SentencePiece
	// trains on whitespace-split text, so tokens only start with spaces),
	// no merge joins the two sides of such a boundary, and merging each
	// side alone gives the same tokens: it makes long texts cheap and lets
	// words be cached.
	// A part may also start with the byte token <0x20>, when a space is
	// followed by stray continuation bytes (run.c groups them with it).
	t.splitAtSpace = true
	for _, p := range t.pieces {
		if strings.Contains(strings.TrimLeft(p, " "), " ") || strings.Index(p, "<0x20>") > 0 {
			t.splitAtSpace = false
			break
		}
	}
	t.cache = newWordCache(1 << 16)
	return t, nil
}

// buildMerges precomputes every pair of tokens whose concatenation is a
// token, ranked by that token's score (equal scores share a rank, so ties
// go to the leftmost pair as in run.c). run.c starts its search at a best
// score of -1e10 and needs a strictly higher one, so tokens scoring -1e10
// or less (or NaN) never result from a merge.
func (t *Llama2C) buildMerges() {
	var distinct []float32
	seen := map[float32]bool{}
	for _, s := range t.scores {
		if s > -1e10 && !seen[s] {
			seen[s] = true
			distinct = append(distinct, s)
		}
	}
	sort.Slice(distinct, func(i, j int) bool { return distinct[i] > distinct[j] })
	rank := make(map[float32]int32, len(distinct))
	for i, s := range distinct {
		rank[s] = int32(i)
	}
	t.merges = pairTable{}
	for id, p := range t.pieces {
		if t.lookup[p] != id {
			continue // a duplicate string: lookups find the first
		}
		r, ok := rank[t.scores[id]]
		if !ok {
			continue
		}
		for k := 1; k < len(p); k++ {
			a, okA := t.lookup[p[:k]]
			b, okB := t.lookup[p[k:]]
			if okA && okB {
				t.merges[pairKey(int32(a), int32(b))] = merge{rank: r, id: int32(id)}
			}
		}
	}
}

// Encode implements Tokenizer. addSpecial adds BOS (llama2.c never adds
// EOS when encoding); the dummy-prefix space is added either way, as run.c
// does.
func (t *Llama2C) Encode(text string, addSpecial bool) ([]int, error) {
	if text != "" && t.spaceSyms == nil {
		return nil, fmt.Errorf("tokenizer: llama2.c vocabulary has no \" \" token for the dummy prefix")
	}
	if !t.splitAtSpace {
		var syms []int32
		if addSpecial {
			syms = append(syms, llama2cBOS)
		}
		return t.encodeWord(nil, syms, text, text != "")
	}
	var out []int
	if addSpecial {
		out = append(out, llama2cBOS)
	}
	var err error
	start, prefix := 0, text != ""
	for i := 1; i <= len(text); i++ {
		if i < len(text) && (text[i] != ' ' || text[i-1] == ' ') {
			continue
		}
		word := text[start:i]
		// The first part is not cached: its dummy prefix is a separate
		// symbol, while a space in the text groups with continuation bytes
		// after it, so " x" and dummy+"x" can encode differently.
		cacheable := len(word) <= maxCachedWord && !prefix
		if ids, ok := t.cache.get(word); cacheable && ok {
			out = append(out, ids...)
		} else {
			n := len(out)
			if out, err = t.encodeWord(out, nil, word, prefix); err != nil {
				return nil, err
			}
			if cacheable {
				t.cache.put(word, append([]int(nil), out[n:]...))
			}
		}
		start, prefix = i, false
	}
	return out, nil
}

// encodeWord merges the symbols syms, the dummy prefix if prefix is set,
// and the characters of text, appending the result to out.
func (t *Llama2C) encodeWord(out []int, syms []int32, text string, prefix bool) ([]int, error) {
	if prefix {
		syms = append(syms, t.spaceSyms...)
	}
	for i := 0; i < len(text); {
		// One UTF-8 character: a byte and the continuation bytes after it,
		// at most 4 bytes (run.c's grouping, also for invalid UTF-8).
		start := i
		i++
		for i < len(text) && text[i]&0xC0 == 0x80 && i-start < 4 {
			i++
		}
		if id, ok := t.lookup[text[start:i]]; ok {
			syms = append(syms, int32(id))
			continue
		}
		for k := start; k < i; k++ {
			id := t.byteIDs[text[k]]
			if id < 0 {
				return nil, fmt.Errorf("tokenizer: cannot encode byte 0x%02X: %w", text[k], errUnencodable)
			}
			syms = append(syms, id)
		}
	}
	return applyMerges(out, syms, t.merges), nil
}

// Decode implements Tokenizer: byte tokens become their bytes, and the
// piece after BOS loses its leading space (the dummy prefix).
func (t *Llama2C) Decode(ids []int) string { return t.decode(ids, true) }

// DecodeWithSpecial implements Tokenizer; special tokens are written as
// "<unk>", "<s>" and "</s>".
func (t *Llama2C) DecodeWithSpecial(ids []int) string { return t.decode(ids, false) }

func (t *Llama2C) decode(ids []int, skipSpecial bool) string {
	var b strings.Builder
	prev := -1
	for _, id := range ids {
		if id < 0 || id >= len(t.pieces) {
			continue
		}
		p := t.pieces[id]
		if id <= llama2cEOS {
			if !skipSpecial {
				b.WriteString(llama2cNames[id])
			}
			prev = id
			continue
		}
		if prev == llama2cBOS {
			p = strings.TrimPrefix(p, " ")
		}
		if bt, ok := t.byteOfID[id]; ok {
			b.WriteByte(bt)
		} else {
			b.WriteString(p)
		}
		prev = id
	}
	return b.String()
}

// VocabSize implements Tokenizer.
func (t *Llama2C) VocabSize() int { return len(t.pieces) }

// BOS implements Tokenizer.
func (t *Llama2C) BOS() int { return llama2cBOS }

// EOS implements Tokenizer.
func (t *Llama2C) EOS() int { return llama2cEOS }

// PAD implements Tokenizer: llama2.c has none.
func (t *Llama2C) PAD() int { return NoToken }

// TokenToID implements Tokenizer. The special tokens answer to "<unk>",
// "<s>" and "</s>" as well as to their stored strings.
func (t *Llama2C) TokenToID(tok string) (int, bool) {
	for id, n := range llama2cNames {
		if tok == n {
			return id, true
		}
	}
	id, ok := t.lookup[tok]
	return id, ok
}

// IDToToken implements Tokenizer; special ids give "<unk>", "<s>", "</s>".
func (t *Llama2C) IDToToken(id int) (string, bool) {
	if id < 0 || id >= len(t.pieces) {
		return "", false
	}
	if id <= llama2cEOS {
		return llama2cNames[id], true
	}
	return t.pieces[id], true
}

// IsSpecial implements Tokenizer: <unk>, BOS and EOS.
func (t *Llama2C) IsSpecial(id int) bool { return id >= 0 && id <= llama2cEOS && id < len(t.pieces) }

// ChatTemplate implements Tokenizer: llama2.c has none.
func (t *Llama2C) ChatTemplate() string { return "" }

// Score returns the merge score of a token (0 for an unknown id).
func (t *Llama2C) Score(id int) float32 {
	if id < 0 || id >= len(t.scores) {
		return 0
	}
	return t.scores[id]
}

// Path is the file the tokenizer was loaded from ("" when parsed from bytes).
func (t *Llama2C) Path() string { return t.path }
