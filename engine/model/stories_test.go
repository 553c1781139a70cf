package model

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
)

const storiesDir = "../../../shared/models/stories260K"

// readStories reads the llama2.c legacy checkpoint described in the
// folder's README into Hugging Face-named host tensors (a minimal reader
// for this test only; the real loader belongs to the llama2.c package).
func readStories(t *testing.T) (*Config, map[string]HostTensor) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(storiesDir, "stories260K.bin"))
	if err != nil {
		t.Skipf("stories260K not available (%v)", err)
	}
	hdr := make([]int32, 7)
	for i := range hdr {
		hdr[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	dim, hidden, layers, heads, kvHeads, vocab, seqLen := int(hdr[0]), int(hdr[1]), int(hdr[2]), int(hdr[3]), int(hdr[4]), int(hdr[5]), int(hdr[6])
	cfg, err := hfconfig.NewLlama(hfconfig.Sizes{VocabSize: vocab, Hidden: dim, Layers: layers, Heads: heads, KVHeads: kvHeads, Intermediate: hidden, MaxPos: seqLen})
	if err != nil {
		t.Fatal(err)
	}
	cfg.NormEps, cfg.TieEmbeddings = 1e-5, true
	off := 28
	next := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[off+4*i:]))
		}
		off += 4 * n
		return out
	}
	w := map[string]HostTensor{}
	put := func(name string, data []float32, shape ...int) { w[name] = HostTensor{Shape: shape, Data: data} }
	perLayer := func(suffix string, shape ...int) {
		n := engine.Numel(shape)
		all := next(layers * n)
		for l := 0; l < layers; l++ {
			put(fmt.Sprintf("model.layers.%d.%s", l, suffix), all[l*n:(l+1)*n], shape...)
		}
	}
	kvd := kvHeads * (dim / heads)
	put("model.embed_tokens.weight", next(vocab*dim), vocab, dim)
	perLayer("input_layernorm.weight", dim)
	perLayer("self_attn.q_proj.weight", dim, dim)
	perLayer("self_attn.k_proj.weight", kvd, dim)
	perLayer("self_attn.v_proj.weight", kvd, dim)
	perLayer("self_attn.o_proj.weight", dim, dim)
	perLayer("post_attention_layernorm.weight", dim)
	perLayer("mlp.gate_proj.weight", hidden, dim)
	perLayer("mlp.down_proj.weight", dim, hidden)
	perLayer("mlp.up_proj.weight", hidden, dim)
	put("model.norm.weight", next(dim), dim)
	return cfg, w
}

// readPieces reads tok512.bin's token strings.
func readPieces(t *testing.T, vocab int) []string {
	raw, err := os.ReadFile(filepath.Join(storiesDir, "tok512.bin"))
	if err != nil {
		t.Skipf("tokenizer not available (%v)", err)
	}
	off := 4
	pieces := make([]string, vocab)
	for i := range pieces {
		n := int(binary.LittleEndian.Uint32(raw[off+4:]))
		pieces[i] = string(raw[off+8 : off+8+n])
		off += 8 + n
	}
	return pieces
}

// TestStories260KGreedy generates from the real pretrained model with
// interleaved RoPE through the KV cache and compares with the README's
// golden greedy output, then checks the model survives a save to Hugging
// Face layout and a reload.
func TestStories260KGreedy(t *testing.T) {
	cfg, w := readStories(t)
	pieces := readPieces(t, cfg.VocabSize)
	readme, err := os.ReadFile(filepath.Join(storiesDir, "README.md"))
	if err != nil {
		t.Skip(err)
	}
	// The golden story is the quoted line after "No prompt:".
	text := string(readme)
	i := strings.Index(text, "No prompt:")
	want := strings.TrimPrefix(strings.SplitN(strings.TrimSpace(text[i+len("No prompt:"):]), "\n", 2)[0], "> ")

	m, err := FromWeights(cfg, cpu.New(), w, Options{RopeLayout: engine.RopeInterleaved})
	if err != nil {
		t.Fatal(err)
	}
	generate := func(m Model) string {
		c, err := m.NewKVCache(1, 200)
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		tok := int32(1) // BOS
		for out.Len() < len(want) {
			lg, err := m.Logits(c, []int32{tok}, 1, 1, false)
			if err != nil {
				t.Fatal(err)
			}
			tok = int32(argmax(m.Backend().Download(lg)))
			if tok == 2 {
				break
			}
			p := pieces[tok]
			if out.Len() == 0 {
				p = strings.TrimPrefix(p, " ")
			}
			if strings.HasPrefix(p, "<0x") && len(p) == 6 {
				b, _ := strconv.ParseUint(p[3:5], 16, 8)
				p = string([]byte{byte(b)})
			}
			out.WriteString(p)
		}
		return out.String()
	}
	got := generate(m)
	if !strings.HasPrefix(got, want) {
		t.Errorf("greedy story:\n got %q\nwant %q", got, want)
	}
	dir := tempDir(t, "hf")
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	if got := generate(back); !strings.HasPrefix(got, want) {
		t.Errorf("after saving as a Hugging Face checkpoint:\n got %q\nwant %q", got, want)
	}
}

// argmax returns the index of the largest value (first on ties).
func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}
