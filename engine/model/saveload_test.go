package model

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/internal/golden"
)

var allArchs = []string{hfconfig.ArchLlama, hfconfig.ArchMistral, hfconfig.ArchQwen2, hfconfig.ArchGPT2}

// TestSaveLoadRoundTrip saves random models of every architecture (Qwen2
// and GPT-2 tied) and loads them back bit-exactly; saving again writes
// identical bytes.
func TestSaveLoadRoundTrip(t *testing.T) {
	for _, arch := range allArchs {
		t.Run(arch, func(t *testing.T) {
			cfg := tinyConfig(t, arch)
			if arch == hfconfig.ArchQwen2 {
				cfg.TieEmbeddings = true
			}
			m, err := New(cfg, cpu.New(), 1)
			if err != nil {
				t.Fatal(err)
			}
			scramble(m, 2, 0.3)
			dir := tempDir(t, "a")
			if err := m.Save(dir); err != nil {
				t.Fatal(err)
			}
			back, err := Load(dir, cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			if len(back.BaseParams()) != len(m.BaseParams()) {
				t.Fatalf("%d parameters after loading, %d saved", len(back.BaseParams()), len(m.BaseParams()))
			}
			for i, p := range m.BaseParams() {
				q := back.BaseParams()[i]
				a, b := cpu.Float32s(p.W), cpu.Float32s(q.W)
				if p.Name != q.Name || !equalBits(a, b) {
					t.Errorf("%s: not restored bit-exactly (as %s)", p.Name, q.Name)
				}
			}
			f, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, n := range f.Names() {
				if n == "lm_head.weight" && cfg.TieEmbeddings {
					t.Error("tied lm_head.weight saved")
				}
			}
			dir2 := tempDir(t, "b")
			if err := back.Save(dir2); err != nil {
				t.Fatal(err)
			}
			for _, file := range []string{"model.safetensors", "config.json"} {
				x, _ := os.ReadFile(filepath.Join(dir, file))
				y, _ := os.ReadFile(filepath.Join(dir2, file))
				if !bytes.Equal(x, y) {
					t.Errorf("%s differs after a load/save round trip", file)
				}
			}
		})
	}
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !(a[i] != a[i] && b[i] != b[i]) {
			return false
		}
	}
	return true
}

// TestInterleavedRoPESavesAsHF checks that a model built with llama2.c's
// interleaved RoPE layout saves a checkpoint that computes the same logits
// with Hugging Face's rotate_half layout.
func TestInterleavedRoPESavesAsHF(t *testing.T) {
	cfg := tinyConfig(t, hfconfig.ArchLlama)
	cfg.AttentionBias, cfg.AttnOutBias = true, true // biases are permuted too
	m, err := NewWithOptions(cfg, cpu.New(), 3, Options{RopeLayout: engine.RopeInterleaved})
	if err != nil {
		t.Fatal(err)
	}
	scramble(m, 4, 0.3)
	ids := seqs(2, 9, cfg.VocabSize, 1)
	want := logitsCopy(t, m, nil, flat(ids), 2, 9, true)
	dir := tempDir(t, "m")
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	got := logitsCopy(t, back, nil, flat(ids), 2, 9, true)
	if e := golden.RelErr(got, want); e > 1e-5 {
		t.Errorf("logits of the saved HF checkpoint differ: relative error %.3g", e)
	}
	// Sanity: loading it as interleaved (wrongly) must change the logits,
	// or the test above would prove nothing.
	wrong, err := LoadWithOptions(dir, cpu.New(), Options{RopeLayout: engine.RopeInterleaved})
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.RelErr(logitsCopy(t, wrong, nil, flat(ids), 2, 9, true), want); e < 1e-3 {
		t.Errorf("layouts indistinguishable (relative error %.3g)", e)
	}
}

// TestFromWeights builds a model from host tensors, as the llama2.c loader
// will, and checks validation of their shapes.
func TestFromWeights(t *testing.T) {
	cfg := tinyConfig(t, hfconfig.ArchLlama)
	src := newTiny(t, hfconfig.ArchLlama, 6)
	w := map[string]HostTensor{}
	for _, p := range src.BaseParams() {
		w[p.Name] = HostTensor{Shape: p.W.Shape(), Data: append([]float32(nil), cpu.Float32s(p.W)...)}
	}
	m, err := FromWeights(cfg, cpu.New(), w, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := seqs(1, 6, cfg.VocabSize, 2)
	if e := golden.RelErr(logitsCopy(t, m, nil, flat(ids), 1, 6, true), logitsCopy(t, src, nil, flat(ids), 1, 6, true)); e != 0 {
		t.Errorf("logits differ from the source model: %.3g", e)
	}
	bad := w["model.norm.weight"]
	w["model.norm.weight"] = HostTensor{Shape: bad.Shape, Data: bad.Data[:3]}
	if _, err := FromWeights(cfg, cpu.New(), w, Options{}); err == nil || !strings.Contains(err.Error(), "model.norm.weight") {
		t.Errorf("short data: error %v, want one naming model.norm.weight", err)
	}
}

// writeCheckpoint saves m into a new folder and returns it with the saved
// tensors, for tests that then corrupt them.
func writeCheckpoint(t *testing.T, m Model) (string, []safetensors.Tensor) {
	t.Helper()
	dir := tempDir(t, "ckpt")
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, p := range m.BaseParams() {
		ts = append(ts, safetensors.Tensor{Name: p.Name, DType: "F32", Shape: p.W.Shape(), F32: append([]float32(nil), cpu.Float32s(p.W)...)})
	}
	return dir, ts
}

// TestLoadErrors checks that bad checkpoints are rejected with errors
// naming the problem, and that tolerated extras load.
func TestLoadErrors(t *testing.T) {
	m := newTiny(t, hfconfig.ArchLlama, 8)
	const victim = "model.layers.1.self_attn.k_proj.weight"
	cases := []struct {
		name   string
		edit   func(ts []safetensors.Tensor) []safetensors.Tensor
		wantOK bool
		want   []string // substrings of the error
	}{
		{"missing", func(ts []safetensors.Tensor) []safetensors.Tensor {
			var out []safetensors.Tensor
			for _, x := range ts {
				if x.Name != victim {
					out = append(out, x)
				}
			}
			return out
		}, false, []string{"missing", victim}},
		{"wrong shape", func(ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				if ts[i].Name == victim {
					ts[i].Shape = []int{ts[i].Shape[1], ts[i].Shape[0]}
				}
			}
			return ts
		}, false, []string{victim, "expected shape [8 16]", "found [16 8]"}},
		{"unexpected", func(ts []safetensors.Tensor) []safetensors.Tensor {
			return append(ts, safetensors.Tensor{Name: "model.layers.7.mlp.extra.weight", DType: "F32", Shape: []int{2}, F32: []float32{1, 2}})
		}, false, []string{"unexpected", "model.layers.7.mlp.extra.weight"}},
		{"inv_freq ignored", func(ts []safetensors.Tensor) []safetensors.Tensor {
			return append(ts, safetensors.Tensor{Name: "model.layers.0.self_attn.rotary_emb.inv_freq", DType: "F32", Shape: []int{2}, F32: []float32{1, 2}})
		}, true, nil},
		{"integer tensor", func(ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				if ts[i].Name == victim {
					ts[i] = safetensors.Tensor{Name: victim, DType: "I32", Shape: ts[i].Shape, I64: make([]int64, len(ts[i].F32))}
				}
			}
			return ts
		}, false, []string{victim}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, ts := writeCheckpoint(t, m)
			if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), c.edit(ts), nil); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir, cpu.New())
			if c.wantOK {
				if err != nil {
					t.Fatalf("load failed: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("load succeeded")
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	t.Run("truncated", func(t *testing.T) {
		dir, _ := writeCheckpoint(t, m)
		path := filepath.Join(dir, "model.safetensors")
		data, _ := os.ReadFile(path)
		os.WriteFile(path, data[:len(data)-100], 0o644)
		if _, err := Load(dir, cpu.New()); err == nil || !strings.Contains(err.Error(), "model.safetensors") {
			t.Errorf("truncated file: error %v, want one naming the file", err)
		}
	})
	t.Run("no weights", func(t *testing.T) {
		dir, _ := writeCheckpoint(t, m)
		os.Remove(filepath.Join(dir, "model.safetensors"))
		if _, err := Load(dir, cpu.New()); err == nil {
			t.Error("load without weights succeeded")
		}
	})
	t.Run("bad config", func(t *testing.T) {
		dir, _ := writeCheckpoint(t, m)
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"architectures": ["BertModel"]}`), 0o644)
		if _, err := Load(dir, cpu.New()); err == nil || !strings.Contains(err.Error(), "BertModel") {
			t.Errorf("unknown architecture: error %v", err)
		}
	})
}

// TestLoadVariants loads sharded checkpoints, BF16/F16 tensors and
// GPT-2 names without the "transformer." prefix (OpenAI's conversion),
// with its attention-mask buffers and a duplicate tied lm_head.
func TestLoadVariants(t *testing.T) {
	t.Run("sharded", func(t *testing.T) {
		m := newTiny(t, hfconfig.ArchQwen2, 1)
		dir, ts := writeCheckpoint(t, m)
		os.Remove(filepath.Join(dir, "model.safetensors"))
		half := len(ts) / 2
		index := map[string]any{"metadata": map[string]any{}, "weight_map": map[string]string{}}
		for i, x := range ts {
			shard := "model-00001-of-00002.safetensors"
			if i >= half {
				shard = "model-00002-of-00002.safetensors"
			}
			index["weight_map"].(map[string]string)[x.Name] = shard
		}
		safetensors.Write(filepath.Join(dir, "model-00001-of-00002.safetensors"), ts[:half], nil)
		safetensors.Write(filepath.Join(dir, "model-00002-of-00002.safetensors"), ts[half:], nil)
		js, _ := json.Marshal(index)
		os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), js, 0o644)
		back, err := Load(dir, cpu.New())
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range back.BaseParams() {
			if !equalBits(cpu.Float32s(p.W), ts[i].F32) {
				t.Errorf("%s differs", p.Name)
			}
		}
	})
	for _, dt := range []string{"BF16", "F16"} {
		t.Run(dt, func(t *testing.T) {
			m := newTiny(t, hfconfig.ArchLlama, 1)
			dir, ts := writeCheckpoint(t, m)
			for i := range ts {
				ts[i].DType = dt
			}
			safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, nil)
			back, err := Load(dir, cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			conv := safetensors.BF16ToF32
			round := safetensors.F32ToBF16
			if dt == "F16" {
				conv, round = safetensors.F16ToF32, safetensors.F32ToF16
			}
			for i, p := range back.BaseParams() {
				got := cpu.Float32s(p.W)
				for j, v := range ts[i].F32 {
					if got[j] != conv(round(v)) {
						t.Fatalf("%s[%d] = %v, want %v rounded to %s", p.Name, j, got[j], v, dt)
					}
				}
			}
		})
	}
	t.Run("gpt2 OpenAI names", func(t *testing.T) {
		m := newTiny(t, hfconfig.ArchGPT2, 1)
		dir, ts := writeCheckpoint(t, m)
		var wte []float32
		for i := range ts {
			if ts[i].Name == "transformer.wte.weight" {
				wte = ts[i].F32
			}
			ts[i].Name = strings.TrimPrefix(ts[i].Name, "transformer.")
		}
		ts = append(ts,
			safetensors.Tensor{Name: "h.0.attn.bias", DType: "F32", Shape: []int{1, 1, 2, 2}, F32: []float32{1, 0, 1, 1}},
			safetensors.Tensor{Name: "lm_head.weight", DType: "F32", Shape: []int{m.Config().VocabSize, m.Config().Hidden}, F32: wte})
		safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, nil)
		back, err := Load(dir, cpu.New())
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range back.BaseParams() {
			if !equalBits(cpu.Float32s(p.W), cpu.Float32s(m.BaseParams()[i].W)) {
				t.Errorf("%s differs", p.Name)
			}
		}
	})
}
