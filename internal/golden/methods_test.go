package golden

import (
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

// wantMethods are the method runs issue 4 asks goldens for, with their
// --method.
var wantMethods = map[string]string{
	"lora": "lora", "lora-all-linear": "lora", "rslora": "lora", "dora": "lora",
	"gpt2-lora": "lora", "gpt2-dora": "lora", "qwen2-lora-all-linear": "lora", "qwen2-dora": "lora", "qwen3-lora": "lora", "olmo2-lora": "lora", "granite-lora": "lora", "olmo2-adapter-houlsby": "adapter", "granite-adapter-parallel": "adapter", "mistral-swa-lora": "lora", "qwen2-swa-lora": "lora",
	"phi3-lora": "lora", "phi3-dora": "lora", "glm-lora": "lora", "glm4-lora": "lora", "glm4-adapter-houlsby": "adapter", "phi3-prefix": "prefix",
	"gemma2-lora": "lora", "gemma3-lora": "lora", "gemma2-prompt": "prompt", "gemma3-prompt": "prompt", "gemma2-prefix": "prefix",
	"adapter-houlsby": "adapter", "adapter-pfeiffer": "adapter", "adapter-parallel": "adapter",
	"adapter-series": "adapter", "adapter-parallel-normed": "adapter",
	"gpt2-adapter-houlsby": "adapter", "gpt2-adapter-pfeiffer": "adapter", "gpt2-adapter-parallel": "adapter",
	"prompt":      "prompt",
	"ptuning-mlp": "ptuning", "ptuning-lstm": "ptuning",
	"prefix": "prefix", "prefix-local": "prefix", "prefix-projection": "prefix", "gpt2-prefix": "prefix",
	"freeze-last-layer": "freeze", "freeze-mlp-norm": "freeze",
}

// peftTypes maps --method to adapter_config.json's peft_type.
var peftTypes = map[string]string{
	"lora": "LORA", "adapter": "BOTTLENECK", "prompt": "PROMPT_TUNING", "ptuning": "P_TUNING",
	"prefix": "PREFIX_TUNING",
}

func loadMethods(t *testing.T) []*MethodSet {
	t.Helper()
	sets, err := LoadMethods(filepath.Join(root, MethodsDir))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range sets {
		got[s.Meta.Name] = s.Meta.Run.Method
		if filepath.Base(s.Dir) != s.Meta.Name || s.Meta.Run.Name != s.Meta.Name {
			t.Errorf("%s: meta.json names the run %q / %q", s.Dir, s.Meta.Name, s.Meta.Run.Name)
		}
	}
	if !reflect.DeepEqual(got, wantMethods) {
		t.Errorf("method sets %v, want %v", got, wantMethods)
	}
	return sets
}

// methodDecay is the Hugging Face Trainer's rule by name: no decay for
// anything whose leaf name contains "bias" (LSTM's bias_ih_l0 included) or
// for normalisation weights; everything else decays.
func methodDecay(name string) bool {
	leaf := name[strings.LastIndex(name, ".")+1:]
	return !strings.Contains(leaf, "bias") && !strings.Contains(name, "norm") && !strings.Contains(name, ".ln_")
}

func TestMethodSetsBase(t *testing.T) {
	for _, s := range loadMethods(t) {
		t.Run(s.Meta.Name, func(t *testing.T) {
			base, err := Load(s.BaseDir())
			if err != nil {
				t.Fatal(err)
			}
			if base.Meta.Model != s.Meta.Model || base.Meta.Architecture != s.Meta.Architecture {
				t.Errorf("base %s/%s, meta.json says %s/%s", base.Meta.Model, base.Meta.Architecture, s.Meta.Model, s.Meta.Architecture)
			}
			if filepath.Clean(s.Path(s.Meta.Data)) != filepath.Clean(base.Path(base.Meta.Data)) {
				t.Errorf("data %s is not the base set's %s", s.Meta.Data, base.Meta.Data)
			}
			r, full := s.Meta.Run, base.Meta.Runs[0]
			// Same optimizer as the full runs, except max_grad_norm.
			if r.LR != full.LR || r.Betas != full.Betas || r.Eps != full.Eps || r.WeightDecay != full.WeightDecay ||
				r.BatchSize != full.BatchSize || r.SeqLen != full.SeqLen || r.Steps != full.Steps || r.Schedule != "constant" {
				t.Errorf("hyper-parameters %+v differ from the full run's %+v", r, full)
			}
		})
	}
}

// TestMethodLossFromLogits recomputes the initial loss from the stored
// logits, with the labels padded in front by one -100 per prepended
// virtual token: the last virtual token is scored against the first real
// label, and the virtual tokens themselves count nothing.
func TestMethodLossFromLogits(t *testing.T) {
	for _, s := range loadMethods(t) {
		t.Run(s.Meta.Name, func(t *testing.T) {
			rows := readRows(t, s.Path(s.Meta.Data))
			logits, shape := s.Tensor("logits")
			B, T, V := shape[0], shape[1], shape[2]
			P := s.Meta.PrependedTokens
			var all []float64
			for b := 0; b < B; b++ {
				labels := make([]int, P, P+len(rows[b].Labels))
				for i := range labels {
					labels[i] = -100
				}
				all = append(all, tokenLosses(logits, b, T, V, append(labels, rows[b].Labels...))...)
			}
			loss, _ := s.Tensor("loss")
			losses, _ := s.Tensor("losses")
			const tol = 2e-6
			for _, want := range []float32{loss[0], losses[0]} {
				if e := math.Abs(mean(all)-float64(want)) / float64(want); e > tol {
					t.Errorf("loss from logits %.8f, stored %.8f (rel err %.2g)", mean(all), want, e)
				}
			}
			if len(all) != s.Meta.Run.CountedTokens[0] {
				t.Errorf("%d counted targets, meta.json says %d", len(all), s.Meta.Run.CountedTokens[0])
			}
		})
	}
}

// TestMethodGradNormAndClipping recomputes the first gradient norm and
// checks that no norm is so close to max_grad_norm that a float32
// recomputation could clip where PyTorch did not, that every run has an
// unclipped step, and that the clipped branch is exercised too.
func TestMethodGradNormAndClipping(t *testing.T) {
	clippedRuns := 0
	for _, s := range loadMethods(t) {
		r := s.Meta.Run
		norms, _ := s.Tensor("grad_norms")
		clipped := 0
		for _, n := range norms {
			if math.Abs(float64(n)-r.MaxGradNorm) < 0.005*r.MaxGradNorm {
				t.Errorf("%s: grad norm %g within 0.5%% of max_grad_norm %g", s.Meta.Name, n, r.MaxGradNorm)
			}
			if float64(n) > r.MaxGradNorm {
				clipped++
			}
		}
		if clipped == len(norms) {
			t.Errorf("%s: every step clipped (norms %v, max %g)", s.Meta.Name, norms, r.MaxGradNorm)
		}
		if clipped > 0 {
			clippedRuns++
		}
		var sq float64
		for _, p := range r.Trainable {
			g, _ := s.Tensor("grad." + p.Name)
			for _, v := range g {
				sq += float64(v) * float64(v)
			}
		}
		if e := math.Abs(math.Sqrt(sq)-float64(norms[0])) / float64(norms[0]); e > 1e-5 {
			t.Errorf("%s: norm of stored grads %.7f, grad_norms[0] %.7f", s.Meta.Name, math.Sqrt(sq), norms[0])
		}
		lrs, _ := s.Tensor("lrs")
		for k, lr := range lrs {
			if want := r.LR * lrMultiplier(&r, k); math.Abs(float64(lr)-want) > 1e-6*r.LR {
				t.Errorf("%s: step %d lr %g, want %g", s.Meta.Name, k+1, lr, want)
			}
		}
	}
	if clippedRuns < len(wantMethods)/2 {
		t.Errorf("only %d runs clip a step: the clipped branch is barely tested", clippedRuns)
	}
}

func TestMethodDecay(t *testing.T) {
	for _, s := range loadMethods(t) {
		for _, p := range s.Meta.Run.Trainable {
			if p.Decay != methodDecay(p.Name) {
				t.Errorf("%s: %s has decay %v", s.Meta.Name, p.Name, p.Decay)
			}
		}
	}
}

// readAll returns every tensor of a safetensors file, checking it is F32.
func readAll(t *testing.T, path string) map[string]tensor {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]tensor{}
	for _, n := range f.Names() {
		if info, _ := f.Info(n); info.DType != "F32" {
			t.Errorf("%s: %s is %s, want F32", path, n, info.DType)
		}
		data, shape, err := f.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = tensor{data, shape}
	}
	return out
}

func shapes(m map[string]tensor) map[string][]int {
	out := map[string][]int{}
	for n, t := range m {
		out[n] = t.shape
	}
	return out
}

func paramShapes(ps []Param) map[string][]int {
	out := map[string][]int{}
	for _, p := range ps {
		out[p.Name] = p.Shape
	}
	return out
}

func readAdapterConfig(t *testing.T, s *MethodSet) map[string]any {
	t.Helper()
	raw := readFile(t, filepath.Join(s.AdapterDir(), "adapter_config.json"))
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("adapter_config.json: %v", err)
	}
	return c
}

// TestMethodInitialFiles checks the files a run starts from: the adapter
// folder (PEFT's config keys and tensors, non-zero everywhere), the encoder
// file, or for freeze the base weights; and that training moved every
// trainable tensor.
func TestMethodInitialFiles(t *testing.T) {
	for _, s := range loadMethods(t) {
		t.Run(s.Meta.Name, func(t *testing.T) {
			r := s.Meta.Run
			var init map[string]tensor
			switch {
			case r.Method == "freeze":
				if r.Adapter != "" || s.Meta.Encoder != "" {
					t.Errorf("freeze names an adapter %q / encoder %q", r.Adapter, s.Meta.Encoder)
				}
				init = readAll(t, filepath.Join(s.BaseDir(), "model.safetensors"))
			case r.Adapter == "":
				t.Fatalf("method %s without an adapter folder", r.Method)
			default:
				c := readAdapterConfig(t, s)
				if c["peft_type"] != peftTypes[r.Method] || c["task_type"] != "CAUSAL_LM" || c["inference_mode"] != true {
					t.Errorf("adapter_config.json: peft_type %v, task_type %v, inference_mode %v", c["peft_type"], c["task_type"], c["inference_mode"])
				}
				if p, _ := c["base_model_name_or_path"].(string); p == "" {
					t.Errorf("adapter_config.json: no base_model_name_or_path")
				}
				adapter := readAll(t, filepath.Join(s.AdapterDir(), "adapter_model.safetensors"))
				init = adapter
				if s.Meta.Encoder != "" {
					// PEFT's file holds only the encoder output; the
					// trainable encoder weights are in the encoder file.
					if !reflect.DeepEqual(shapes(adapter), paramShapes(s.Meta.Saved)) {
						t.Errorf("adapter_model.safetensors %v, want the saved tensors %v", shapes(adapter), paramShapes(s.Meta.Saved))
					}
					for _, p := range s.Meta.Saved {
						after, _ := s.Tensor("saved." + p.Name)
						if RelErr(after, adapter[p.Name].data) < 1e-3 {
							t.Errorf("saved.%s barely differs from its initial value", p.Name)
						}
					}
					init = readAll(t, s.Path(s.Meta.Encoder))
				} else if len(s.Meta.Saved) != 0 {
					t.Errorf("saved tensors %v without an encoder file", s.Meta.Saved)
				}
				if !reflect.DeepEqual(shapes(init), paramShapes(r.Trainable)) {
					t.Errorf("initial tensors %v, trainable %v", shapes(init), paramShapes(r.Trainable))
				}
			}
			for _, p := range r.Trainable {
				x, ok := init[p.Name]
				if !ok || !reflect.DeepEqual(x.shape, p.Shape) {
					t.Errorf("%s: initial value missing or shaped %v, want %v", p.Name, x.shape, p.Shape)
					continue
				}
				for i, v := range x.data {
					if v == 0 {
						t.Errorf("%s: initial value [%d] is zero (goldens start from values non-zero everywhere)", p.Name, i)
						break
					}
				}
				after, _ := s.Tensor("after." + p.Name)
				if RelErr(after, x.data) < 1e-4 {
					t.Errorf("%s: three steps left it within 1e-4 of its initial value", p.Name)
				}
			}
		})
	}
}

// hiddenLayersHeads returns the hidden size, layer count, head count and
// KV-head count (0 when the config has none, as GPT-2) of a base config.
func hiddenLayersHeads(c hfConfig) (hidden, layers, heads, kvHeads int) {
	if c.Architectures[0] == "GPT2LMHeadModel" {
		return c.NEmbd, c.NLayer, c.NHead, 0
	}
	return c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads
}

func layerPath(c hfConfig, i int) string {
	if c.Architectures[0] == "GPT2LMHeadModel" {
		return fmt.Sprintf("transformer.h.%d", i)
	}
	return fmt.Sprintf("model.layers.%d", i)
}

func toInt(t *testing.T, v any, key string) int {
	t.Helper()
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) {
		t.Fatalf("%s: %v is not an integer", key, v)
	}
	return int(f)
}

func toStrings(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			s, _ := x.(string)
			out = append(out, s)
		}
	}
	return out
}

// layerList returns the layers a config value names, or 0..n-1 for null.
func layerList(t *testing.T, v any, n int) []int {
	t.Helper()
	if v == nil {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("layer list %v", v)
	}
	var out []int
	for _, x := range l {
		out = append(out, toInt(t, x, "layer"))
	}
	return out
}

// TestMethodLayout restates, from the base model's config and the adapter
// config alone, the names and shapes each method's trainable tensors must
// have (PEFT's layouts; gotune's own for bottleneck adapters and freeze),
// and compares them with what the run trains.
func TestMethodLayout(t *testing.T) {
	for _, s := range loadMethods(t) {
		t.Run(s.Meta.Name, func(t *testing.T) {
			base, err := Load(s.BaseDir())
			if err != nil {
				t.Fatal(err)
			}
			bc := readConfig(t, base)
			hidden, layers, heads, kvHeads := hiddenLayersHeads(bc)
			gpt2 := bc.Architectures[0] == "GPT2LMHeadModel"
			want := map[string][]int{}
			var saved map[string][]int
			var c map[string]any
			if s.Meta.Run.Adapter != "" {
				c = readAdapterConfig(t, s)
			}
			switch s.Meta.Run.Method {
			case "lora":
				wantLoRA(t, s, c, base.Meta.Params, gpt2, want)
			case "adapter":
				rf, size := toInt(t, c["reduction_factor"], "reduction_factor"), toInt(t, c["bottleneck_size"], "bottleneck_size")
				if size != hidden/rf {
					t.Errorf("bottleneck_size %d, hidden %d / reduction_factor %d", size, hidden, rf)
				}
				sites := []string{"mlp_adapter"}
				if c["adapter_variant"] == "houlsby" {
					sites = []string{"attn_adapter", "mlp_adapter"}
				}
				for _, i := range layerList(t, c["target_layers"], layers) {
					for _, site := range sites {
						pre := "base_model.model." + layerPath(bc, i) + "." + site + "."
						want[pre+"down_proj.weight"], want[pre+"down_proj.bias"] = []int{size, hidden}, []int{size}
						want[pre+"up_proj.weight"], want[pre+"up_proj.bias"] = []int{hidden, size}, []int{hidden}
					}
				}
			case "prompt", "ptuning":
				P := toInt(t, c["num_virtual_tokens"], "num_virtual_tokens")
				if toInt(t, c["token_dim"], "token_dim") != hidden || toInt(t, c["num_attention_heads"], "num_attention_heads") != heads ||
					toInt(t, c["num_layers"], "num_layers") != layers || s.Meta.PrependedTokens != P {
					t.Errorf("config %v does not match the model (hidden %d, heads %d, layers %d) or prepends %d", c, hidden, heads, layers, s.Meta.PrependedTokens)
				}
				if s.Meta.Run.Method == "prompt" {
					want["prompt_embeddings"] = []int{P, hidden}
					break
				}
				saved = map[string][]int{"prompt_embeddings": {P, hidden}}
				wantPTuning(t, c, P, hidden, want)
			case "prefix":
				// PEFT sizes the prefix by KV heads when the config has them.
				tokenDim, h := hidden, heads
				if kvHeads > 0 {
					tokenDim, h = hidden/heads*kvHeads, kvHeads
				}
				if toInt(t, c["token_dim"], "token_dim") != tokenDim || toInt(t, c["num_attention_heads"], "num_attention_heads") != h || toInt(t, c["num_layers"], "num_layers") != layers {
					t.Errorf("config %v: want token_dim %d, num_attention_heads %d, num_layers %d", c, tokenDim, h, layers)
				}
				P := toInt(t, c["num_virtual_tokens"], "num_virtual_tokens")
				width := len(layerList(t, c["prefix_layers"], layers)) * 2 * tokenDim
				if c["prefix_projection"] == true {
					enc := toInt(t, c["encoder_hidden_size"], "encoder_hidden_size")
					want["prompt_encoder.embedding.weight"] = []int{P, tokenDim}
					want["prompt_encoder.transform.0.weight"], want["prompt_encoder.transform.0.bias"] = []int{enc, tokenDim}, []int{enc}
					want["prompt_encoder.transform.2.weight"], want["prompt_encoder.transform.2.bias"] = []int{width, enc}, []int{width}
					saved = map[string][]int{"prompt_embeddings": {P, width}}
				} else {
					want["prompt_embeddings"] = []int{P, width}
				}
				if s.Meta.PrependedTokens != 0 {
					t.Errorf("prefix tuning prepends %d tokens", s.Meta.PrependedTokens)
				}
			case "freeze":
				wantFreeze(t, s, base.Meta.Params, layers, bc, want)
			default:
				t.Fatalf("unknown method %q", s.Meta.Run.Method)
			}
			if got := paramShapes(s.Meta.Run.Trainable); !reflect.DeepEqual(got, want) {
				t.Errorf("trainable tensors\n got %v\nwant %v", got, want)
			}
			if got := paramShapes(s.Meta.Saved); len(got)+len(saved) > 0 && !reflect.DeepEqual(got, saved) {
				t.Errorf("saved tensors %v, want %v", got, saved)
			}
		})
	}
}

// wantLoRA adds PEFT's LoRA tensors: for every targeted linear layer W
// ([out, in]; GPT-2's Conv1D stores [in, out] and is fan_in_fan_out)
// lora_A [r, in], lora_B [out, r] and with DoRA lora_magnitude_vector [out].
func wantLoRA(t *testing.T, s *MethodSet, c map[string]any, params []Param, gpt2 bool, want map[string][]int) {
	r := toInt(t, c["r"], "r")
	if c["fan_in_fan_out"] != gpt2 {
		t.Errorf("fan_in_fan_out %v for a %s model", c["fan_in_fan_out"], s.Meta.Architecture)
	}
	var opts struct {
		Targets string `json:"lora_targets"`
		DoRA    bool   `json:"use_dora"`
		RSLoRA  bool   `json:"use_rslora"`
	}
	if err := json.Unmarshal(s.Meta.Run.MethodConfig, &opts); err != nil {
		t.Fatal(err)
	}
	if c["use_dora"] != opts.DoRA || c["use_rslora"] != opts.RSLoRA {
		t.Errorf("adapter config use_dora %v use_rslora %v, options %+v", c["use_dora"], c["use_rslora"], opts)
	}
	targets := toStrings(c["target_modules"])
	sort.Strings(targets)
	var linear []string // leaf names of every linear layer but the output layer
	seen := map[string]bool{}
	for _, p := range params {
		if !strings.HasSuffix(p.Name, ".weight") || len(p.Shape) != 2 {
			continue
		}
		module := strings.TrimSuffix(p.Name, ".weight")
		leaf := module[strings.LastIndex(module, ".")+1:]
		if module == "lm_head" || leaf == "embed_tokens" || leaf == "wte" || leaf == "wpe" {
			continue
		}
		if !seen[leaf] {
			seen[leaf] = true
			linear = append(linear, leaf)
		}
		found := false
		for _, tm := range targets {
			found = found || tm == leaf
		}
		if !found {
			continue
		}
		in, out := p.Shape[1], p.Shape[0]
		if gpt2 {
			in, out = p.Shape[0], p.Shape[1]
		}
		key := "base_model.model." + module + "."
		want[key+"lora_A.weight"], want[key+"lora_B.weight"] = []int{r, in}, []int{out, r}
		if opts.DoRA {
			want[key+"lora_magnitude_vector"] = []int{out}
		}
	}
	sort.Strings(linear)
	if opts.Targets == "all-linear" && !reflect.DeepEqual(targets, linear) {
		// PEFT saves "all-linear" resolved to the module names.
		t.Errorf("all-linear saved as target_modules %v, the model's linear layers are %v", targets, linear)
	}
}

// wantPTuning adds P-Tuning's trainable tensors (PEFT's PromptEncoder
// module names under prompt_encoder.): the embedding [P, D], then MLP
// mlp_head.0 [H, D], .2 [H, H], .4 [D, H] with biases, or a bidirectional
// LSTM (torch's parameter names) followed by mlp_head.0 [2H, 2H], .2 [D, 2H].
func wantPTuning(t *testing.T, c map[string]any, P, D int, want map[string][]int) {
	H := toInt(t, c["encoder_hidden_size"], "encoder_hidden_size")
	want["prompt_encoder.embedding.weight"] = []int{P, D}
	lin := func(name string, out, in int) {
		want["prompt_encoder."+name+".weight"], want["prompt_encoder."+name+".bias"] = []int{out, in}, []int{out}
	}
	switch c["encoder_reparameterization_type"] {
	case "MLP":
		lin("mlp_head.0", H, D)
		lin("mlp_head.2", H, H)
		lin("mlp_head.4", D, H)
	case "LSTM":
		for k := 0; k < toInt(t, c["encoder_num_layers"], "encoder_num_layers"); k++ {
			in := D
			if k > 0 {
				in = 2 * H
			}
			for _, sfx := range []string{"", "_reverse"} {
				pre := fmt.Sprintf("prompt_encoder.lstm_head.%%s_l%d%s", k, sfx)
				want[fmt.Sprintf(pre, "weight_ih")], want[fmt.Sprintf(pre, "weight_hh")] = []int{4 * H, in}, []int{4 * H, H}
				want[fmt.Sprintf(pre, "bias_ih")], want[fmt.Sprintf(pre, "bias_hh")] = []int{4 * H}, []int{4 * H}
			}
		}
		lin("mlp_head.0", 2*H, 2*H)
		lin("mlp_head.2", D, 2*H)
	default:
		t.Errorf("encoder_reparameterization_type %v", c["encoder_reparameterization_type"])
	}
}

// wantFreeze adds the base parameters --method freeze trains: every
// parameter of the last N layers (the first |N| for N < 0) whose first
// path component inside the layer is one of the modules (or any, for
// "all"), and the parameters of the non-layer modules named by the extra
// modules (matched on the module's last path component).
func wantFreeze(t *testing.T, s *MethodSet, params []Param, layers int, bc hfConfig, want map[string][]int) {
	var opts struct {
		Layers  int    `json:"freeze_trainable_layers"`
		Modules string `json:"freeze_trainable_modules"`
		Extra   string `json:"freeze_extra_modules"`
	}
	if err := json.Unmarshal(s.Meta.Run.MethodConfig, &opts); err != nil {
		t.Fatal(err)
	}
	lo, hi := layers-opts.Layers, layers
	if opts.Layers < 0 {
		lo, hi = 0, -opts.Layers
	}
	modules := strings.Split(opts.Modules, ",")
	extra := strings.Split(opts.Extra, ",")
	layerRoot := strings.TrimSuffix(layerPath(bc, 0), "0")
	for _, p := range params {
		if strings.HasPrefix(p.Name, layerRoot) {
			rest := strings.TrimPrefix(p.Name, layerRoot)
			var i int
			var sub string
			if _, err := fmt.Sscanf(strings.Replace(rest, ".", " ", 2), "%d %s", &i, &sub); err != nil {
				t.Fatalf("%s: %v", p.Name, err)
			}
			first := strings.SplitN(sub, " ", 2)[0]
			if i >= lo && i < hi && (opts.Modules == "all" || contains(modules, first)) {
				want[p.Name] = p.Shape
			}
			continue
		}
		module := p.Name[:strings.LastIndex(p.Name, ".")]
		if contains(extra, module[strings.LastIndex(module, ".")+1:]) {
			want[p.Name] = p.Shape
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestLoadMethodErrors checks that damaged method sets are refused with an
// error that names what is wrong.
func TestLoadMethodErrors(t *testing.T) {
	src := filepath.Join(root, MethodsDir, "ptuning-mlp")
	raw := readFile(t, filepath.Join(src, "meta.json"))
	gold := readFile(t, filepath.Join(src, "golden.safetensors"))
	edit := func(fn func(m *MethodMeta)) string { return editMeta(t, raw, fn) }
	tests := []struct {
		name    string
		meta    string
		wantErr string
	}{
		{"intact copy", string(raw), ""},
		{"malformed meta", "{", "meta.json"},
		{"no base", edit(func(m *MethodMeta) { m.Base = "" }), `"base"`},
		{"prefixed run", edit(func(m *MethodMeta) { m.Run.Prefix = "x." }), "unprefixed"},
		{"wrong prepended", edit(func(m *MethodMeta) { m.PrependedTokens = 0 }), `"logits" has shape [2 11 64], meta.json implies [2 8 -1]`},
		{"unknown saved", edit(func(m *MethodMeta) { m.Saved = append(m.Saved, Param{Name: "x", Shape: []int{1}}) }), `"saved.x" missing`},
		{"missing adapter", edit(func(m *MethodMeta) { m.Run.Adapter = "nowhere" }), "adapter_config.json"},
		{"missing encoder", edit(func(m *MethodMeta) { m.Encoder = "none.safetensors" }), "none.safetensors"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A copy laid out as the golden root, so that the relative
			// base and data paths resolve.
			tmp := t.TempDir()
			dir := filepath.Join(tmp, MethodsDir, "ptuning-mlp")
			files := map[string][]byte{"meta.json": []byte(tc.meta), "golden.safetensors": gold}
			for _, f := range []string{"adapter_config.json", "adapter_model.safetensors", "prompt_encoder.safetensors"} {
				files[f] = readFile(t, filepath.Join(src, f))
			}
			data := readFile(t, filepath.Join(root, "llama-gqa", "data.jsonl"))
			write := func(path string, b []byte) {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write(filepath.Join(tmp, "llama-gqa", "data.jsonl"), data)
			for name, b := range files {
				write(filepath.Join(dir, name), b)
			}
			_, err := LoadMethod(dir)
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("LoadMethod of an intact copy: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("LoadMethod error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
