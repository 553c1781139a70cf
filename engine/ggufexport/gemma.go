package ggufexport

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine/hfconfig"
)

// What llama.cpp's gemma2 and gemma3 graphs fix rather than read from the
// file (llama-model.cpp): the layer pattern (a full layer every 2nd and
// every 6th), Gemma 3's local RoPE base, the query scale (1/sqrt(head_dim),
// or 1/sqrt(hidden/heads) for the 27B sizes, told apart by their layer
// count), a tied LM head, and Gemma 2's two soft caps (defaults when
// absent, divided by when zero).
const (
	gemma2Pattern, gemma3Pattern = 2, 6
	gemma3LocalTheta             = 10000
	gemma2Layers27B              = 46
	gemma3Layers27B              = 62
)

// checkGemma returns an error naming the config key whose value llama.cpp's
// gemma2 or gemma3 would not honour, so an export never computes something
// else silently.
func checkGemma(arch string, cfg *hfconfig.Config) error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("ggufexport: %s %s: llama.cpp's %s %s", cfg.Arch, key, arch, fmt.Sprintf(format, args...))
	}
	pattern, big := gemma2Pattern, gemma2Layers27B
	if arch == "gemma3" {
		pattern, big = gemma3Pattern, gemma3Layers27B
	}
	for i := 0; i < cfg.Layers; i++ {
		want := hfconfig.FullAttention
		if i%pattern < pattern-1 {
			want = hfconfig.SlidingAttention
		}
		if got := cfg.LayerType(i); got != want {
			return bad("layer_types", "makes layer %d %s (one full layer every %d), this config %s", i, want, pattern, got)
		}
	}
	scalar := cfg.HeadDim
	if cfg.Layers == big {
		scalar = cfg.Hidden / cfg.Heads
	}
	if math.Abs(cfg.QueryPreAttnScalar-float64(scalar)) > 1e-9 {
		return bad("query_pre_attn_scalar", "scales queries by 1/sqrt(%d), this config by 1/sqrt(%v)", scalar, cfg.QueryPreAttnScalar)
	}
	switch {
	case !cfg.TieEmbeddings:
		return bad("tie_word_embeddings", "reads the LM head from the token embeddings; this model's is untied")
	case arch == "gemma3" && cfg.RopeLocalTheta != gemma3LocalTheta:
		return bad("rope_local_base_freq", "rotates sliding layers with base %d, this config with %v", gemma3LocalTheta, cfg.RopeLocalTheta)
	case arch == "gemma3" && cfg.FinalSoftCap != 0:
		return bad("final_logit_softcapping", "export of a soft-capped Gemma 3 is not checked against llama.cpp (this config caps at %v)", cfg.FinalSoftCap)
	case arch == "gemma2" && (cfg.AttnSoftCap == 0 || cfg.FinalSoftCap == 0):
		return bad("attn_logit_softcapping/final_logit_softcapping", "always soft-caps; this config has none (%v, %v)", cfg.AttnSoftCap, cfg.FinalSoftCap)
	}
	return nil
}
