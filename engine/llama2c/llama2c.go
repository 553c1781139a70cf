// Package llama2c loads checkpoints in the legacy format of Andrej
// Karpathy's llama2.c (the .bin files of the tinyllamas models) as
// gotune LLaMA models, usable for generation and training like any other.
//
// The format is a header of seven little-endian int32s — dim, hidden_dim,
// n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative
// vocab_size means the classifier is not shared with the token embedding
// — followed by float32 tensors, row-major, in this order:
//
//	tok_embeddings [vocab, dim]
//	rms_att        [layers, dim]
//	wq             [layers, dim, dim]
//	wk, wv         [layers, kv_dim, dim] each
//	wo             [layers, dim, dim]
//	rms_ffn        [layers, dim]
//	w1             [layers, hidden, dim]   (gate)
//	w2             [layers, dim, hidden]   (down)
//	w3             [layers, hidden, dim]   (up)
//	rms_final      [dim]
//	freq_cis_real, freq_cis_imag [seq_len, head_size/2] each (ignored)
//	wcls           [vocab, dim]            (only when not shared)
//
// llama2.c rotates the interleaved pairs (2i, 2i+1) of each head with
// RoPE (theta 10000) and normalises with RMSNorm eps 1e-5; the model is
// built with engine.RopeInterleaved so the weights are used as stored.
// Saving it (model.Save) writes an equivalent Hugging Face checkpoint.
package llama2c

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
)

// headerBytes is the size of the legacy header.
const headerBytes = 7 * 4

// magic starts the versioned exports (llama2.c export.py version >= 1):
// "ak42" read as a little-endian uint32.
const magic = 0x616b3432

// Header is a checkpoint's geometry.
type Header struct {
	Dim, Hidden, Layers, Heads, KVHeads, Vocab, SeqLen int
	// Shared says the classifier is the token embedding (a positive
	// vocab_size in the file).
	Shared bool
}

// HeadSize returns Dim / Heads.
func (h Header) HeadSize() int { return h.Dim / h.Heads }

// Array is one array of a legacy checkpoint body: its llama2.c name and
// shape (per-layer arrays are stacked, [n_layers, ...]).
type Array struct {
	Name  string
	Shape []int
}

// Arrays lists the body's arrays in file order.
func (h Header) Arrays() []Array {
	dim, hid, L, V := h.Dim, h.Hidden, h.Layers, h.Vocab
	kvd := h.KVHeads * h.HeadSize()
	out := []Array{
		{"tok_embeddings", []int{V, dim}}, {"rms_att", []int{L, dim}},
		{"wq", []int{L, dim, dim}}, {"wk", []int{L, kvd, dim}}, {"wv", []int{L, kvd, dim}}, {"wo", []int{L, dim, dim}},
		{"rms_ffn", []int{L, dim}}, {"w1", []int{L, hid, dim}}, {"w2", []int{L, dim, hid}}, {"w3", []int{L, hid, dim}},
		{"rms_final", []int{dim}}, {"freq_cis_real", []int{h.SeqLen, h.HeadSize() / 2}}, {"freq_cis_imag", []int{h.SeqLen, h.HeadSize() / 2}},
	}
	if !h.Shared {
		out = append(out, Array{"wcls", []int{V, dim}})
	}
	return out
}

// IsRopeTable reports the arrays that hold precomputed RoPE tables rather
// than parameters (the model recomputes them).
func IsRopeTable(name string) bool { return strings.HasPrefix(name, "freq_cis_") }

// floats returns the number of float32 values the body holds.
func (h Header) floats() int64 {
	var n int64
	for _, a := range h.Arrays() {
		k := int64(1)
		for _, d := range a.Shape {
			k *= int64(d)
		}
		n += k
	}
	return n
}

// FileSize returns the exact size in bytes of a checkpoint with this header.
func (h Header) FileSize() int64 { return headerBytes + 4*h.floats() }

// Limits that keep every size computation far from overflow; real
// llama2.c models (up to Llama-2 70B) are well inside them.
const (
	maxWidth = 1 << 17 // dim, hidden_dim
	maxCount = 1 << 22 // vocab_size, seq_len
	maxLayer = 1 << 10
)

// ParseHeader decodes and validates the 28-byte header. name is used in
// error messages.
func ParseHeader(b []byte, name string) (Header, error) {
	if len(b) < headerBytes {
		return Header{}, fmt.Errorf("llama2c: %s: %d bytes is too short for the 28-byte header", name, len(b))
	}
	var v [7]int32
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	if uint32(v[0]) == magic {
		return Header{}, fmt.Errorf("llama2c: %s is a versioned llama2.c export (magic \"ak42\", version %d); only the legacy format (export.py --version 0) is read", name, v[1])
	}
	h := Header{Dim: int(v[0]), Hidden: int(v[1]), Layers: int(v[2]), Heads: int(v[3]), KVHeads: int(v[4]), Vocab: int(v[5]), SeqLen: int(v[6]), Shared: v[5] > 0}
	if h.Vocab < 0 {
		h.Vocab = -h.Vocab
	}
	for _, f := range []struct {
		name string
		v    int
		max  int
	}{
		{"dim", h.Dim, maxWidth}, {"hidden_dim", h.Hidden, maxWidth}, {"n_layers", h.Layers, maxLayer},
		{"n_heads", h.Heads, maxWidth}, {"n_kv_heads", h.KVHeads, maxWidth},
		{"vocab_size", h.Vocab, maxCount}, {"seq_len", h.SeqLen, maxCount},
	} {
		if f.v <= 0 || f.v > f.max {
			return Header{}, fmt.Errorf("llama2c: %s: header %s = %d is outside [1, %d]: not a llama2.c legacy checkpoint?", name, f.name, f.v, f.max)
		}
	}
	switch {
	case h.Dim%h.Heads != 0:
		return Header{}, fmt.Errorf("llama2c: %s: dim %d is not a multiple of n_heads %d", name, h.Dim, h.Heads)
	case h.Heads%h.KVHeads != 0:
		return Header{}, fmt.Errorf("llama2c: %s: n_heads %d is not a multiple of n_kv_heads %d", name, h.Heads, h.KVHeads)
	case h.HeadSize()%2 != 0:
		return Header{}, fmt.Errorf("llama2c: %s: head size %d (dim/n_heads) is odd; RoPE needs pairs", name, h.HeadSize())
	}
	return h, nil
}

// Config returns the Hugging Face LlamaForCausalLM configuration of a
// checkpoint: RMSNorm eps 1e-5, RoPE theta 10000, BOS 1, EOS 2,
// max_position_embeddings seq_len.
func (h Header) Config() (*hfconfig.Config, error) {
	cfg, err := hfconfig.NewLlama(hfconfig.Sizes{
		VocabSize: h.Vocab, Hidden: h.Dim, Layers: h.Layers, Heads: h.Heads,
		KVHeads: h.KVHeads, Intermediate: h.Hidden, MaxPos: h.SeqLen,
	})
	if err != nil {
		return nil, err
	}
	cfg.NormEps = 1e-5
	cfg.TieEmbeddings = h.Shared
	return cfg, nil
}

// Load reads a legacy llama2.c checkpoint onto backend be. The file must
// have exactly the size its header implies: a shorter one is truncated, a
// longer one is not this format (or has a classifier the header does not
// announce), and both are errors saying so.
func Load(path string, be engine.Backend) (model.Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("llama2c: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("llama2c: %w", err)
	}
	if info.IsDir() {
		return nil, fmt.Errorf("llama2c: %s is a directory, not a llama2.c checkpoint file", path)
	}
	r := bufio.NewReaderSize(f, 1<<20)
	hb := make([]byte, headerBytes)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, fmt.Errorf("llama2c: %s: %d bytes is too short for the 28-byte header", path, info.Size())
	}
	h, err := ParseHeader(hb, path)
	if err != nil {
		return nil, err
	}
	if want := h.FileSize(); info.Size() != want {
		kind := "truncated"
		if info.Size() > want {
			kind = "longer than its header implies"
		}
		return nil, fmt.Errorf("llama2c: %s is %s: %d bytes, but a checkpoint with dim %d, hidden_dim %d, %d layers, %d heads (%d kv), vocab %d (%s classifier) and seq_len %d has %d",
			path, kind, info.Size(), h.Dim, h.Hidden, h.Layers, h.Heads, h.KVHeads, h.Vocab, sharedWord(h.Shared), h.SeqLen, want)
	}
	w, err := readWeights(r, h)
	if err != nil {
		return nil, fmt.Errorf("llama2c: %s: %w", path, err)
	}
	cfg, err := h.Config()
	if err != nil {
		return nil, fmt.Errorf("llama2c: %s: %w", path, err)
	}
	m, err := model.FromWeights(cfg, be, w, model.Options{RopeLayout: engine.RopeInterleaved})
	if err != nil {
		return nil, fmt.Errorf("llama2c: %s: %w", path, err)
	}
	return m, nil
}

func sharedWord(shared bool) string {
	if shared {
		return "shared"
	}
	return "separate"
}

// readWeights reads the body into Hugging Face-named tensors.
func readWeights(r io.Reader, h Header) (map[string]model.HostTensor, error) {
	w := map[string]model.HostTensor{}
	next := func(n int) ([]float32, error) {
		out := make([]float32, n)
		if err := binary.Read(r, binary.LittleEndian, out); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("unexpected end of file")
			}
			return nil, err
		}
		return out, nil
	}
	put := func(name string, data []float32, shape ...int) { w[name] = model.HostTensor{Shape: shape, Data: data} }
	perLayer := func(suffix string, shape ...int) error {
		n := engine.Numel(shape)
		all, err := next(h.Layers * n)
		if err != nil {
			return fmt.Errorf("reading %s: %w", suffix, err)
		}
		for l := 0; l < h.Layers; l++ {
			put(fmt.Sprintf("model.layers.%d.%s", l, suffix), all[l*n:(l+1)*n:(l+1)*n], shape...)
		}
		return nil
	}
	dim, hid := h.Dim, h.Hidden
	kvd := h.KVHeads * h.HeadSize()
	emb, err := next(h.Vocab * dim)
	if err != nil {
		return nil, fmt.Errorf("reading tok_embeddings: %w", err)
	}
	put("model.embed_tokens.weight", emb, h.Vocab, dim)
	for _, t := range []struct {
		suffix string
		shape  []int
	}{
		{"input_layernorm.weight", []int{dim}},
		{"self_attn.q_proj.weight", []int{dim, dim}},
		{"self_attn.k_proj.weight", []int{kvd, dim}},
		{"self_attn.v_proj.weight", []int{kvd, dim}},
		{"self_attn.o_proj.weight", []int{dim, dim}},
		{"post_attention_layernorm.weight", []int{dim}},
		{"mlp.gate_proj.weight", []int{hid, dim}},
		{"mlp.down_proj.weight", []int{dim, hid}},
		{"mlp.up_proj.weight", []int{hid, dim}},
	} {
		if err := perLayer(t.suffix, t.shape...); err != nil {
			return nil, err
		}
	}
	norm, err := next(dim)
	if err != nil {
		return nil, fmt.Errorf("reading rms_final: %w", err)
	}
	put("model.norm.weight", norm, dim)
	// The RoPE tables are recomputed by the model; skip them.
	if _, err := io.CopyN(io.Discard, r, int64(h.SeqLen)*int64(h.HeadSize())*4); err != nil {
		return nil, fmt.Errorf("reading freq_cis: unexpected end of file")
	}
	if !h.Shared {
		cls, err := next(h.Vocab * dim)
		if err != nil {
			return nil, fmt.Errorf("reading the classifier wcls: %w", err)
		}
		put("lm_head.weight", cls, h.Vocab, dim)
	}
	for name, t := range w {
		for i, v := range t.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("tensor %s has a non-finite value %v at index %d", name, v, i)
			}
		}
	}
	return w, nil
}

// IsCheckpoint reports whether path looks like a llama2.c legacy
// checkpoint: a regular file whose header parses and whose size matches.
func IsCheckpoint(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		return false
	}
	hb := make([]byte, headerBytes)
	if _, err := io.ReadFull(f, hb); err != nil {
		return false
	}
	h, err := ParseHeader(hb, path)
	return err == nil && h.FileSize() == info.Size()
}
