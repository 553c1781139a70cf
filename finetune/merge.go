package finetune

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/llama2c"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/runcard"
	"github.com/gotune/gotune/methods/lora"
	"github.com/gotune/gotune/methods/peft"
)

// LoadModel loads a model for inference under precision p: a Hugging
// Face folder (stored in p's frozen-weight dtype as it is read), or a
// llama2.c legacy checkpoint file (loaded with interleaved RoPE, in
// float32). Errors about path name it as the option "Model" through names.
func LoadModel(path string, be engine.Backend, p engine.Precision, names Names) (model.Model, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", names.Of("Model"), err)
	}
	if info.IsDir() {
		return model.LoadWithOptions(path, be, model.Options{Storage: p.ActDType()})
	}
	return llama2c.Load(path, be)
}

// MergeOptions says what LoadMerged loads. Its options are named
// "Model" and "Adapter" in messages (through Names).
type MergeOptions struct {
	// Model is the base model: a Hugging Face folder or a llama2.c file.
	Model string
	// Adapter is a LoRA or DoRA adapter folder in PEFT's layout; empty:
	// the base model alone.
	Adapter string
	// Prepare, when set, is called on the base model before the merge
	// (gotune merge --quantize quantizes the base there, which is then
	// dequantized: the base a QLoRA adapter trained on).
	Prepare func(model.Model) error
	// Names names the options in errors (nil: by field name).
	Names Names
}

// LoadMerged loads o.Model in float32 and folds the o.Adapter LoRA/DoRA
// adapter into its weights (W + s·B·A; DoRA rescales per output
// feature), so the model computes what base plus adapter computes with
// no adapter left. A quantized base (a bitsandbytes checkpoint, or one
// o.Prepare quantized) is dequantized first: the merged model is a float
// model, and its config no longer says quantization_config. It returns
// the model and how many layers were merged.
func LoadMerged(be engine.Backend, o MergeOptions) (model.Model, int, error) {
	adapterName := o.Names.Of("Adapter")
	if o.Adapter != "" {
		h, err := peft.ReadHeader(o.Adapter)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", adapterName, err)
		}
		if h.PeftType != lora.PeftType {
			return nil, 0, fmt.Errorf("%s %s: a %s adapter cannot be merged into weights (only LORA adapters, DoRA included, can)", adapterName, o.Adapter, h.PeftType)
		}
	}
	// Merging and exporting work on float32 weights: the written file's
	// dtype is chosen when saving, not by a compute precision.
	m, err := LoadModel(o.Model, be, engine.PrecisionFP32, o.Names)
	if err != nil {
		return nil, 0, err
	}
	if o.Prepare != nil {
		if err := o.Prepare(m); err != nil {
			return nil, 0, err
		}
	}
	if d, ok := m.(interface{ Dequantize() }); ok {
		d.Dequantize()
	}
	if o.Adapter == "" {
		return m, 0, nil
	}
	a, err := lora.Load(m, o.Adapter, lora.LoadOptions{Frozen: true})
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", adapterName, err)
	}
	n := len(a.Layers())
	if err := a.MergeAndRemove(); err != nil {
		return nil, 0, err
	}
	return m, n, nil
}

// WriteMergeCard writes the model card (README.md) of a merged model that
// LoadMerged returned (m, with layers merged from o.Adapter) and that was
// saved into out with opts: the base model, the adapter and its
// settings, the adapter's training run when its folder has gotune's
// summary.json, and command, which reproduces the merge.
func WriteMergeCard(out string, m model.Model, o MergeOptions, layers int, opts model.SaveOptions, command string) error {
	c := &runcard.MergeCard{
		Command: command, BaseModel: o.Model, Architecture: m.Config().Arch,
		Adapter: o.Adapter, PeftType: lora.PeftType, Layers: layers,
		Weights:  DescribeSaved(m, opts, out),
		Finished: time.Now().UTC().Format(time.RFC3339), Gotune: gotuneVersion(),
	}
	_, cfg, err := lora.ReadConfig(o.Adapter)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Names.Of("Adapter"), err)
	}
	targets := strings.Join(cfg.Targets, ",")
	if cfg.TargetRegex != "" {
		targets = cfg.TargetRegex
	}
	c.AdapterSettings = map[string]string{
		"r": strconv.Itoa(cfg.R), "lora_alpha": strconv.FormatFloat(cfg.Alpha, 'g', -1, 64), "target_modules": targets,
	}
	if cfg.DoRA {
		c.AdapterSettings["use_dora"] = "true"
	}
	if cfg.RSLoRA {
		c.AdapterSettings["use_rslora"] = "true"
	}
	if c.Training, err = runcard.ReadSummary(o.Adapter); err != nil {
		return fmt.Errorf("%s: %w", o.Names.Of("Adapter"), err)
	}
	if err := runcard.WriteMergeCard(out, c); err != nil {
		return fmt.Errorf("writing the model card: %w", err)
	}
	return nil
}
