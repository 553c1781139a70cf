package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/gotune/gotune/finetune"
	"os"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/gguf"
	"github.com/gotune/gotune/engine/ggufexport"
	"github.com/gotune/gotune/engine/model"
)

func init() {
	register(&command{
		Name:    "export",
		Summary: "write a model (with a LoRA adapter merged) as GGUF for llama.cpp, or as a Hugging Face folder",
		Run:     runExport,
	})
}

const exportDescription = `
Loads --model (a Hugging Face folder or a llama2.c checkpoint), merges
--adapter into it when given (LoRA/DoRA, as "gotune merge" does), and
writes it in one of two formats:

  --format gguf          one GGUF file (--out FILE) that llama.cpp loads and
                         runs: LLaMA and Mistral as llama.cpp's "llama",
                         Qwen2 as "qwen2", Qwen3 as "qwen3", OLMo-2 as
                         "olmo2", Granite as "granite", Phi-3 as "phi3",
                         GLM-4 as "glm4", GPT-2 as "gpt2",
                         with the tokenizer (vocabulary, scores or merges,
                         special ids) and chat template. A model that
                         llama.cpp would compute differently (e.g. Qwen3
                         or OLMo-2 with biases) is refused. --type stores the matrices
                         as f32, f16, bf16 or q8_0 (norms and biases stay
                         f32); the default follows the model's torch_dtype.
  --format safetensors   the Hugging Face folder "gotune merge" writes
                         (--out DIR; --save-dtype, --max-shard-size).

scripts/check-gguf-llamacpp.sh checks that llama.cpp's greedy output from
an exported file equals "gotune generate --temperature 0", and its
next-token probabilities gotune's.`

// ggufTypeFor picks the GGUF storage type: --type, or the torch_dtype.
func ggufTypeFor(flag, torchDtype string) (gguf.TensorType, error) {
	if flag != "" && flag != "auto" {
		t, err := gguf.ParseTensorType(flag)
		if err != nil {
			return 0, &usageError{msg: "--type: " + err.Error()}
		}
		return t, nil
	}
	// The same default as a safetensors save: the model's torch_dtype.
	r, err := model.SaveOptions{}.Resolve(torchDtype)
	if err != nil {
		return 0, err
	}
	return gguf.ParseTensorType(r.DType)
}

func runExport(ctx context.Context, e *env, args []string) error {
	var modelPath, adapterDir, tokPath, format, out, typ, device string
	var save saveFlags
	fs := newFlagSet("export", "gotune export --model PATH [--adapter DIR] --format gguf|safetensors --out PATH", exportDescription)
	fs.StringVar(&modelPath, "model", "", modelPathHelp+" (required)")
	fs.StringVar(&adapterDir, "adapter", "", "LoRA adapter `DIR` in PEFT layout to merge first (optional)")
	fs.StringVar(&tokPath, "tokenizer", "", "tokenizer `PATH` for GGUF (default: the one with the model)")
	fs.StringVar(&format, "format", "gguf", "output `FORMAT`: gguf or safetensors")
	fs.StringVar(&out, "out", "", "output: a .gguf `PATH` for gguf, a folder for safetensors (required)")
	fs.StringVar(&typ, "type", "auto", "GGUF matrix `TYPE`: auto (from torch_dtype), f32, f16, bf16 or q8_0")
	fs.StringVar(&device, "device", "cpu", deviceHelp)
	save.define(fs, "weights (safetensors)")
	if err := parseFlags(fs, args, e); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	switch {
	case modelPath == "":
		return &usageError{msg: "--model is required"}
	case out == "":
		return &usageError{msg: "--out is required"}
	case format != "gguf" && format != "safetensors":
		return &usageError{msg: fmt.Sprintf("unknown --format %q (want gguf or safetensors)", format)}
	case !validDevice(device):
		return &usageError{msg: fmt.Sprintf("unknown --device %q (want auto, cpu, cuda or cuda:N)", device)}
	}
	saveOpts, err := save.options()
	if err != nil {
		return err
	}
	if same, err := finetune.SameDir(modelPath, out); err == nil && same {
		return fmt.Errorf("--out %s is the model's path: exporting would overwrite it; choose another --out", out)
	}
	if format == "gguf" {
		if info, err := os.Stat(out); err == nil && info.IsDir() {
			return &usageError{msg: fmt.Sprintf("--out %s is a folder; --format gguf writes one file (e.g. %s/model.gguf)", out, strings.TrimRight(out, "/"))}
		}
		if typ != "auto" {
			if _, err := gguf.ParseTensorType(typ); err != nil {
				return &usageError{msg: "--type: " + err.Error()}
			}
		}
	}
	be, err := openDevice(device, func(s string) { fmt.Fprintln(e.Stderr, s) })
	if err != nil {
		return err
	}
	defer be.Close()
	mo := finetune.MergeOptions{Model: modelPath, Adapter: adapterDir, Names: mergeNames}
	m, n, err := finetune.LoadMerged(be, mo)
	if err != nil {
		return err
	}
	prefix := ""
	if n > 0 {
		prefix = fmt.Sprintf("merged %d LoRA layers of %s; ", n, adapterDir)
	}
	if format == "safetensors" {
		if err := saveHF(e, m, modelPath, out, saveOpts, prefix); err != nil || adapterDir == "" {
			return err
		}
		return writeMergeCard(e, out, m, mo, n, saveOpts, "gotune export "+shellJoin(args))
	}
	tok, err := loadTokenizer(tokPath, modelPath)
	if err != nil {
		return err
	}
	t, err := ggufTypeFor(typ, m.Config().TorchDtype)
	if err != nil {
		return err
	}
	f, err := ggufexport.Build(m, tok, ggufexport.Options{Type: t, Name: exportName(modelPath)})
	if err != nil {
		return err
	}
	if err := gguf.WriteFile(out, f); err != nil {
		return err
	}
	arch, _ := ggufexport.Architecture(m.Config())
	size := int64(0)
	if info, err := os.Stat(out); err == nil {
		size = info.Size()
	}
	fmt.Fprintf(e.Stdout, "%swrote %s (GGUF, llama.cpp architecture %s, %d tensors, matrices %s, %s)\n", prefix, out, arch, len(f.Tensors), t, engine.FormatMiB(uint64(size)))
	return nil
}

// exportName is general.name: the model's folder or file name.
func exportName(path string) string {
	p := strings.TrimRight(path, "/")
	if i := strings.LastIndex(p, "/"); i >= 0 {
		p = p[i+1:]
	}
	return strings.TrimSuffix(p, ".bin")
}
