package model

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/safetensors"
)

// Save writes the model's base weights to dir in Hugging Face layout:
// config.json and model.safetensors (float32, transformers' names, a tied
// lm_head stored once as the embedding), each file atomically. A model
// built with interleaved RoPE has its q/k projection rows permuted to the
// rotate_half layout, so transformers computes the same function. Methods
// save their own adapter files; replaced modules' extra parameters are not
// part of the base checkpoint.
func (m *Transformer) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("model: save: %w", err)
	}
	tensors := make([]safetensors.Tensor, 0, len(m.base))
	for _, p := range m.base {
		data := m.be.Download(p.W)
		if m.d.ropeLayout == engine.RopeInterleaved && isRotated(p.Name) {
			data = interleavedToHalf(data, m.d.headDim, p.W.Len()/p.W.Dim(0))
		}
		tensors = append(tensors, safetensors.Tensor{Name: p.Name, DType: "F32", Shape: append([]int(nil), p.W.Shape()...), F32: data})
	}
	path := filepath.Join(dir, safetensors.SingleFile)
	if err := safetensors.Write(path, tensors, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("model: save: %w", err)
	}
	cfg := m.cfg.Clone()
	cfg.TorchDtype = "float32"
	if err := cfg.Save(dir); err != nil {
		return fmt.Errorf("model: save: %w", err)
	}
	return nil
}

// isRotated reports the parameters whose output rows RoPE rotates.
func isRotated(name string) bool {
	return strings.Contains(name, ".self_attn.q_proj.") || strings.Contains(name, ".self_attn.k_proj.")
}

// interleavedToHalf permutes the rows (of width cols) of a q/k projection
// from llama2.c's pairing (2i, 2i+1) to Hugging Face's (i, i+headDim/2)
// within each head: new row i takes old row 2i, new row i+headDim/2 takes
// old row 2i+1.
func interleavedToHalf(data []float32, headDim, cols int) []float32 {
	out := make([]float32, len(data))
	rows := len(data) / cols
	half := headDim / 2
	for r := 0; r < rows; r++ {
		h, j := r/headDim, r%headDim
		src := h*headDim + 2*(j%half) + j/half
		copy(out[r*cols:(r+1)*cols], data[src*cols:(src+1)*cols])
	}
	return out
}
