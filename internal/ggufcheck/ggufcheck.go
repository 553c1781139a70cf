// Package ggufcheck builds the models the GGUF export is checked on,
// beyond the LLaMA checkpoints in the repository, and computes gotune's
// next-token distributions that llama.cpp's are compared with. A Qwen2
// model is made from the trained demo model; the other families get
// seeded random check models (families.go). The Qwen2 model's weights are the demo's (so greedy
// decoding has clear winners, unlike a random model's near-ties, and a
// comparison with llama.cpp means something) plus seeded random q/k/v
// biases, which Qwen2 has and LLaMA lacks. Qwen2 applies RoPE in Hugging
// Face's rotate_half layout, as the demo was trained, so without the
// biases it would compute the demo's function.
package ggufcheck

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
)

// BiasStd is the standard deviation of the added q/k/v biases: large
// enough to change the attention pattern, small enough to keep the
// demo's skills.
const BiasStd = 0.05

// Qwen2FromLlama builds a Qwen2ForCausalLM with m's sizes and weights and
// seeded random q/k/v biases. m must be a LLaMA without biases.
func Qwen2FromLlama(m model.Model, be engine.Backend, seed uint64) (model.Model, error) {
	src := m.Config()
	if src.Arch != hfconfig.ArchLlama || src.AttentionBias || src.MLPBias {
		return nil, fmt.Errorf("ggufcheck: want a LLaMA without biases, got %s", src.Arch)
	}
	cfg, err := hfconfig.NewQwen2(hfconfig.Sizes{VocabSize: src.VocabSize, Hidden: src.Hidden, Layers: src.Layers,
		Heads: src.Heads, KVHeads: src.KVHeads, Intermediate: src.Intermediate, MaxPos: src.MaxPos})
	if err != nil {
		return nil, err
	}
	cfg.TieEmbeddings, cfg.NormEps, cfg.RopeTheta = src.TieEmbeddings, src.NormEps, src.RopeTheta
	cfg.BosTokenID, cfg.EosTokenIDs, cfg.PadTokenID = src.BosTokenID, src.EosTokenIDs, src.PadTokenID
	cfg.TorchDtype = "float32"
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	w := map[string]model.HostTensor{}
	weights, err := m.HFWeights()
	if err != nil {
		return nil, err
	}
	for _, t := range weights {
		w[t.Name] = model.HostTensor{Shape: t.Shape, Data: t.Data}
		if rest, ok := strings.CutSuffix(t.Name, "_proj.weight"); ok && strings.Contains(rest, ".self_attn.") && !strings.HasSuffix(rest, ".o") {
			b := make([]float32, t.Shape[0])
			for i := range b {
				b[i] = float32(rng.NormFloat64() * BiasStd)
			}
			w[rest+"_proj.bias"] = model.HostTensor{Shape: []int{t.Shape[0]}, Data: b}
		}
	}
	return model.FromWeights(cfg, be, w, model.Options{})
}

// WriteQwen2 loads the LLaMA folder from, builds the Qwen2 variant and
// saves it to dir with from's tokenizer files.
func WriteQwen2(from, dir string, be engine.Backend, seed uint64) error {
	m, err := model.Load(from, be)
	if err != nil {
		return err
	}
	q, err := Qwen2FromLlama(m, be, seed)
	if err != nil {
		return err
	}
	return saveWithTokenizer(q, dir, from)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
