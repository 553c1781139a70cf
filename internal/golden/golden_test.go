package golden

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/safetensors"
)

// root is testdata/golden relative to this package.
const root = "../../testdata/golden"

// wantSets are the golden sets the foundation issue asks for.
var wantSets = []string{"gpt2", "llama-gqa", "qwen2-tied"}

func loadAll(t *testing.T) []*Set {
	t.Helper()
	sets, err := LoadAll(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range sets {
		got = append(got, s.Meta.Model)
		if filepath.Base(s.Dir) != s.Meta.Model {
			t.Errorf("%s: meta.json says model %q", s.Dir, s.Meta.Model)
		}
	}
	for _, w := range wantSets {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Errorf("golden set %q missing (have %v)", w, got)
		}
	}
	return sets
}

// hfConfig holds the config.json keys the shape check needs, read
// independently of any gotune config loader.
type hfConfig struct {
	Architectures     []string `json:"architectures"`
	ModelType         string   `json:"model_type"`
	VocabSize         int      `json:"vocab_size"`
	HiddenSize        int      `json:"hidden_size"`
	NumHiddenLayers   int      `json:"num_hidden_layers"`
	NumAttentionHeads int      `json:"num_attention_heads"`
	NumKeyValueHeads  int      `json:"num_key_value_heads"`
	IntermediateSize  int      `json:"intermediate_size"`
	TieWordEmbeddings *bool    `json:"tie_word_embeddings"`
	NEmbd             int      `json:"n_embd"`
	NLayer            int      `json:"n_layer"`
	NHead             int      `json:"n_head"`
	NPositions        int      `json:"n_positions"`
	NInner            *int     `json:"n_inner"`
	HeadDim           int      `json:"head_dim"`
}

func readConfig(t *testing.T, s *Set) hfConfig {
	t.Helper()
	raw := readFile(t, s.Path("config.json"))
	var c hfConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("%s: %v", s.Path("config.json"), err)
	}
	if len(c.Architectures) != 1 || c.Architectures[0] != s.Meta.Architecture {
		t.Fatalf("%s: architectures %v, meta.json says %q", s.Dir, c.Architectures, s.Meta.Architecture)
	}
	return c
}

// expectedParams lists the Hugging Face state dict of a config, written
// out from the transformers module structure.
func expectedParams(t *testing.T, c hfConfig) map[string][]int {
	t.Helper()
	p := map[string][]int{}
	switch c.Architectures[0] {
	case "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Olmo2ForCausalLM", "GraniteForCausalLM",
		"Phi3ForCausalLM", "GlmForCausalLM", "Glm4ForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM":
		glm := c.ModelType == "glm" || c.ModelType == "glm4"
		d, hd := c.HiddenSize, c.HiddenSize/c.NumAttentionHeads
		if c.HeadDim != 0 {
			hd = c.HeadDim
		}
		q, kv, in := c.NumAttentionHeads*hd, c.NumKeyValueHeads*hd, c.IntermediateSize
		p["model.embed_tokens.weight"] = []int{c.VocabSize, d}
		for i := 0; i < c.NumHiddenLayers; i++ {
			pre := fmt.Sprintf("model.layers.%d.", i)
			if c.ModelType != "olmo2" { // OLMo-2 has post-norms only
				p[pre+"input_layernorm.weight"] = []int{d}
			}
			if c.ModelType == "phi3" { // Phi3Attention's qkv_proj, outputs q|k|v
				p[pre+"self_attn.qkv_proj.weight"] = []int{q + 2*kv, d}
			} else {
				p[pre+"self_attn.q_proj.weight"] = []int{q, d}
				p[pre+"self_attn.k_proj.weight"] = []int{kv, d}
				p[pre+"self_attn.v_proj.weight"] = []int{kv, d}
			}
			p[pre+"self_attn.o_proj.weight"] = []int{d, q}
			if c.ModelType == "qwen3" || c.ModelType == "gemma3_text" { // per-head q_norm, k_norm
				p[pre+"self_attn.q_norm.weight"] = []int{hd}
				p[pre+"self_attn.k_norm.weight"] = []int{hd}
			}
			if c.ModelType == "gemma2" || c.ModelType == "gemma3_text" { // the sandwich's other two norms
				p[pre+"pre_feedforward_layernorm.weight"] = []int{d}
				p[pre+"post_feedforward_layernorm.weight"] = []int{d}
			}
			if c.ModelType == "olmo2" { // Olmo2Attention's q_norm, k_norm over the whole projection
				p[pre+"self_attn.q_norm.weight"] = []int{q}
				p[pre+"self_attn.k_norm.weight"] = []int{kv}
				p[pre+"post_feedforward_layernorm.weight"] = []int{d}
			}
			if c.ModelType == "qwen2" || glm { // GLM: attention_bias true in the golden configs
				p[pre+"self_attn.q_proj.bias"] = []int{q}
				p[pre+"self_attn.k_proj.bias"] = []int{kv}
				p[pre+"self_attn.v_proj.bias"] = []int{kv}
			}
			p[pre+"post_attention_layernorm.weight"] = []int{d}
			if c.ModelType == "phi3" || glm { // gate_up_proj, outputs gate|up
				p[pre+"mlp.gate_up_proj.weight"] = []int{2 * in, d}
			} else {
				p[pre+"mlp.gate_proj.weight"] = []int{in, d}
				p[pre+"mlp.up_proj.weight"] = []int{in, d}
			}
			p[pre+"mlp.down_proj.weight"] = []int{d, in}
			if c.ModelType == "glm4" { // Glm4DecoderLayer's output norms
				p[pre+"post_self_attn_layernorm.weight"] = []int{d}
				p[pre+"post_mlp_layernorm.weight"] = []int{d}
			}
		}
		p["model.norm.weight"] = []int{d}
		// LlamaConfig and Qwen2Config default to untied embeddings, Gemma's
		// configs to tied ones.
		gemma := c.ModelType == "gemma2" || c.ModelType == "gemma3_text"
		if c.TieWordEmbeddings == nil && !gemma || c.TieWordEmbeddings != nil && !*c.TieWordEmbeddings {
			p["lm_head.weight"] = []int{c.VocabSize, d}
		}
	case "GPT2LMHeadModel":
		d := c.NEmbd
		inner := 4 * d
		if c.NInner != nil {
			inner = *c.NInner
		}
		p["transformer.wte.weight"] = []int{c.VocabSize, d}
		p["transformer.wpe.weight"] = []int{c.NPositions, d}
		for i := 0; i < c.NLayer; i++ {
			pre := fmt.Sprintf("transformer.h.%d.", i)
			p[pre+"ln_1.weight"], p[pre+"ln_1.bias"] = []int{d}, []int{d}
			p[pre+"attn.c_attn.weight"], p[pre+"attn.c_attn.bias"] = []int{d, 3 * d}, []int{3 * d}
			p[pre+"attn.c_proj.weight"], p[pre+"attn.c_proj.bias"] = []int{d, d}, []int{d}
			p[pre+"ln_2.weight"], p[pre+"ln_2.bias"] = []int{d}, []int{d}
			p[pre+"mlp.c_fc.weight"], p[pre+"mlp.c_fc.bias"] = []int{d, inner}, []int{inner}
			p[pre+"mlp.c_proj.weight"], p[pre+"mlp.c_proj.bias"] = []int{inner, d}, []int{d}
		}
		p["transformer.ln_f.weight"], p["transformer.ln_f.bias"] = []int{d}, []int{d}
		// GPT-2 ties lm_head to wte (tie_word_embeddings defaults to true).
		if c.TieWordEmbeddings != nil && !*c.TieWordEmbeddings {
			t.Fatalf("untied GPT-2 is not a golden configuration")
		}
	default:
		t.Fatalf("unexpected architecture %q", c.Architectures[0])
	}
	return p
}

// wantDecay is the Hugging Face Trainer's rule stated by name: everything
// decays except biases and normalisation weights.
func wantDecay(name string) bool {
	return !strings.HasSuffix(name, ".bias") && !strings.Contains(name, "norm") &&
		!strings.Contains(name, ".ln_")
}

func TestParamsMatchConfig(t *testing.T) {
	for _, s := range loadAll(t) {
		t.Run(s.Meta.Model, func(t *testing.T) {
			want := expectedParams(t, readConfig(t, s))

			fromMeta := map[string][]int{}
			for _, p := range s.Meta.Params {
				fromMeta[p.Name] = p.Shape
				if p.Decay != wantDecay(p.Name) {
					t.Errorf("meta.json: %s has decay %v", p.Name, p.Decay)
				}
			}
			if !reflect.DeepEqual(fromMeta, want) {
				t.Errorf("meta.json params differ from the config's state dict:\n got %v\nwant %v", fromMeta, want)
			}

			f, err := safetensors.Open(s.Path(s.Meta.Weights))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fromFile := map[string][]int{}
			for _, n := range f.Names() {
				info, _ := f.Info(n)
				if info.DType != "F32" {
					t.Errorf("%s: %s is %s, want F32", s.Meta.Weights, n, info.DType)
				}
				fromFile[n] = info.Shape
			}
			if !reflect.DeepEqual(fromFile, want) {
				t.Errorf("%s tensors differ from the config's state dict:\n got %v\nwant %v", s.Meta.Weights, fromFile, want)
			}

			// Full fine-tuning trains exactly the model's parameters.
			full := s.Run("full")
			if full == nil {
				t.Fatal("no run \"full\"")
			}
			if !reflect.DeepEqual(full.Trainable, s.Meta.Params) {
				t.Errorf("run full trains %v, the model has %v", full.Trainable, s.Meta.Params)
			}
		})
	}
}

// row is one line of data.jsonl.
type row struct {
	InputIDs []int `json:"input_ids"`
	Labels   []int `json:"labels"`
}

func readRows(t *testing.T, path string) []row {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []row
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var r row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s:%d: %v", path, line, err)
		}
		if r.Labels == nil {
			r.Labels = r.InputIDs
		}
		rows = append(rows, r)
	}
	return rows
}

// tokenLosses returns, for batch row b of logits [B, T, V] and the row's
// labels, the float64 cross-entropy of every counted target (logits at t
// scored against labels[t+1], -100 ignored).
func tokenLosses(logits []float32, b, T, V int, labels []int) []float64 {
	var out []float64
	for t := 0; t+1 < T && t+1 < len(labels); t++ {
		y := labels[t+1]
		if y == -100 {
			continue
		}
		z := logits[(b*T+t)*V : (b*T+t+1)*V]
		m := math.Inf(-1)
		for _, v := range z {
			m = math.Max(m, float64(v))
		}
		var sum float64
		for _, v := range z {
			sum += math.Exp(float64(v) - m)
		}
		out = append(out, m+math.Log(sum)-float64(z[y]))
	}
	return out
}

func mean(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// TestLossFromLogits recomputes the loss from the stored logits and the
// data file, which cross-checks the generator's loss semantics (shift,
// ignore index, mean over counted tokens) independently of PyTorch.
func TestLossFromLogits(t *testing.T) {
	for _, s := range loadAll(t) {
		t.Run(s.Meta.Model, func(t *testing.T) {
			rows := readRows(t, s.Path(s.Meta.Data))
			full := s.Meta.Runs[0]
			logits, shape := s.Tensor("logits")
			B, T, V := shape[0], shape[1], shape[2]
			if B != full.BatchSize || T != full.SeqLen || len(rows) < B {
				t.Fatalf("logits %v for batch size %d, seq len %d, %d rows", shape, full.BatchSize, full.SeqLen, len(rows))
			}
			var all, perRowMeans []float64
			for b := 0; b < B; b++ {
				l := tokenLosses(logits, b, T, V, rows[b].Labels)
				all = append(all, l...)
				perRowMeans = append(perRowMeans, mean(l))
			}
			loss, _ := s.Tensor("loss")
			const tol = 2e-6 // float32 rounding of the stored logits and loss
			if e := math.Abs(mean(all)-float64(loss[0])) / float64(loss[0]); e > tol {
				t.Errorf("loss from logits %.8f, stored %.8f (rel err %.2g)", mean(all), loss[0], e)
			}
			if len(all) != full.CountedTokens[0] {
				t.Errorf("%d counted targets, meta.json says %d", len(all), full.CountedTokens[0])
			}
			for _, r := range s.Meta.Runs {
				losses, _ := s.Tensor(r.Key("losses"))
				// Every full run starts from the same weights on the same
				// data; with dropout (a run with a seed) its training loss
				// is the logits' (evaluation) loss only by accident.
				differs := math.Abs(float64(losses[0]-loss[0])) > tol*float64(loss[0])
				if r.Method == "full" && differs != (r.Seed != 0) {
					t.Errorf("run %s (seed %d): first-step loss %.8f, batch loss %.8f", r.Name, r.Seed, losses[0], loss[0])
				}
				// An accumulation run must tell the token mean over the step
				// from the mean of micro-batch means, or it tests nothing.
				if r.GradAccum > 1 && r.BatchSize == 1 {
					if e := math.Abs(mean(perRowMeans)-float64(losses[0])) / float64(losses[0]); e < 1e-3 {
						t.Errorf("run %s: mean of micro-batch means is within %.2g of the loss: the data does not discriminate", r.Name, e)
					}
				}
			}
		})
	}
}

// TestGradNormFromGrads recomputes each run's first pre-clip gradient norm
// from its stored gradients.
func TestGradNormFromGrads(t *testing.T) {
	for _, s := range loadAll(t) {
		for _, r := range s.Meta.Runs {
			t.Run(s.Meta.Model+"/"+r.Name, func(t *testing.T) {
				var sq float64
				for _, p := range r.Trainable {
					g, _ := s.Tensor(r.Key("grad." + p.Name))
					for _, v := range g {
						sq += float64(v) * float64(v)
					}
				}
				norms, _ := s.Tensor(r.Key("grad_norms"))
				if e := math.Abs(math.Sqrt(sq)-float64(norms[0])) / float64(norms[0]); e > 1e-5 {
					t.Errorf("norm of stored grads %.7f, grad_norms[0] %.7f", math.Sqrt(sq), norms[0])
				}
				clipped := 0
				for _, n := range norms {
					if float64(n) > r.MaxGradNorm {
						clipped++
					}
				}
				t.Logf("%d of %d steps clipped (norms %v, max %g)", clipped, len(norms), norms, r.MaxGradNorm)
			})
		}
	}
}

// lrMultiplier restates Hugging Face's get_*_schedule_with_warmup for
// 0-based step s (optimizer step s+1).
func lrMultiplier(r *Run, s int) float64 {
	w, n := r.WarmupSteps, r.TotalSteps
	if s < w {
		return float64(s) / math.Max(1, float64(w))
	}
	switch r.Schedule {
	case "constant":
		return 1
	case "linear":
		return math.Max(0, float64(n-s)/math.Max(1, float64(n-w)))
	case "cosine":
		p := float64(s-w) / math.Max(1, float64(n-w))
		return math.Max(0, 0.5*(1+math.Cos(math.Pi*p)))
	}
	return math.NaN()
}

func TestLRSchedule(t *testing.T) {
	for _, s := range loadAll(t) {
		for i := range s.Meta.Runs {
			r := &s.Meta.Runs[i]
			t.Run(s.Meta.Model+"/"+r.Name, func(t *testing.T) {
				lrs, _ := s.Tensor(r.Key("lrs"))
				for k, lr := range lrs {
					want := r.LR * lrMultiplier(r, k)
					if math.IsNaN(want) || math.Abs(float64(lr)-want) > 1e-6*r.LR {
						t.Errorf("step %d: lr %g, schedule %s gives %g", k+1, lr, r.Schedule, want)
					}
				}
			})
		}
	}
}

// TestUnusedRowsOnlyDecay checks AdamW's decoupled weight decay in the
// trajectories: an embedding row that gets no gradient (a token or position
// absent from the batch) has zero Adam moments, so after the run it must be
// its initial value times Π(1 - lr_k·wd) if it decays, and unchanged if not.
func TestUnusedRowsOnlyDecay(t *testing.T) {
	for _, s := range loadAll(t) {
		f, err := safetensors.Open(s.Path(s.Meta.Weights))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range s.Meta.Runs {
			if r.Method != "full" {
				continue
			}
			t.Run(s.Meta.Model+"/"+r.Name, func(t *testing.T) {
				lrs, _ := s.Tensor(r.Key("lrs"))
				rows := 0
				for _, p := range r.Trainable {
					if len(p.Shape) != 2 {
						continue
					}
					init, _, err := f.Float32(p.Name)
					if err != nil {
						t.Fatal(err)
					}
					factor := 1.0
					if p.Decay {
						for _, lr := range lrs {
							factor *= 1 - float64(lr)*r.WeightDecay
						}
					}
					g, _ := s.Tensor(r.Key("grad." + p.Name))
					after, _ := s.Tensor(r.Key("after." + p.Name))
					cols := p.Shape[1]
					for i := 0; i < p.Shape[0]; i++ {
						if !allZero(g[i*cols : (i+1)*cols]) {
							continue
						}
						rows++
						want := make([]float32, cols)
						for j := range want {
							want[j] = float32(float64(init[i*cols+j]) * factor)
						}
						if e := RelErr(after[i*cols:(i+1)*cols], want); e > 1e-6 {
							t.Errorf("%s row %d: rel err %.2g from pure decay", p.Name, i, e)
						}
					}
				}
				t.Logf("%d gradient-free rows checked", rows)
				untouched := false // a table some of whose rows the batch cannot reach
				for _, p := range r.Trainable {
					untouched = untouched || p.Name == "lm_head.weight" || p.Name == "transformer.wpe.weight"
				}
				if untouched && rows == 0 {
					// Untied embeddings and GPT-2's positions always have
					// rows the 8-token batch does not touch (a tied LM
					// head gives every row a gradient).
					t.Error("no gradient-free rows: the check would be vacuous")
				}
			})
		}
		f.Close()
	}
}

func allZero(x []float32) bool {
	for _, v := range x {
		if v != 0 {
			return false
		}
	}
	return true
}

func TestRelErr(t *testing.T) {
	tests := []struct {
		name      string
		got, want []float32
		rel       float64
	}{
		{"equal", []float32{1, -2, 3}, []float32{1, -2, 3}, 0},
		{"3-4-5", []float32{3, 4}, []float32{0, 0.5}, math.Sqrt(9+12.25) / 0.5},
		{"scaled", []float32{1.1, 2.2}, []float32{1, 2}, 0.1},
		{"zero want", []float32{3, 4}, []float32{0, 0}, 5},
		{"both zero", []float32{0, 0}, []float32{0, 0}, 0},
		{"length", []float32{1}, []float32{1, 2}, math.Inf(1)},
		{"nan", []float32{float32(math.NaN()), 1}, []float32{1, 1}, math.Inf(1)},
		{"inf want", []float32{1}, []float32{float32(math.Inf(1))}, math.Inf(1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := RelErr(tc.got, tc.want)
			if math.IsInf(tc.rel, 1) {
				if !math.IsInf(got, 1) {
					t.Errorf("RelErr = %g, want +Inf", got)
				}
				return
			}
			if math.Abs(got-tc.rel) > 1e-6*math.Max(1, tc.rel) {
				t.Errorf("RelErr = %.9g, want %.9g", got, tc.rel)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	s, err := Load(filepath.Join(root, "llama-gqa"))
	if err != nil {
		t.Fatal(err)
	}
	if d, sh := s.Tensor("no such tensor"); d != nil || sh != nil || s.Has("no such tensor") {
		t.Error("absent tensor reported present")
	}
	names := s.Names()
	if !sort.StringsAreSorted(names) || len(names) == 0 || !s.Has(names[0]) {
		t.Errorf("Names() = %d names, sorted %v", len(names), sort.StringsAreSorted(names))
	}
	for _, name := range []string{"full", "accum", "warmup"} {
		if r := s.Run(name); r == nil || r.Name != name {
			t.Errorf("Run(%q) = %v", name, r)
		}
	}
	if s.Run("nope") != nil {
		t.Error("Run of an unknown name is not nil")
	}
	if r := s.Run("accum"); r.BatchSize != 1 || r.GradAccum != 2 || r.Key("losses") != "accum.losses" {
		t.Errorf("accum run %+v", r)
	}
}

// TestLoadErrors checks that damaged sets are refused with an error that
// names what is wrong.
func TestLoadErrors(t *testing.T) {
	src := filepath.Join(root, "llama-gqa")
	raw := readFile(t, filepath.Join(src, "meta.json"))
	gold := readFile(t, filepath.Join(src, "golden.safetensors"))
	edit := func(fn func(m *Meta)) string { return editMeta(t, raw, fn) }
	tests := []struct {
		name    string
		meta    string
		golden  []byte
		wantErr string
	}{
		{"missing meta", "", gold, "meta.json"},
		{"malformed meta", "{", gold, "meta.json"},
		{"missing golden file", string(raw), nil, "golden.safetensors"},
		{"truncated golden", string(raw), gold[:len(gold)/2], "golden.safetensors"},
		{"no runs", edit(func(m *Meta) { m.Runs = nil }), gold, "first run"},
		{"unknown trainable", edit(func(m *Meta) {
			m.Runs[1].Trainable = append(m.Runs[1].Trainable, Param{Name: "extra.weight", Shape: []int{2}})
		}), gold, `"accum.after.extra.weight" missing`},
		{"wrong shape", edit(func(m *Meta) { m.Runs[2].Trainable[0].Shape = []int{32, 64} }), gold,
			`"warmup.after.lm_head.weight" has shape [64 32], meta.json implies [32 64]`},
		{"steps vs counts", edit(func(m *Meta) { m.Runs[0].Steps = 4 }), gold, "counted-token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.meta != "" {
				if err := os.WriteFile(filepath.Join(dir, "meta.json"), []byte(tc.meta), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.golden != nil {
				if err := os.WriteFile(filepath.Join(dir, "golden.safetensors"), tc.golden, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Load error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// readFile returns the contents of path, failing the test if it cannot be
// read.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// editMeta returns the meta.json raw decoded as an M, changed by fn and
// encoded again.
func editMeta[M any](t *testing.T, raw []byte, fn func(m *M)) string {
	t.Helper()
	var m M
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	fn(&m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
