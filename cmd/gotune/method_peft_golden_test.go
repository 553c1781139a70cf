package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/internal/bytetok"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/peft"
)

// promptMethodFlags maps a golden run's method_config keys (issue 4's
// option names in snake_case) to the flags of --method adapter, prompt,
// ptuning and prefix. null values are left out (the flag's default).
var promptMethodFlags = map[string]string{
	"adapter_variant": "adapter-variant", "adapter_reduction_factor": "adapter-reduction-factor",
	"adapter_activation": "adapter-activation", "adapter_scaling": "adapter-scaling",
	"adapter_layers": "adapter-layers", "num_virtual_tokens": "num-virtual-tokens",
	"prompt_init": "prompt-init", "encoder_hidden_size": "encoder-hidden-size",
	"encoder_num_layers": "encoder-num-layers", "encoder_reparameterization_type": "encoder-reparameterization",
	"prefix_layers": "prefix-layers", "prefix_projection": "prefix-projection",
}

// flagsOf turns a run's method_config into flags, every option explicit
// so that the run also checks they agree with the --init-adapter folder.
func flagsOf(t *testing.T, s *golden.MethodSet) []string {
	t.Helper()
	var mc map[string]any
	if err := json.Unmarshal(s.Meta.Run.MethodConfig, &mc); err != nil {
		t.Fatal(err)
	}
	var args []string
	for k, v := range mc {
		name, ok := promptMethodFlags[k]
		if !ok {
			t.Fatalf("method_config key %q has no flag", k)
		}
		switch v := v.(type) {
		case nil:
		case bool:
			args = append(args, fmt.Sprintf("--%s=%v", name, v))
		case float64:
			args = append(args, "--"+name, strconv.FormatFloat(v, 'g', -1, 64))
		case string:
			args = append(args, "--"+name, strings.ToLower(v))
		case []any:
			var parts []string
			for _, x := range v {
				parts = append(parts, fmt.Sprint(x))
			}
			args = append(args, "--"+name, strings.Join(parts, ","))
		default:
			t.Fatalf("method_config %s: unexpected value %v", k, v)
		}
	}
	return args
}

// TestPromptMethodsMatchGolden runs "gotune train --method
// adapter|prompt|ptuning|prefix" (the binary) on every golden run of
// those methods, from the run's adapter folder (--init-adapter), and
// checks the parameter summary, metrics.jsonl against PyTorch's losses,
// gradient norms and token counts, the saved folder (PEFT's files and,
// for encoders, prompt_encoder.safetensors) against PyTorch's trained
// values, and "gotune eval --adapter" on the initial folder.
func TestPromptMethodsMatchGolden(t *testing.T) {
	runMethodGolden(t, []string{"adapter", "prompt", "ptuning", "prefix"}, flagsOf,
		func(t *testing.T, s *golden.MethodSet, _ *golden.Set, out string, gradNorm float64) {
			checkSavedPromptAdapter(t, s, out, gradNorm)
			checkEvalAdapter(t, s)
		})
}

// checkSavedPromptAdapter compares every safetensors file of the initial
// adapter folder with the one saved after training (same tensor names
// and shapes; values PyTorch's trained ones, or for PEFT's
// prompt_embeddings of an encoder its output), and adapter_config.json
// key for key (base_model_name_or_path must name --model).
func checkSavedPromptAdapter(t *testing.T, s *golden.MethodSet, out string, gradNorm float64) {
	t.Helper()
	r := &s.Meta.Run
	files, _ := filepath.Glob(filepath.Join(s.AdapterDir(), "*.safetensors"))
	for _, f := range files {
		name := filepath.Base(f)
		if name == s.Meta.Golden {
			continue
		}
		ref, err := safetensors.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := safetensors.Open(filepath.Join(out, name))
		if err != nil {
			t.Errorf("saved folder: %v", err)
			ref.Close()
			continue
		}
		if !slices.Equal(got.Names(), ref.Names()) {
			t.Errorf("saved %s holds %v, the reference %v", name, got.Names(), ref.Names())
		}
		for _, n := range got.Names() {
			data, shape, err := got.Float32(n)
			if err != nil {
				t.Fatal(err)
			}
			if _, rshape, err := ref.Float32(n); err == nil && !slices.Equal(shape, rshape) {
				t.Errorf("saved %s: %s has shape %v, the reference %v", name, n, shape, rshape)
			}
			want, _ := s.Tensor("saved." + n)
			var grad []float32
			if want == nil {
				want, _ = s.Tensor("after." + n)
				grad, _ = s.Tensor("grad." + n)
			}
			if want == nil {
				t.Errorf("saved %s: %s is not a reference tensor", name, n)
				continue
			}
			if msg, _ := golden.CompareAfter(data, want, grad, gradNorm, r.LR, r.Steps); msg != "" {
				t.Errorf("saved %s: %s: %s", name, n, msg)
			}
		}
		got.Close()
		ref.Close()
	}
	checkSavedConfig(t, s, out)
}

// TestPromptMethodsBadInput checks the command-line errors of the
// adapter and prompt-learning methods: exit status 1 and one message
// naming the problem.
func TestPromptMethodsBadInput(t *testing.T) {
	llama := filepath.Join(goldenDir, "llama-gqa")
	data := filepath.Join(llama, "data.jsonl")
	lora := filepath.Join(goldenDir, golden.MethodsDir, "lora")
	ptuning := filepath.Join(goldenDir, golden.MethodsDir, "ptuning-mlp")
	noEncoder := t.TempDir()
	for _, f := range []string{peft.ConfigFile, peft.WeightsFile} {
		b, err := os.ReadFile(filepath.Join(ptuning, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(noEncoder, f), b, 0o644)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"prefix layer range", []string{"--method", "prefix", "--prefix-layers", "0,2"}, "--prefix-layers: layer 2 does not exist: the model has 2 layers (0..1)"},
		{"prefix layer list", []string{"--method", "prefix", "--prefix-layers", "0,x"}, `--prefix-layers: "x" is not a layer index`},
		{"zero virtual tokens", []string{"--method", "prompt", "--num-virtual-tokens", "0"}, "--num-virtual-tokens must be positive, got 0"},
		{"zero prefix", []string{"--method", "prefix", "--num-virtual-tokens", "0"}, "--num-virtual-tokens must be positive, got 0"},
		{"unknown variant", []string{"--method", "adapter", "--adapter-variant", "serial"}, `--adapter-variant "serial": unknown adapter variant (want houlsby, pfeiffer, parallel, series or parallel-normed)`},
		{"unknown activation", []string{"--method", "adapter", "--adapter-activation", "elu"}, `--adapter-activation "elu": unknown adapter activation`},
		{"adapter layer range", []string{"--method", "adapter", "--adapter-layers", "3"}, "--adapter-layers: layer 3 does not exist"},
		{"unknown encoder", []string{"--method", "ptuning", "--encoder-reparameterization", "gru"}, `unknown P-Tuning encoder "gru" (want mlp or lstm)`},
		{"text init without text", []string{"--method", "prompt", "--prompt-init", "text"}, "--prompt-init text needs --prompt-init-text"},
		{"init of another method", []string{"--method", "prompt", "--init-adapter", lora}, "holds a LORA adapter, not one --method prompt trains"},
		{"contradicting flags", []string{"--method", "ptuning", "--init-adapter", ptuning, "--num-virtual-tokens", "5"}, "--num-virtual-tokens 5 (num_virtual_tokens is 3) contradict"},
		{"encoder missing", []string{"--method", "ptuning", "--init-adapter", noEncoder}, "prompt_encoder.safetensors, which gotune writes beside it, is missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"train", "--model", llama, "--data", data, "--steps", "1", "--batch-size", "2",
				"--device", "cpu", "--out", filepath.Join(t.TempDir(), "out")}, tc.args...)
			res := runGotune(t, args...)
			if res.code != 1 || !strings.Contains(res.stderr, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and %q", res.code, res.stderr, tc.want)
			}
			if strings.Contains(res.stderr, "goroutine") {
				t.Errorf("stack trace:\n%s", res.stderr)
			}
		})
	}
}

// TestPromptTextInit trains --method prompt --prompt-init text for one
// step at learning rate 0 on the tiny model (with a byte-level tokenizer
// written beside it) and checks the saved virtual tokens: the embeddings
// of the text's bytes, repeated to --num-virtual-tokens, as PEFT's TEXT
// initialisation; and the configuration recording the text and tokenizer.
func TestPromptTextInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "model")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join("../../testdata/tiny/llama", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	if err := bytetok.Write(dir, bytetok.Spec{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	res := runGotune(t, "train", "--model", dir, "--data", "../../testdata/tiny/data.jsonl", "--method", "prompt",
		"--prompt-init", "text", "--prompt-init-text", "hello", "--num-virtual-tokens", "7",
		"--steps", "1", "--lr", "0", "--batch-size", "2", "--seq-len", "16", "--device", "cpu", "--out", out)
	if res.code != 0 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	base, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	emb, shape, err := base.Float32("model.embed_tokens.weight")
	if err != nil {
		t.Fatal(err)
	}
	D := shape[1]
	var want []float32
	for _, c := range []byte("hellohe") {
		want = append(want, emb[int(c)*D:(int(c)+1)*D]...)
	}
	w, err := peft.ReadWeights(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := w.Take("prompt_embeddings", 7, D)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Error("the virtual tokens are not the embeddings of \"hellohe\"")
	}
	raw, err := os.ReadFile(filepath.Join(out, peft.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if c["prompt_tuning_init"] != "TEXT" || c["prompt_tuning_init_text"] != "hello" || c["tokenizer_name_or_path"] != dir {
		t.Errorf("adapter_config.json: init %v, text %v, tokenizer %v", c["prompt_tuning_init"], c["prompt_tuning_init_text"], c["tokenizer_name_or_path"])
	}
}
