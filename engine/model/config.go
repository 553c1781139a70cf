package model

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/arch"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/quant"
)

// Config is the normalised Hugging Face configuration a model is built
// from (config.json, see package hfconfig).
type Config = hfconfig.Config

// Options adjust how a model is built from a configuration.
type Options struct {
	// RopeLayout selects which head-vector elements RoPE rotates together:
	// engine.RopeHalf (the zero value) for Hugging Face checkpoints,
	// engine.RopeInterleaved for llama2.c ones. Save converts interleaved
	// q/k projections to the Hugging Face layout, so the saved checkpoint
	// means the same model to transformers.
	RopeLayout engine.RopeLayout
	// Storage is the dtype parameters are stored in as they are built or
	// loaded: engine.Float32 (the zero value) or engine.BFloat16, the
	// frozen-weight dtype of engine.PrecisionBF16 (see
	// engine.Precision.ActDType). Loading straight into bfloat16 converts
	// one tensor at a time on the host, so the device never holds a
	// float32 copy of the whole model; SetPrecision then gives trainable
	// parameters float32 masters re-read from the checkpoint (exact for
	// F32 and F16 sources).
	Storage engine.DType
	// Quantize, when its Format is not quant.None, quantizes every dense
	// projection but the LM head as it is read (LoadWithOptions and
	// FromWeights): each is quantized from the host copy of its tensor,
	// so the device never holds it in float. The result is what
	// Transformer.Quantize makes after loading.
	Quantize quant.Options
}

// dimsOf validates cfg and derives the model geometry.
func dimsOf(cfg *Config, opt Options) (dims, error) {
	if cfg == nil {
		return dims{}, fmt.Errorf("model: nil config")
	}
	if opt.Storage != engine.Float32 && opt.Storage != engine.BFloat16 {
		return dims{}, fmt.Errorf("model: storage dtype %v: want Float32 or BFloat16", opt.Storage)
	}
	if err := cfg.Validate(); err != nil {
		return dims{}, fmt.Errorf("model: config: %w", err)
	}
	act, err := cfg.Act()
	if err != nil {
		return dims{}, fmt.Errorf("model: config: %w", err)
	}
	d := dims{
		vocab: cfg.VocabSize, hidden: cfg.Hidden, layers: cfg.Layers,
		heads: cfg.Heads, kvHeads: cfg.KVHeads, headDim: cfg.HeadDim,
		inter: cfg.Intermediate, maxPos: cfg.MaxPos, eps: float32(cfg.NormEps),
		tied: cfg.TieEmbeddings, qkvBias: cfg.AttentionBias, oBias: cfg.AttnOutBias,
		mlpBias: cfg.MLPBias, act: act, ropeTheta: cfg.RopeTheta,
		ropeScaling: cfg.RopeScaling, ropeLayout: opt.RopeLayout, storage: opt.Storage,
	}
	d.fam = cfg.Family()
	d.rotDim = cfg.RotaryDim()
	d.embMul, d.resMul, d.logitMul = 1, 1, 1
	if cfg.Arch == hfconfig.ArchGranite {
		d.embMul, d.resMul = float32(cfg.EmbeddingMultiplier), float32(cfg.ResidualMultiplier)
		d.logitMul = float32(1 / cfg.LogitsScaling)
	}
	if d.fam.MLP == arch.GatedMLP && act != engine.ActSiLU && act != engine.ActGELUTanh {
		return dims{}, fmt.Errorf("model: config: %s MLP activation %q is not supported (the gated MLP is SwiGLU, silu, or GeGLU, gelu_pytorch_tanh)", cfg.Arch, cfg.HiddenAct)
	}
	if d.fam.Positions != arch.Rotary {
		if opt.RopeLayout != engine.RopeHalf {
			return dims{}, fmt.Errorf("model: %s has no rotary embeddings to lay out", cfg.Arch)
		}
	} else if opt.RopeLayout != engine.RopeHalf && opt.RopeLayout != engine.RopeInterleaved {
		return dims{}, fmt.Errorf("model: unknown RoPE layout %d", opt.RopeLayout)
	} else if d.fam.InterleavedRotary && opt.RopeLayout != engine.RopeHalf {
		return dims{}, fmt.Errorf("model: %s checkpoints rotate interleaved pairs already; Options.RopeLayout must be the default", cfg.Arch)
	}
	d.embdDrop, d.residDrop = float32(cfg.EmbdDropout), float32(cfg.ResidDropout)
	// Gemma's (zero, none, for the other families)
	d.embScale, d.logitCap, d.localTheta = d.fam.EmbedScale, float32(cfg.FinalSoftCap), cfg.RopeLocalTheta
	return d, nil
}

// attentionOptions returns layer l's attention options as the config sets
// them (the per-pass parts, such as dropout seeds, are filled in by
// layerAttention): its sliding window and attention dropout, Granite's
// attention_multiplier and Gemma's query_pre_attn_scalar^-0.5 as the
// score scale, Gemma 2's attention soft cap.
func attentionOptions(cfg *Config, l int) engine.AttentionOptions {
	o := engine.AttentionOptions{Window: cfg.LayerWindow(l), Dropout: float32(cfg.AttentionDropout)}
	switch cfg.Arch {
	case hfconfig.ArchGranite:
		o.Scale = float32(cfg.AttentionMultiplier) // replaces 1/sqrt(head_dim)
	case hfconfig.ArchGemma2, hfconfig.ArchGemma3:
		o.Scale = float32(math.Pow(cfg.QueryPreAttnScalar, -0.5))
		o.SoftCap = float32(cfg.AttnSoftCap)
	}
	return o
}
