package model

import (
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/safetensors"
)

// SaveOptions choose how a model's weights are stored.
type SaveOptions struct {
	// DType is the safetensors dtype of the stored weights: "F32", "BF16"
	// or "F16" (any case). "" follows the config's torch_dtype, as
	// transformers' save_pretrained keeps a model's dtype: "bfloat16"
	// stores BF16, "float16" F16, anything else (float32, missing) F32.
	DType string
	// MaxShardBytes is the largest amount of tensor data per file, in bytes,
	// like transformers' max_shard_size; a larger checkpoint is split into
	// model-0000i-of-0000N.safetensors shards with an index. 0 means
	// safetensors.DefaultMaxShardBytes (5 GB, transformers' default).
	MaxShardBytes int64
}

// Resolve returns the options with DType settled for a config whose
// torch_dtype is torchDtype (upper case F32, BF16 or F16) and
// MaxShardBytes defaulted, or an error naming the bad field.
func (o SaveOptions) Resolve(torchDtype string) (SaveOptions, error) {
	switch d := strings.ToUpper(o.DType); d {
	case "":
		switch strings.TrimPrefix(torchDtype, "torch.") {
		case "bfloat16":
			o.DType = safetensors.BF16
		case "float16", "half":
			o.DType = safetensors.F16
		default:
			o.DType = safetensors.F32
		}
	case safetensors.F32, safetensors.BF16, safetensors.F16:
		o.DType = d
	default:
		return o, fmt.Errorf("unsupported save dtype %q (want F32, BF16 or F16)", o.DType)
	}
	switch {
	case o.MaxShardBytes == 0:
		o.MaxShardBytes = safetensors.DefaultMaxShardBytes
	case o.MaxShardBytes < 0:
		return o, fmt.Errorf("maximum shard size must be positive, got %d bytes", o.MaxShardBytes)
	}
	return o, nil
}

// torchNames are config.json's torch_dtype values of the stored dtypes.
var torchNames = map[string]string{
	safetensors.F32:  "float32",
	safetensors.BF16: "bfloat16",
	safetensors.F16:  "float16",
}

// Save writes the model's base weights to dir in Hugging Face layout with
// the default SaveOptions: stored in the config's torch_dtype (so a model
// loaded from a bfloat16 checkpoint is saved as BF16, one from a float32
// checkpoint or built by New as F32), in shards of at most 5 GB. See
// SaveWithOptions.
func (m *Transformer) Save(dir string) error {
	return m.SaveWithOptions(dir, SaveOptions{})
}

// SaveWithOptions writes the model's base weights to dir in Hugging Face
// layout: config.json plus model.safetensors, or shards and
// model.safetensors.index.json when the weights exceed opts.MaxShardBytes
// (see safetensors.WriteSharded, which also removes checkpoint files of an
// earlier save in dir). Tensors carry transformers' names, a tied lm_head
// is stored once as the embedding, and every file is written atomically.
// Weights are rounded to opts.DType (to nearest, ties to even); a finite
// weight too large for it is an error rather than a silent infinity.
// config.json's torch_dtype names the stored dtype. A model built with
// interleaved RoPE has its q/k projection rows permuted to the rotate_half
// layout, so transformers computes the same function. Methods save their
// own adapter files; replaced modules' extra parameters are not part of the
// base checkpoint. A frozen bfloat16 copy of a more precise checkpoint
// tensor (Options.Storage) that is unchanged is saved from the checkpoint's
// values, so untouched tensors lose nothing.
func (m *Transformer) SaveWithOptions(dir string, opts SaveOptions) error {
	opts, err := opts.Resolve(m.cfg.TorchDtype)
	if err != nil {
		return fmt.Errorf("model: save to %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("model: save: %w", err)
	}
	weights, err := m.HFWeights()
	if err != nil {
		return fmt.Errorf("model: save to %s: %w", dir, err)
	}
	tensors := make([]safetensors.Tensor, 0, len(weights))
	for _, w := range weights {
		if err := checkFits(w.Data, opts.DType); err != nil {
			return fmt.Errorf("model: save to %s: tensor %q: %w", dir, w.Name, err)
		}
		tensors = append(tensors, safetensors.Tensor{Name: w.Name, DType: opts.DType, Shape: w.Shape, F32: w.Data})
	}
	if _, err := safetensors.WriteSharded(dir, tensors, map[string]string{"format": "pt"}, opts.MaxShardBytes); err != nil {
		return fmt.Errorf("model: save: %w", err)
	}
	cfg := m.cfg.Clone()
	cfg.TorchDtype = torchNames[opts.DType]
	if err := cfg.Save(dir); err != nil {
		return fmt.Errorf("model: save: %w", err)
	}
	return nil
}

// NamedWeight is one base tensor's values with its Hugging Face name.
type NamedWeight struct {
	// Name is the transformers name, e.g. "model.layers.0.self_attn.q_proj.weight".
	Name string
	// Shape holds the dimensions, outermost first.
	Shape []int
	// Data holds the row-major float32 values.
	Data []float32
}

// HFWeights downloads the base weights in the order and layout Save
// writes them: Hugging Face names, a tied lm_head once (as the
// embedding), and the q/k rows of a model built with interleaved RoPE
// permuted to the rotate_half layout. Exporters to other formats start
// from it, so they see one layout whatever the model was loaded from. An
// unchanged frozen bfloat16 copy of a more precise checkpoint tensor comes
// back with the checkpoint's values (Options.Storage).
func (m *Transformer) HFWeights() ([]NamedWeight, error) {
	out := make([]NamedWeight, 0, len(m.base))
	for _, p := range m.base {
		data, err := m.savedValues(p)
		if err != nil {
			return nil, err
		}
		if m.d.ropeLayout == engine.RopeInterleaved && m.isRotated(p.Name) {
			data = interleavedToHalf(data, m.d.headDim, p.W.Len()/p.W.Dim(0))
		}
		out = append(out, NamedWeight{Name: p.Name, Shape: append([]int(nil), p.W.Shape()...), Data: data})
	}
	return out, nil
}

// overflowFrom is, per narrow dtype, the smallest magnitude that rounds to
// infinity: halfway between the largest finite value and the next power of
// two, where ties to even round up (both largest values have an odd
// significand). F16: between 65504 and 65536; BF16: bits 0x7f7f8000.
var overflowFrom = map[string]float64{
	safetensors.F16:  65520,
	safetensors.BF16: float64(math.Float32frombits(0x7f7f8000)),
}

// checkFits reports the first finite value of data that dtype would store
// as an infinity. (NaN and infinities are stored as they are.)
func checkFits(data []float32, dtype string) error {
	limit, narrow := overflowFrom[dtype]
	if !narrow {
		return nil
	}
	for i, v := range data {
		if a := math.Abs(float64(v)); a >= limit && !math.IsInf(a, 0) {
			wider := "F32"
			if dtype == safetensors.F16 {
				wider = "BF16 or F32"
			}
			return fmt.Errorf("element %d = %g is too large for %s (it would be stored as infinity); save as %s instead", i, v, dtype, wider)
		}
	}
	return nil
}

// isRotated reports the parameters whose output rows RoPE rotates.
func (m *Transformer) isRotated(name string) bool {
	for _, s := range m.d.fam.RotatedSuffixes() {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// RoPE pairs the elements of a head vector in one of two layouts (see
// engine.RopeLayout); converting a q/k projection between them permutes
// its rows within each head. Both directions share permuteHeadRows.

// interleavedToHalf permutes the rows (of width cols) of a q/k projection
// from llama2.c's pairing (2i, 2i+1) to Hugging Face's (i, i+headDim/2)
// within each head: new row i takes old row 2i, new row i+headDim/2 takes
// old row 2i+1.
func interleavedToHalf(data []float32, headDim, cols int) []float32 {
	half := headDim / 2
	return permuteHeadRows(data, headDim, cols, func(j int) int { return 2*(j%half) + j/half })
}

// HalfToInterleaved is the inverse of interleavedToHalf: from Hugging
// Face's pairing to ggml's and llama2.c's (new row 2i takes old row i,
// new row 2i+1 old row i+headDim/2), as llama.cpp's converter permutes
// LLaMA's q and k.
func HalfToInterleaved(data []float32, headDim, cols int) []float32 {
	half := headDim / 2
	return permuteHeadRows(data, headDim, cols, func(j int) int { return j/2 + (j%2)*half })
}

// permuteHeadRows returns data (rows of width cols, heads of headDim rows)
// with row j of every head taken from the head's row src(j).
func permuteHeadRows(data []float32, headDim, cols int, src func(j int) int) []float32 {
	out := make([]float32, len(data))
	for r := 0; r < len(data)/cols; r++ {
		h, j := r/headDim, r%headDim
		from := h*headDim + src(j)
		copy(out[r*cols:(r+1)*cols], data[from*cols:(from+1)*cols])
	}
	return out
}
