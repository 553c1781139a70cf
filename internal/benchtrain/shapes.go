package benchtrain

import (
	"fmt"
	"strings"

	"github.com/gotune/gotune/engine/hfconfig"
)

// Preset is a named LLaMA-shaped model and the batch it is benchmarked
// with.
type Preset struct {
	// Name is what --preset takes.
	Name  string
	Sizes hfconfig.Sizes
	// Batch and Seq are the sequences per step and their length.
	Batch, Seq int
}

// presets are the benchmark's models. 0.5b and 1.5b are the GPU
// workloads: LLaMA-shaped (untied embeddings, SwiGLU MLP, RoPE, two query
// heads per key/value head) with LLaMA-2's 32000-token vocabulary, about
// 0.48 and 1.45 billion parameters, sequences of 2048 and a batch that
// leaves room for float32 full fine-tuning on an 80 GB card (8192 and 4096
// tokens per step). tiny is the smoke test that runs in seconds on the
// CPU and the emulator.
var presets = []Preset{
	{Name: "tiny", Sizes: hfconfig.Sizes{VocabSize: 256, Hidden: 64, Layers: 2, Heads: 4, KVHeads: 2, Intermediate: 176, MaxPos: 64}, Batch: 2, Seq: 64},
	{Name: "0.5b", Sizes: hfconfig.Sizes{VocabSize: 32000, Hidden: 1024, Layers: 24, Heads: 16, KVHeads: 8, Intermediate: 4608, MaxPos: 2048}, Batch: 4, Seq: 2048},
	{Name: "1.5b", Sizes: hfconfig.Sizes{VocabSize: 32000, Hidden: 2048, Layers: 28, Heads: 16, KVHeads: 8, Intermediate: 5632, MaxPos: 2048}, Batch: 2, Seq: 2048},
}

// presetNames lists the presets for flag help and errors.
func presetNames() string {
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// findPreset returns the preset called name.
func findPreset(name string) (Preset, error) {
	for _, p := range presets {
		if p.Name == name {
			return p, nil
		}
	}
	return Preset{}, fmt.Errorf("unknown preset %q (want %s)", name, presetNames())
}

// Shape is the geometry of one benchmarked model, everything the PyTorch
// side needs to build the same one (scripts/bench_peft.py reads it from
// the JSON plan).
type Shape struct {
	Vocab        int `json:"vocab"`
	Hidden       int `json:"hidden"`
	Layers       int `json:"layers"`
	Heads        int `json:"heads"`
	KVHeads      int `json:"kv_heads"`
	HeadDim      int `json:"head_dim"`
	Intermediate int `json:"intermediate"`
	MaxPos       int `json:"max_pos"`
}

func shapeOf(s hfconfig.Sizes) Shape {
	return Shape{Vocab: s.VocabSize, Hidden: s.Hidden, Layers: s.Layers, Heads: s.Heads, KVHeads: s.KVHeads,
		HeadDim: s.Hidden / s.Heads, Intermediate: s.Intermediate, MaxPos: s.MaxPos}
}

// linears returns the (in, out) widths of one layer's linear layers in
// PEFT's all-linear order: q, k, v, o, gate, up, down.
func (s Shape) linears() [][2]int {
	q, kv := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim
	return [][2]int{{s.Hidden, q}, {s.Hidden, kv}, {s.Hidden, kv}, {q, s.Hidden},
		{s.Hidden, s.Intermediate}, {s.Hidden, s.Intermediate}, {s.Intermediate, s.Hidden}}
}

// MatmulParams is the number of weights that take part in a matrix
// product per token: every layer's linears and lm_head (the embedding is
// a lookup, and norm weights are elementwise).
func (s Shape) MatmulParams() int64 {
	var n int64
	for _, l := range s.linears() {
		n += int64(l[0]) * int64(l[1])
	}
	return n*int64(s.Layers) + int64(s.Vocab)*int64(s.Hidden)
}

// Params is the model's parameter count: matmul weights, the untied
// embedding, two RMSNorm weights per layer and the final norm.
func (s Shape) Params() int64 {
	return s.MatmulParams() + int64(s.Vocab)*int64(s.Hidden) + int64(2*s.Layers+1)*int64(s.Hidden)
}

// LoRAParams is the adapter's parameter count at rank r on every linear
// layer but lm_head: r·(in+out) each.
func (s Shape) LoRAParams(r int) int64 {
	var n int64
	for _, l := range s.linears() {
		n += int64(r) * int64(l[0]+l[1])
	}
	return n * int64(s.Layers)
}

// FLOPsFormula says how FLOPsPerToken counts, for reports.
const FLOPsFormula = "full: 6·N + 6·L·T·(H·d); lora: 4·N + 6·N_lora + 6·L·T·(H·d), where N is the matmul weights " +
	"(every linear and lm_head, no embedding), N_lora the adapter's, L layers, T the sequence length, H·d the query " +
	"width; a frozen weight needs no weight gradient (4·N), and attention's two T×T products are halved by the " +
	"causal mask and counted three times (forward + backward); recomputation under gradient checkpointing is not counted"

// FLOPsPerToken is the model FLOPs of one trained token (see FLOPsFormula).
func (s Shape) FLOPsPerToken(method Method, loraR, seq int) float64 {
	attn := 6 * float64(s.Layers) * float64(seq) * float64(s.Heads*s.HeadDim)
	n := float64(s.MatmulParams())
	if method == LoRA {
		return 4*n + 6*float64(s.LoRAParams(loraR)) + attn
	}
	return 6*n + attn
}
