package llama2c

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/tokenizer"
)

// storiesDir is the shared pretrained model, relative to this package.
const storiesDir = "../../../shared/models/stories260K"

// golden reads the README's golden greedy outputs: the quoted line after
// each heading ("No prompt:" and `Prompt "Zoo":`), keyed by prompt.
func golden(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(storiesDir, "README.md"))
	if err != nil {
		t.Skipf("stories260K is not available at %s (%v); skipping the golden-output test", storiesDir, err)
	}
	out := map[string]string{}
	lines := strings.Split(string(raw), "\n")
	for i, line := range lines {
		var prompt string
		switch {
		case line == "No prompt:":
			prompt = ""
		case strings.HasPrefix(line, `Prompt "`) && strings.HasSuffix(line, `":`):
			prompt = strings.TrimSuffix(strings.TrimPrefix(line, `Prompt "`), `":`)
		default:
			continue
		}
		if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "> ") {
			out[prompt] = strings.TrimPrefix(lines[i+1], "> ")
		}
	}
	if len(out) != 2 {
		t.Fatalf("found %d golden outputs in the README, want 2: %q", len(out), out)
	}
	return out
}

// TestStories260KGolden generates greedily from the real pretrained model
// and requires the README's outputs exactly: some prefix of the generated
// tokens must decode to the golden text, character for character.
func TestStories260KGolden(t *testing.T) {
	want := golden(t)
	m, err := Load(filepath.Join(storiesDir, "stories260K.bin"), cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(filepath.Join(storiesDir, "tok512.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for prompt, text := range want {
		ids, err := generate.PromptIDs(tok, prompt)
		if err != nil {
			t.Fatal(err)
		}
		res, err := generate.Generate(context.Background(), m, ids, generate.Options{MaxNewTokens: 120, Stop: []int32{int32(tok.EOS())}})
		if err != nil {
			t.Fatal(err)
		}
		all := append(ids, res.Tokens...)
		found := false
		for n := len(ids); n <= len(all); n++ {
			if tok.Decode(generate.Ints(all[:n])) == text {
				found = true
				t.Logf("prompt %q: golden output after %d new tokens", prompt, n-len(ids))
				break
			}
		}
		if !found {
			t.Errorf("prompt %q:\n got %q\nwant %q", prompt, tok.Decode(generate.Ints(all)), text)
		}
	}
}

// writeCheckpoint writes a random legacy checkpoint for h and returns its
// bytes and the values of the named tensors it checks.
func writeCheckpoint(t testing.TB, h Header) (path string, emb, cls []float32) {
	t.Helper()
	var buf bytes.Buffer
	vocab := int32(h.Vocab)
	if !h.Shared {
		vocab = -vocab
	}
	for _, v := range []int32{int32(h.Dim), int32(h.Hidden), int32(h.Layers), int32(h.Heads), int32(h.KVHeads), vocab, int32(h.SeqLen)} {
		binary.Write(&buf, binary.LittleEndian, v)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	rnd := func(n int, scale float64, offset float32) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = offset + float32(rng.NormFloat64()*scale)
		}
		binary.Write(&buf, binary.LittleEndian, out)
		return out
	}
	dim, hid, L := h.Dim, h.Hidden, h.Layers
	kvd := h.KVHeads * h.HeadSize()
	emb = rnd(h.Vocab*dim, 0.5, 0)
	rnd(L*dim, 0.1, 1)
	rnd(L*dim*dim, 0.2, 0)
	rnd(2*L*kvd*dim, 0.2, 0)
	rnd(L*dim*dim, 0.2, 0)
	rnd(L*dim, 0.1, 1)
	rnd(3*L*hid*dim, 0.2, 0)
	rnd(dim, 0.1, 1)
	rnd(h.SeqLen*h.HeadSize(), 1, 0)
	if !h.Shared {
		cls = rnd(h.Vocab*dim, 0.5, 0)
	}
	path = filepath.Join(t.TempDir(), "model.bin")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, emb, cls
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLoadLayouts loads shared and separate-classifier checkpoints,
// checks where the embedding and classifier land, and that the model
// survives a save as a Hugging Face checkpoint (whose q/k rows are
// permuted to the rotate_half layout) with the same logits.
func TestLoadLayouts(t *testing.T) {
	for _, shared := range []bool{true, false} {
		h := Header{Dim: 16, Hidden: 24, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 20, SeqLen: 32, Shared: shared}
		path, emb, cls := writeCheckpoint(t, h)
		if !IsCheckpoint(path) {
			t.Fatalf("IsCheckpoint(%s) is false", path)
		}
		be := cpu.New()
		m, err := Load(path, be)
		if err != nil {
			t.Fatal(err)
		}
		cfg := m.Config()
		if cfg.TieEmbeddings != shared || cfg.MaxPos != 32 || cfg.NormEps != 1e-5 || cfg.KVHeads != 2 || cfg.Intermediate != 24 {
			t.Errorf("config %+v", cfg)
		}
		p, _ := m.Param("model.embed_tokens.weight")
		if !equal(be.Download(p.W), emb) {
			t.Error("embedding differs from the file")
		}
		head, ok := m.Param("lm_head.weight")
		if shared == ok {
			t.Errorf("shared %v: lm_head parameter present = %v", shared, ok)
		}
		if !shared && !equal(be.Download(head.W), cls) {
			t.Error("lm_head differs from the file's classifier")
		}
		ids := []int32{1, 4, 7, 2, 9, 3}
		lg, err := m.Logits(nil, ids, 1, len(ids), true)
		if err != nil {
			t.Fatal(err)
		}
		ref := be.Download(lg)
		dir := t.TempDir()
		if err := m.Save(dir); err != nil {
			t.Fatal(err)
		}
		back, err := model.Load(dir, cpu.New())
		if err != nil {
			t.Fatal(err)
		}
		lg2, err := back.Logits(nil, ids, 1, len(ids), true)
		if err != nil {
			t.Fatal(err)
		}
		got := back.Backend().Download(lg2)
		for i := range ref {
			if math.Abs(float64(got[i]-ref[i])) > 1e-4*(1+math.Abs(float64(ref[i]))) {
				t.Fatalf("shared %v: logit %d after saving as Hugging Face: %v, before %v", shared, i, got[i], ref[i])
			}
		}
	}
}

func TestLoadErrors(t *testing.T) {
	h := Header{Dim: 8, Hidden: 12, Layers: 1, Heads: 2, KVHeads: 1, Vocab: 10, SeqLen: 8, Shared: true}
	good, _, _ := writeCheckpoint(t, h)
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	header := func(v ...int32) []byte {
		var b bytes.Buffer
		binary.Write(&b, binary.LittleEndian, v)
		return append(b.Bytes(), raw[28:]...)
	}
	dir := t.TempDir()
	cases := []struct {
		name    string
		content []byte
		want    string
	}{
		// 28 + 4·(emb 80 + rms 8 + wq 64 + wk,wv 64 + wo 64 + rms 8 +
		// w1,w2,w3 288 + final 8 + freq_cis 32) = 2492 bytes.
		{"truncated", raw[:len(raw)-4], "is truncated: 2488 bytes, but a checkpoint with dim 8, hidden_dim 12, 1 layers, 2 heads (1 kv), vocab 10 (shared classifier) and seq_len 8 has 2492"},
		{"oversized", append(append([]byte(nil), raw...), 0, 0, 0, 0), "is longer than its header implies"},
		{"untied header on a tied body", header(8, 12, 1, 2, 1, -10, 8), "is truncated"},
		{"short header", raw[:20], "too short for the 28-byte header"},
		{"zero dim", header(0, 12, 1, 2, 1, 10, 8), "header dim = 0 is outside"},
		{"heads", header(8, 12, 1, 3, 1, 10, 8), "dim 8 is not a multiple of n_heads 3"},
		{"kv heads", header(8, 12, 1, 2, 3, 10, 8), "n_heads 2 is not a multiple of n_kv_heads 3"},
		{"odd head size", header(6, 12, 1, 2, 1, 10, 8), "head size 3 (dim/n_heads) is odd"},
		{"versioned export", header(magic, 2, 1, 2, 1, 10, 8), "versioned llama2.c export"},
		{"huge", header(1<<30, 12, 1, 2, 1, 10, 8), "is outside [1, 131072]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".bin")
			if err := os.WriteFile(p, c.content, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p, cpu.New())
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("error %v\nwant it to name %s and contain %q", err, p, c.want)
			}
			if IsCheckpoint(p) {
				t.Errorf("IsCheckpoint(%s) is true", c.name)
			}
		})
	}
	nan := append([]byte(nil), raw...)
	binary.LittleEndian.PutUint32(nan[28+4*3:], math.Float32bits(float32(math.NaN())))
	p := filepath.Join(dir, "nan.bin")
	os.WriteFile(p, nan, 0o644)
	if _, err := Load(p, cpu.New()); err == nil || !strings.Contains(err.Error(), "model.embed_tokens.weight has a non-finite value NaN at index 3") {
		t.Errorf("NaN weight: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.bin"), cpu.New()); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Load(dir, cpu.New()); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: %v", err)
	}
}
