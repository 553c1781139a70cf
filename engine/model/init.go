package model

import (
	"math"
	"math/rand/v2"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/arch"
)

// initStd is transformers' default initializer_range.
const initStd = 0.02

// New builds a model for cfg with seeded random weights, initialised as
// transformers does: weight matrices and embeddings ~ N(0, 0.02²) (GPT-2's
// residual projections c_proj scaled by 1/sqrt(2·layers)), biases 0, norm
// weights 1. The same seed gives the same weights on every backend.
func New(cfg *Config, be engine.Backend, seed uint64) (Model, error) {
	return NewWithOptions(cfg, be, seed, Options{})
}

// NewWithOptions is New with build options.
func NewWithOptions(cfg *Config, be engine.Backend, seed uint64, opt Options) (Model, error) {
	mod, m, err := newTransformer(cfg, be, opt)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x6d6f64656c))
	for _, p := range m.base {
		host := make([]float32, p.W.Len())
		switch {
		case strings.HasSuffix(p.Name, ".bias"):
			// zeros
		case !p.Decay && m.d.fam.Norm == arch.OffsetRMSNorm:
			// zeros: Gemma's norms scale by 1 + weight
		case !p.Decay: // norm weights
			for i := range host {
				host[i] = 1
			}
		default:
			std := initStd
			if suf := m.d.fam.ScaledInitSuffix; suf != "" && strings.HasSuffix(p.Name, suf) {
				std /= math.Sqrt(2 * float64(m.d.layers))
			}
			for i := range host {
				host[i] = float32(rng.NormFloat64() * std)
			}
		}
		m.be.Upload(p.W, host)
	}
	return mod, nil
}
