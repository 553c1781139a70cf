package hfconfig

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine"
)

func ip(v int) *int { return &v }

// norm strips the unexported bookkeeping for comparisons.
func norm(c *Config) Config {
	d := *c.Clone()
	d.raw, d.orig, d.unknown, d.warnings = nil, nil, nil, nil
	return d
}

func TestLoadFixtures(t *testing.T) {
	tests := []struct {
		dir  string
		want Config
	}{
		{"tinyllama", Config{
			Arch: ArchLlama, ModelType: "llama", VocabSize: 32000, Hidden: 2048, Layers: 22,
			Heads: 32, KVHeads: 4, HeadDim: 64, Intermediate: 5632, MaxPos: 2048, NormEps: 1e-5,
			RopeTheta: 10000, HiddenAct: "silu", BosTokenID: ip(1), EosTokenIDs: []int{2},
			TorchDtype: "bfloat16",
		}},
		{"llama32", Config{
			Arch: ArchLlama, ModelType: "llama", VocabSize: 128256, Hidden: 2048, Layers: 16,
			Heads: 32, KVHeads: 8, HeadDim: 64, Intermediate: 8192, MaxPos: 131072, NormEps: 1e-5,
			RopeTheta: 500000, RopeScaling: &RopeScaling{Type: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8192},
			TieEmbeddings: true, HiddenAct: "silu", BosTokenID: ip(128000),
			EosTokenIDs: []int{128001, 128008, 128009}, TorchDtype: "bfloat16",
		}},
		{"mistral", Config{
			Arch: ArchMistral, ModelType: "mistral", VocabSize: 32000, Hidden: 4096, Layers: 32,
			Heads: 32, KVHeads: 8, HeadDim: 128, Intermediate: 14336, MaxPos: 32768, NormEps: 1e-5,
			RopeTheta: 10000, HiddenAct: "silu", BosTokenID: ip(1), EosTokenIDs: []int{2},
			TorchDtype: "bfloat16", SlidingWindow: ip(4096),
		}},
		{"qwen2", Config{
			Arch: ArchQwen2, ModelType: "qwen2", VocabSize: 151936, Hidden: 896, Layers: 24,
			Heads: 14, KVHeads: 2, HeadDim: 64, Intermediate: 4864, MaxPos: 131072, NormEps: 1e-6,
			RopeTheta: 1e6, TieEmbeddings: true, AttentionBias: true, HiddenAct: "silu",
			BosTokenID: ip(151643), EosTokenIDs: []int{151643}, TorchDtype: "bfloat16", MaxWindowLayers: 24,
		}},
		{"gpt2", Config{
			Arch: ArchGPT2, ModelType: "gpt2", VocabSize: 50257, Hidden: 768, Layers: 12,
			Heads: 12, KVHeads: 12, HeadDim: 64, Intermediate: 3072, MaxPos: 1024, NormEps: 1e-5,
			TieEmbeddings: true, AttentionBias: true, AttnOutBias: true, MLPBias: true,
			HiddenAct: "gelu_new", BosTokenID: ip(50256), EosTokenIDs: []int{50256},
			AttentionDropout: 0.1, ResidDropout: 0.1, EmbdDropout: 0.1,
		}},
		{"gemma2", Config{
			Arch: ArchGemma2, ModelType: "gemma2", VocabSize: 256000, Hidden: 2304, Layers: 26,
			Heads: 8, KVHeads: 4, HeadDim: 256, Intermediate: 9216, MaxPos: 8192, NormEps: 1e-6,
			RopeTheta: 10000, TieEmbeddings: true, HiddenAct: "gelu_pytorch_tanh", BosTokenID: ip(2),
			EosTokenIDs: []int{1}, PadTokenID: ip(0), TorchDtype: "float32", SlidingWindow: ip(4096),
			SlidingPattern: 2, QueryPreAttnScalar: 256, AttnSoftCap: 50, FinalSoftCap: 30,
		}},
		{"gemma3", Config{
			Arch: ArchGemma3, ModelType: "gemma3_text", VocabSize: 262144, Hidden: 1152, Layers: 26,
			Heads: 4, KVHeads: 1, HeadDim: 256, Intermediate: 6912, MaxPos: 32768, NormEps: 1e-6,
			RopeTheta: 1e6, TieEmbeddings: true, HiddenAct: "gelu_pytorch_tanh", BosTokenID: ip(2),
			EosTokenIDs: []int{1, 106}, PadTokenID: ip(0), TorchDtype: "bfloat16", SlidingWindow: ip(512),
			SlidingPattern: 6, QueryPreAttnScalar: 256, RopeLocalTheta: 10000,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.dir, func(t *testing.T) {
			dir := filepath.Join("testdata", tc.dir)
			c, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := norm(c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			// Saving an unchanged config reproduces transformers' file.
			out := t.TempDir()
			if err := c.Save(out); err != nil {
				t.Fatal(err)
			}
			want, _ := os.ReadFile(filepath.Join(dir, FileName))
			got, _ := os.ReadFile(filepath.Join(out, FileName))
			if string(got) != string(want) {
				t.Errorf("unchanged save differs:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestActivation(t *testing.T) {
	for _, tc := range []struct {
		act  string
		want engine.Act
	}{{"silu", engine.ActSiLU}, {"gelu_new", engine.ActGELUTanh}, {"gelu", engine.ActGELU}, {"gelu_pytorch_tanh", engine.ActGELUTanh}, {"relu", engine.ActReLU}} {
		c := &Config{HiddenAct: tc.act}
		if got, err := c.Act(); err != nil || got != tc.want {
			t.Errorf("Act(%q) = %v, %v; want %v", tc.act, got, err, tc.want)
		}
	}
	if _, err := (&Config{HiddenAct: "mish"}).Act(); err == nil {
		t.Error("Act(mish) succeeded")
	}
}

// TestDefaults checks transformers' per-architecture defaults for keys a
// minimal config leaves out.
func TestDefaults(t *testing.T) {
	tests := []struct {
		name string
		json string
		want Config
	}{
		{"llama", `{"architectures":["LlamaForCausalLM"],"vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":12}`, Config{
			Arch: ArchLlama, ModelType: "llama", VocabSize: 10, Hidden: 8, Layers: 1, Heads: 2, KVHeads: 2, HeadDim: 4,
			Intermediate: 12, MaxPos: 2048, NormEps: 1e-6, RopeTheta: 10000, HiddenAct: "silu",
			BosTokenID: ip(1), EosTokenIDs: []int{2},
		}},
		{"mistral via model_type", `{"model_type":"mistral","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"intermediate_size":12}`, Config{
			Arch: ArchMistral, ModelType: "mistral", VocabSize: 10, Hidden: 8, Layers: 1, Heads: 2, KVHeads: 1, HeadDim: 4,
			Intermediate: 12, MaxPos: 131072, NormEps: 1e-6, RopeTheta: 10000, HiddenAct: "silu",
			BosTokenID: ip(1), EosTokenIDs: []int{2}, SlidingWindow: ip(4096),
		}},
		{"qwen2", `{"architectures":["Qwen2ForCausalLM"],"vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":12,"use_sliding_window":true,"sliding_window":64,"pad_token_id":null}`, Config{
			Arch: ArchQwen2, ModelType: "qwen2", VocabSize: 10, Hidden: 8, Layers: 1, Heads: 2, KVHeads: 2, HeadDim: 4,
			Intermediate: 12, MaxPos: 32768, NormEps: 1e-6, RopeTheta: 10000, HiddenAct: "silu",
			AttentionBias: true, SlidingWindow: ip(64), MaxWindowLayers: 28,
		}},
		{"llama biases, explicit head_dim, pad, null eos", `{"architectures":["LlamaForCausalLM"],"vocab_size":10,"hidden_size":10,"num_hidden_layers":1,"num_attention_heads":4,"head_dim":6,"intermediate_size":12,"attention_bias":true,"mlp_bias":true,"pad_token_id":0,"eos_token_id":null,"rope_scaling":{"type":"linear","factor":2.0},"dtype":"float16"}`, Config{
			Arch: ArchLlama, ModelType: "llama", VocabSize: 10, Hidden: 10, Layers: 1, Heads: 4, KVHeads: 4, HeadDim: 6,
			Intermediate: 12, MaxPos: 2048, NormEps: 1e-6, RopeTheta: 10000, HiddenAct: "silu",
			AttentionBias: true, AttnOutBias: true, MLPBias: true, RopeScaling: &RopeScaling{Type: "linear", Factor: 2},
			BosTokenID: ip(1), PadTokenID: ip(0), TorchDtype: "float16",
		}},
		{"gpt2", `{"architectures":["GPT2LMHeadModel"],"vocab_size":10,"n_embd":8,"n_layer":1,"n_head":2,"n_inner":null}`, Config{
			Arch: ArchGPT2, ModelType: "gpt2", VocabSize: 10, Hidden: 8, Layers: 1, Heads: 2, KVHeads: 2, HeadDim: 4,
			Intermediate: 32, MaxPos: 1024, NormEps: 1e-5, TieEmbeddings: true, AttentionBias: true, AttnOutBias: true,
			MLPBias: true, HiddenAct: "gelu_new", BosTokenID: ip(50256), EosTokenIDs: []int{50256},
			AttentionDropout: 0.1, ResidDropout: 0.1, EmbdDropout: 0.1, // GPT2Config's defaults
		}},
		{"integral float and default rope type", `{"architectures":["LlamaForCausalLM"],"vocab_size":10.0,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":12,"rope_scaling":{"rope_type":"default"}}`, Config{
			Arch: ArchLlama, ModelType: "llama", VocabSize: 10, Hidden: 8, Layers: 1, Heads: 2, KVHeads: 2, HeadDim: 4,
			Intermediate: 12, MaxPos: 2048, NormEps: 1e-6, RopeTheta: 10000, HiddenAct: "silu",
			BosTokenID: ip(1), EosTokenIDs: []int{2},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.json), "m/config.json")
			if err != nil {
				t.Fatal(err)
			}
			if got := norm(c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const llama = `"architectures":["LlamaForCausalLM"],"vocab_size":10,"num_hidden_layers":1,"intermediate_size":12`
	tests := []struct {
		name string
		json string
		want string
	}{
		{"malformed", "{\n  \"vocab_size\": 10,\n  \"hidden_size\": ,\n}", `m/config.json:3:18: malformed JSON`},
		{"truncated", `{"vocab_size": 10`, `m/config.json:1:17: malformed JSON`},
		{"not an object", `[1]`, `m/config.json: must be a JSON object`},
		{"null", `null`, `must be a JSON object, got null`},
		{"unknown arch", `{"architectures":["BertModel"]}`, `unsupported architecture "BertModel" in m/config.json; supported: ` + strings.Join(SupportedArchitectures(), ", ")},
		{"unknown model_type", `{"model_type":"bert"}`, `unsupported architecture "model_type bert" in m/config.json`},
		{"no arch at all", `{"vocab_size":1}`, `neither "architectures" nor "model_type"`},
		{"architectures wrong type", `{"architectures":"LlamaForCausalLM"}`, `field "architectures": must be a list of strings`},
		{"model_type mismatch", `{` + llama + `,"hidden_size":8,"num_attention_heads":2,"model_type":"qwen2"}`, `field "model_type": "qwen2" does not match architecture LlamaForCausalLM`},
		{"missing hidden", `{` + llama + `,"num_attention_heads":2}`, `m/config.json: field "hidden_size": missing (required)`},
		{"zero heads", `{` + llama + `,"hidden_size":8,"num_attention_heads":0}`, `field "num_attention_heads": must be positive, got 0`},
		{"string hidden", `{` + llama + `,"hidden_size":"8","num_attention_heads":2}`, `field "hidden_size": must be an integer, got "8"`},
		{"fractional", `{` + llama + `,"hidden_size":8.5,"num_attention_heads":2}`, `field "hidden_size": must be an integer, got 8.5`},
		{"heads not dividing hidden", `{` + llama + `,"hidden_size":10,"num_attention_heads":4}`, `field "hidden_size": 10 is not divisible by num_attention_heads = 4`},
		{"kv not dividing heads", `{` + llama + `,"hidden_size":12,"num_attention_heads":6,"num_key_value_heads":4}`, `field "num_key_value_heads": 4 must be positive and divide num_attention_heads = 6`},
		{"bool wrong type", `{` + llama + `,"hidden_size":8,"num_attention_heads":2,"tie_word_embeddings":"no"}`, `field "tie_word_embeddings": must be true or false, got "no"`},
		{"eps wrong type", `{` + llama + `,"hidden_size":8,"num_attention_heads":2,"rms_norm_eps":"1e-5"}`, `field "rms_norm_eps": must be a number`},
		{"eps zero", `{` + llama + `,"hidden_size":8,"num_attention_heads":2,"rms_norm_eps":0}`, `field "rms_norm_eps" must be positive`},
		{"eos bad list", `{` + llama + `,"hidden_size":8,"num_attention_heads":2,"eos_token_id":[1,"x"]}`, `field "eos_token_id": element 1 must be a non-negative integer`},
		{"eos object", `{` + llama + `,"hidden_size":8,"num_attention_heads":2,"eos_token_id":{}}`, `field "eos_token_id": must be an integer or a list`},
		{"rope yarn", `{` + llama + `,"hidden_size":8,"num_attention_heads":2,"rope_scaling":{"rope_type":"yarn","factor":4.0}}`, `field "rope_scaling": rope scaling type "yarn" is not supported (supported: linear, llama3, longrope)`},
		{"rope llama3 incomplete", `{` + llama + `,"hidden_size":8,"num_attention_heads":2,"rope_scaling":{"rope_type":"llama3","factor":8.0}}`, `field "rope_scaling": llama3: need 0 < low_freq_factor < high_freq_factor`},
		{"rope factor type", `{` + llama + `,"hidden_size":8,"num_attention_heads":2,"rope_scaling":{"type":"linear","factor":"2"}}`, `field "rope_scaling": field "factor": must be a number`},
		{"rope not object", `{` + llama + `,"hidden_size":8,"num_attention_heads":2,"rope_scaling":3}`, `field "rope_scaling": must be an object or null`},
		{"odd head dim", `{` + llama + `,"hidden_size":6,"num_attention_heads":2}`, `"head_dim" = 3 must be even`},
		{"unknown act", `{` + llama + `,"hidden_size":8,"num_attention_heads":2,"hidden_act":"mish"}`, `field "hidden_act": unsupported activation "mish"`},
		{"gpt2 heads", `{"architectures":["GPT2LMHeadModel"],"vocab_size":10,"n_embd":10,"n_layer":1,"n_head":4}`, `field "n_embd": 10 is not divisible by n_head = 4`},
		{"gpt2 inverse idx", `{"architectures":["GPT2LMHeadModel"],"vocab_size":10,"n_embd":8,"n_layer":1,"n_head":2,"scale_attn_by_inverse_layer_idx":true}`, `field "scale_attn_by_inverse_layer_idx": true is not supported`},
		{"gpt2 untied", `{"architectures":["GPT2LMHeadModel"],"vocab_size":10,"n_embd":8,"n_layer":1,"n_head":2,"tie_word_embeddings":false}`, `always ties`},
		{"negative bos", `{` + llama + `,"hidden_size":8,"num_attention_heads":2,"bos_token_id":-1}`, `field "bos_token_id": must not be negative`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.json), "m/config.json")
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "m/config.json") {
				t.Errorf("error %q\nwant it to contain %q and name the file", err, tc.want)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
		t.Fatalf("error = %v", err)
	}
}

// rawMap reads a saved config as a generic map.
func rawMap(t *testing.T, dir string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSaveChangedFields edits fields and checks that exactly the matching
// keys change, that everything else survives, and that Load reads back the
// edited Config.
func TestSaveChangedFields(t *testing.T) {
	tests := []struct {
		dir     string
		edit    func(c *Config)
		changed map[string]any // keys whose value must change, and to what
	}{
		{"tinyllama", func(c *Config) { c.TieEmbeddings = true; c.TorchDtype = "float32"; c.VocabSize = 32001 },
			map[string]any{"tie_word_embeddings": true, "torch_dtype": "float32", "vocab_size": 32001.0}},
		{"llama32", func(c *Config) { c.EosTokenIDs = []int{7}; c.RopeScaling = nil; c.PadTokenID = ip(3) },
			map[string]any{"eos_token_id": 7.0, "rope_scaling": nil, "pad_token_id": 3.0}},
		{"tinyllama", func(c *Config) {
			c.RopeScaling = &RopeScaling{Type: "linear", Factor: 4}
			c.NormEps = 1e-6
			c.AttentionBias, c.AttnOutBias = true, true
		}, map[string]any{"rope_scaling": map[string]any{"rope_type": "linear", "factor": 4.0}, "rms_norm_eps": 1e-6, "attention_bias": true}},
		{"gpt2", func(c *Config) { c.Hidden = 64; c.Heads = 8; c.HeadDim = 8; c.KVHeads = 8; c.Intermediate = 100 },
			map[string]any{"n_embd": 64.0, "n_head": 8.0, "n_inner": 100.0}},
		{"qwen2", func(c *Config) { c.SlidingWindow = ip(512); c.EosTokenIDs = []int{1, 2} },
			map[string]any{"use_sliding_window": true, "sliding_window": 512.0, "eos_token_id": []any{1.0, 2.0}}},
		{"mistral", func(c *Config) { c.SlidingWindow = nil; c.KVHeads = 4 },
			map[string]any{"sliding_window": nil, "num_key_value_heads": 4.0}},
	}
	for _, tc := range tests {
		t.Run(tc.dir, func(t *testing.T) {
			src := filepath.Join("testdata", tc.dir)
			c, err := Load(src)
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(c)
			want := norm(c)
			out := t.TempDir()
			if err := c.Save(out); err != nil {
				t.Fatal(err)
			}
			before, after := rawMap(t, src), rawMap(t, out)
			for k, v := range tc.changed {
				if !reflect.DeepEqual(after[k], v) {
					t.Errorf("key %q = %#v, want %#v", k, after[k], v)
				}
			}
			for k, v := range before {
				if _, changed := tc.changed[k]; !changed && !reflect.DeepEqual(after[k], v) {
					t.Errorf("untouched key %q changed: %#v -> %#v", k, v, after[k])
				}
			}
			for k := range after {
				if _, ok := before[k]; !ok {
					if _, changed := tc.changed[k]; !changed {
						t.Errorf("new key %q appeared", k)
					}
				}
			}
			back, err := Load(out)
			if err != nil {
				t.Fatal(err)
			}
			if got := norm(back); !reflect.DeepEqual(got, want) {
				t.Errorf("reloaded %+v\nwant     %+v", got, want)
			}
		})
	}
}

func TestSaveRejectsInvalid(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "qwen2"))
	if err != nil {
		t.Fatal(err)
	}
	c.KVHeads = 3
	dir := t.TempDir()
	if err := c.Save(dir); err == nil || !strings.Contains(err.Error(), "num_key_value_heads") || !strings.Contains(err.Error(), FileName) {
		t.Errorf("error = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); !os.IsNotExist(err) {
		t.Error("invalid config was written")
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		new     func(Sizes) (*Config, error)
		sizes   Sizes
		want    Config
		hasKeys []string
	}{
		{"llama", NewLlama, Sizes{VocabSize: 64, Hidden: 16, Layers: 2, Heads: 4, KVHeads: 2, Intermediate: 40, MaxPos: 128}, Config{
			Arch: ArchLlama, ModelType: "llama", VocabSize: 64, Hidden: 16, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 4,
			Intermediate: 40, MaxPos: 128, NormEps: 1e-6, RopeTheta: 10000, HiddenAct: "silu",
			BosTokenID: ip(1), EosTokenIDs: []int{2}, TorchDtype: "float32",
		}, []string{"attention_bias", "mlp_bias", "rope_scaling", "initializer_range", "pretraining_tp", "use_cache", "head_dim"}},
		{"mistral", NewMistral, Sizes{VocabSize: 64, Hidden: 16, Layers: 2, Heads: 4, KVHeads: 1, Intermediate: 40}, Config{
			Arch: ArchMistral, ModelType: "mistral", VocabSize: 64, Hidden: 16, Layers: 2, Heads: 4, KVHeads: 1, HeadDim: 4,
			Intermediate: 40, MaxPos: 131072, NormEps: 1e-6, RopeTheta: 10000, HiddenAct: "silu",
			BosTokenID: ip(1), EosTokenIDs: []int{2}, TorchDtype: "float32", SlidingWindow: ip(4096),
		}, []string{"sliding_window"}},
		{"qwen2", NewQwen2, Sizes{VocabSize: 64, Hidden: 16, Layers: 2, Heads: 4, Intermediate: 40}, Config{
			Arch: ArchQwen2, ModelType: "qwen2", VocabSize: 64, Hidden: 16, Layers: 2, Heads: 4, KVHeads: 4, HeadDim: 4,
			Intermediate: 40, MaxPos: 32768, NormEps: 1e-6, RopeTheta: 10000, HiddenAct: "silu",
			AttentionBias: true, TorchDtype: "float32", MaxWindowLayers: 28,
		}, []string{"use_sliding_window", "max_window_layers"}},
		{"gpt2", NewGPT2, Sizes{VocabSize: 64, Hidden: 16, Layers: 2, Heads: 4, MaxPos: 32}, Config{
			Arch: ArchGPT2, ModelType: "gpt2", VocabSize: 64, Hidden: 16, Layers: 2, Heads: 4, KVHeads: 4, HeadDim: 4,
			Intermediate: 64, MaxPos: 32, NormEps: 1e-5, TieEmbeddings: true, AttentionBias: true, AttnOutBias: true,
			MLPBias: true, HiddenAct: "gelu_new", BosTokenID: ip(63), EosTokenIDs: []int{63}, TorchDtype: "float32",
		}, []string{"n_inner", "scale_attn_weights", "attn_pdrop"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.new(tc.sizes)
			if err != nil {
				t.Fatal(err)
			}
			if got := norm(c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			dir := t.TempDir()
			if err := c.Save(dir); err != nil {
				t.Fatal(err)
			}
			m := rawMap(t, dir)
			if arch, _ := m["architectures"].([]any); len(arch) != 1 || arch[0] != tc.want.Arch || m["model_type"] != tc.want.ModelType {
				t.Errorf("architectures/model_type = %v / %v", m["architectures"], m["model_type"])
			}
			for _, k := range tc.hasKeys {
				if _, ok := m[k]; !ok {
					t.Errorf("key %q missing", k)
				}
			}
			back, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := norm(back); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("reloaded %+v\nwant     %+v", got, tc.want)
			}
			// Saving again without changes is byte-stable.
			first, _ := os.ReadFile(filepath.Join(dir, FileName))
			if err := back.Save(dir); err != nil {
				t.Fatal(err)
			}
			if again, _ := os.ReadFile(filepath.Join(dir, FileName)); string(again) != string(first) {
				t.Errorf("second save differs")
			}
		})
	}
	if _, err := NewLlama(Sizes{VocabSize: 10, Hidden: 10, Layers: 1, Heads: 4, Intermediate: 8}); err == nil || !strings.Contains(err.Error(), "not divisible") {
		t.Errorf("NewLlama with bad heads: %v", err)
	}
	if _, err := NewGPT2(Sizes{VocabSize: 10, Hidden: 8, Layers: 1, Heads: 4, KVHeads: 2}); err == nil {
		t.Error("NewGPT2 with KVHeads != Heads succeeded")
	}
}

func TestSetRaw(t *testing.T) {
	c, err := NewLlama(Sizes{VocabSize: 64, Hidden: 16, Layers: 2, Heads: 4, Intermediate: 40})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetRaw("hidden_size", 3); err == nil {
		t.Error("SetRaw of a field key succeeded")
	}
	if err := c.SetRaw("gotune_method", "lora"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := c.Save(dir); err != nil {
		t.Fatal(err)
	}
	if m := rawMap(t, dir); m["gotune_method"] != "lora" {
		t.Errorf("gotune_method = %v", m["gotune_method"])
	}
}

// TestPyFloat compares with Python's repr, as printed by /usr/bin/python3.
func TestPyFloat(t *testing.T) {
	three := 3.0 // a variable: Go would fold 3*1e-5 exactly at compile time
	for _, tc := range []struct {
		f    float64
		want string
	}{
		{0, "0.0"}, {1, "1.0"}, {10000, "10000.0"}, {500000, "500000.0"}, {1e-5, "1e-05"},
		{1e-6, "1e-06"}, {three * 1e-5, "3.0000000000000004e-05"}, {0.02, "0.02"}, {0.1, "0.1"},
		{1e-4, "0.0001"}, {0.0001234, "0.0001234"}, {1e15, "1000000000000000.0"}, {1e16, "1e+16"},
		{1.5e16, "1.5e+16"}, {123456789012345678.0, "1.2345678901234568e+17"}, {1e22, "1e+22"},
		{5e-324, "5e-324"}, {1.7976931348623157e308, "1.7976931348623157e+308"}, {2.5, "2.5"},
		{-3.75e-7, "-3.75e-07"}, {100.0 / 3, "33.333333333333336"}, {1e100, "1e+100"},
	} {
		if got := pyFloat(tc.f); got != tc.want {
			t.Errorf("pyFloat(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}
