package inspect

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gotune/gotune/engine/gguf"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/llama2c"
	"github.com/gotune/gotune/engine/safetensors"
)

// modelKeys are the config.json fields shown for a model, in this order.
var modelKeys = []string{
	"model_type", "vocab_size", "hidden_size", "n_embd", "num_hidden_layers", "n_layer",
	"num_attention_heads", "n_head", "num_key_value_heads", "head_dim", "intermediate_size", "n_inner",
	"max_position_embeddings", "n_positions", "hidden_act", "hidden_activation", "rms_norm_eps", "layer_norm_epsilon",
	"rope_theta", "rope_local_base_freq", "rope_scaling", "tie_word_embeddings", "attention_bias",
	"query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping",
	"sliding_window", "sliding_window_pattern", "layer_types",
	"bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype",
}

// inspectModel reads config.json and the safetensors headers of a
// Hugging Face folder.
func inspectModel(dir string) (*Report, error) {
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	data, err := readJSONFile(filepath.Join(dir, hfconfig.FileName))
	if err != nil {
		return nil, err
	}
	all, err := settingsFromJSON(data)
	if err != nil {
		return nil, fmt.Errorf("inspect: %s: %w", hfconfig.FileName, err)
	}
	r := &Report{Kind: KindModel, Architecture: cfg.Arch, Config: pick(all, modelKeys)}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	defer set.Close()
	addSafetensors(r, set)
	return r, nil
}

// pick returns the settings named in keys, in keys' order.
func pick(all []Setting, keys []string) []Setting {
	byKey := map[string]Setting{}
	for _, s := range all {
		byKey[s.Key] = s
	}
	var out []Setting
	for _, k := range keys {
		if s, ok := byKey[k]; ok {
			out = append(out, s)
		}
	}
	return out
}

// addSafetensors counts a safetensors set's tensors into r.
func addSafetensors(r *Report, set *safetensors.Set) {
	names := set.Names()
	sort.Strings(names)
	r.DTypes = map[string]int64{}
	for _, n := range names {
		info, _ := set.Info(n)
		shape := make([]int64, len(info.Shape))
		count := int64(1)
		for i, d := range info.Shape {
			shape[i] = int64(d)
			count *= int64(d)
		}
		r.Parameters += count
		r.DTypes[info.DType] += count
		r.Tensors = append(r.Tensors, Tensor{Name: n, Shape: shape, DType: info.DType})
	}
}

// adapterHeader is the part of adapter_config.json inspect reads itself.
type adapterHeader struct {
	PeftType string  `json:"peft_type"`
	Base     *string `json:"base_model_name_or_path"`
}

// inspectAdapter reads a PEFT folder, and the base model's weights when
// base_model_name_or_path is a local folder, for the trainable share.
func inspectAdapter(dir string) (*Report, error) {
	data, err := readJSONFile(filepath.Join(dir, "adapter_config.json"))
	if err != nil {
		return nil, err
	}
	var h adapterHeader
	if err := json.Unmarshal(data, &h); err != nil || h.PeftType == "" {
		return nil, fmt.Errorf("inspect: %s: adapter_config.json has no \"peft_type\" string", dir)
	}
	all, err := settingsFromJSON(data)
	if err != nil {
		return nil, fmt.Errorf("inspect: %s: %w", dir, err)
	}
	r := &Report{Kind: KindAdapter, Architecture: h.PeftType, Config: all}
	set, err := safetensors.OpenFiles(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	defer set.Close()
	addSafetensors(r, set)
	if h.Base != nil && *h.Base != "" {
		base := *h.Base
		if !filepath.IsAbs(base) && !exists(base, hfconfig.FileName) {
			base = filepath.Join(dir, base) // relative to the adapter
		}
		if exists(base, hfconfig.FileName) {
			if b, err := inspectModel(base); err == nil {
				r.BaseParameters = b.Parameters
				r.TrainableShare = float64(r.Parameters) / float64(b.Parameters+r.Parameters)
			}
		}
	}
	return r, nil
}

// checkpointState is the part of trainer_state.json inspect shows.
type checkpointState struct {
	Format     *int `json:"format"`
	Step       *int `json:"step"`
	TotalSteps int  `json:"total_steps"`
}

// inspectCheckpoint reads a checkpoint-<step> folder: its trainer state
// and the model or adapter it holds.
func inspectCheckpoint(dir string) (*Report, error) {
	data, err := readJSONFile(filepath.Join(dir, "trainer_state.json"))
	if err != nil {
		return nil, err
	}
	var st checkpointState
	if err := json.Unmarshal(data, &st); err != nil || st.Step == nil {
		return nil, fmt.Errorf("inspect: %s: trainer_state.json has no \"step\"", dir)
	}
	var inner *Report
	switch {
	case exists(dir, "adapter_config.json"):
		inner, err = inspectAdapter(dir)
	case exists(dir, "config.json"):
		inner, err = inspectModel(dir)
	default:
		err = fmt.Errorf("inspect: checkpoint %s holds neither a model (config.json) nor an adapter (adapter_config.json)", dir)
	}
	if err != nil {
		return nil, err
	}
	r := *inner
	r.Kind, r.Inner = KindCheckpoint, inner
	r.Config = []Setting{
		{Key: "step", Value: fmt.Sprint(*st.Step)},
		{Key: "total_steps", Value: fmt.Sprint(st.TotalSteps)},
		{Key: "holds", Value: inner.Kind},
	}
	if exists(dir, "trainer_state.safetensors") {
		r.Config = append(r.Config, Setting{Key: "optimizer_state", Value: `"trainer_state.safetensors (AdamW moments)"`})
	}
	r.Config = append(r.Config, inner.Config...)
	return &r, nil
}

// inspectGGUF reads a GGUF header.
func inspectGGUF(path string) (*Report, error) {
	h, err := gguf.ReadHeader(path)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	r := &Report{Kind: KindGGUF, DTypes: map[string]int64{}}
	if v, ok := h.Get("general.architecture"); ok {
		r.Architecture = fmt.Sprint(v)
	}
	for _, kv := range h.KV {
		if s, ok := ggufSetting(kv); ok {
			r.Config = append(r.Config, s)
		}
	}
	for _, t := range h.Tensors {
		n := t.Elements()
		r.Parameters += n
		r.DTypes[t.Type.String()] += n
		r.Tensors = append(r.Tensors, Tensor{Name: t.Name, Shape: t.Shape, DType: t.Type.String()})
	}
	return r, nil
}

// ggufSetting formats a metadata entry; arrays (vocabularies) are shown
// by length only, and long strings (chat templates) by size.
func ggufSetting(kv gguf.KV) (Setting, bool) {
	switch v := kv.Value.(type) {
	case gguf.Array:
		return Setting{Key: kv.Key, Value: fmt.Sprintf(`"[%d values]"`, v.Len())}, true
	case string:
		if len(v) > 80 || strings.ContainsAny(v, "\n") {
			return Setting{Key: kv.Key, Value: fmt.Sprintf(`"(%d bytes)"`, len(v))}, true
		}
	}
	b, err := json.Marshal(kv.Value)
	if err != nil {
		return Setting{}, false
	}
	return Setting{Key: kv.Key, Value: string(b)}, true
}

// inspectLlama2C reads a llama2.c legacy checkpoint's header.
func inspectLlama2C(path string, head []byte) (*Report, error) {
	h, err := llama2c.ParseHeader(head, path)
	if err != nil {
		return nil, fmt.Errorf("inspect: %s is not a GGUF file and not a llama2.c checkpoint: %w", path, err)
	}
	if !llama2c.IsCheckpoint(path) {
		return nil, fmt.Errorf("inspect: %s: the llama2.c header says %d bytes, the file size differs", path, h.FileSize())
	}
	r := &Report{Kind: KindLlama2C, Architecture: hfconfig.ArchLlama + " (llama2.c)", DTypes: map[string]int64{}}
	for _, a := range h.Arrays() {
		shape := make([]int64, len(a.Shape))
		n := int64(1)
		for i, d := range a.Shape {
			shape[i], n = int64(d), n*int64(d)
		}
		r.Tensors = append(r.Tensors, Tensor{Name: a.Name, Shape: shape, DType: safetensors.F32})
		if !llama2c.IsRopeTable(a.Name) {
			r.Parameters += n
			r.DTypes[safetensors.F32] += n
		}
	}
	for _, s := range []struct {
		k string
		v any
	}{{"dim", h.Dim}, {"hidden_dim", h.Hidden}, {"n_layers", h.Layers}, {"n_heads", h.Heads},
		{"n_kv_heads", h.KVHeads}, {"vocab_size", h.Vocab}, {"seq_len", h.SeqLen}, {"shared_classifier", h.Shared}} {
		r.Config = append(r.Config, Setting{Key: s.k, Value: fmt.Sprint(s.v)})
	}
	return r, nil
}
