package hfconfig

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// Sliding-window attention as transformers configures it:
//
//   - MistralConfig: sliding_window (default 4096; null turns it off)
//     applies to every layer;
//   - Phi3Config: sliding_window (default none) applies to every layer;
//   - Qwen2Config, Qwen3Config: sliding_window counts only when
//     use_sliding_window is true, and only on the layers layer_types
//     marks "sliding_attention"; without layer_types those are the layers
//     from max_window_layers (default 28) on;
//   - Gemma2Config, Gemma3TextConfig: sliding_window (default 4096)
//     applies to the layers layer_types marks "sliding_attention";
//     without layer_types layer i slides unless i+1 is a multiple of the
//     pattern (2 for Gemma 2; Gemma 3's sliding_window_pattern, default
//     6).
//
// A sliding layer's query at position i sees the keys at positions
// i−window+1 .. i (transformers' kv_idx > q_idx − sliding_window).

// Layer attention kinds of layer_types.
const (
	FullAttention    = "full_attention"
	SlidingAttention = "sliding_attention"
)

// qwenMaxWindowLayers is Qwen2Config's and Qwen3Config's default
// max_window_layers.
const qwenMaxWindowLayers = 28

// slidingWindow reads the family's sliding-window keys.
func (p *parser) slidingWindow(c *Config) error {
	switch c.Arch {
	case ArchMistral, ArchGemma2, ArchGemma3:
		p.use("sliding_window")
		if _, present := p.raw["sliding_window"]; !present {
			c.SlidingWindow = intPtr(4096)
		} else if v, ok, err := p.optInt("sliding_window"); err != nil {
			return err
		} else if ok {
			c.SlidingWindow = &v
		}
		if c.Arch != ArchMistral {
			return p.gemmaLayerTypes(c)
		}
	case ArchPhi3:
		if v, ok, err := p.optInt("sliding_window"); err != nil {
			return err
		} else if ok {
			c.SlidingWindow = &v
		}
	case ArchQwen2, ArchQwen3:
		use, err := p.boolOr("use_sliding_window", false)
		if err != nil {
			return err
		}
		if use {
			v, err := p.intOr("sliding_window", 4096)
			if err != nil {
				return err
			}
			c.SlidingWindow = &v
		}
		if c.MaxWindowLayers, err = p.intOr("max_window_layers", qwenMaxWindowLayers); err != nil {
			return err
		}
		return p.layerTypes(c)
	}
	return nil
}

// gemmaLayerTypes reads Gemma's layer_types and default pattern (Gemma
// 2: 2; Gemma 3: sliding_window_pattern, superseded by layer_types when
// both are present).
func (p *parser) gemmaLayerTypes(c *Config) error {
	c.SlidingPattern = 2
	if c.Arch == ArchGemma3 {
		var err error
		if c.SlidingPattern, err = p.intOr("sliding_window_pattern", 6); err != nil {
			return err
		}
	}
	return p.layerTypes(c)
}

// layerTypes reads an explicit layer_types list.
func (p *parser) layerTypes(c *Config) error {
	if j := p.get("layer_types"); j != nil {
		if err := json.Unmarshal(j, &c.LayerTypes); err != nil {
			return p.errf("layer_types", "must be a list of strings, got %s", j)
		}
	}
	return nil
}

// LayerType returns the attention kind of layer l, FullAttention or
// SlidingAttention, as transformers' config classes derive layer_types:
// the explicit list when config.json has one; otherwise every Mistral or
// Phi-3 layer with a window, the Qwen2/Qwen3 layers from max_window_layers on
// when use_sliding_window is true, and Gemma's default pattern (which
// slides whatever sliding_window says: Validate requires one).
func (c *Config) LayerType(l int) string {
	if c.LayerTypes != nil {
		if l < len(c.LayerTypes) {
			return c.LayerTypes[l]
		}
		return FullAttention
	}
	switch c.Arch {
	case ArchMistral, ArchPhi3:
		if c.SlidingWindow != nil {
			return SlidingAttention
		}
	case ArchQwen2, ArchQwen3:
		if c.SlidingWindow != nil && l >= c.MaxWindowLayers {
			return SlidingAttention
		}
	case ArchGemma2, ArchGemma3:
		if c.SlidingPattern > 0 && (l+1)%c.SlidingPattern != 0 {
			return SlidingAttention
		}
	}
	return FullAttention
}

// LayerWindow returns the sliding window of layer l's attention: the
// number of positions each query sees (its own included), or 0 for full
// causal attention.
func (c *Config) LayerWindow(l int) int {
	if c.SlidingWindow == nil || c.LayerType(l) != SlidingAttention {
		return 0
	}
	return *c.SlidingWindow
}

// firstSlidingLayer returns the first layer LayerType marks sliding
// whatever sliding_window says (layer_types or Gemma's pattern, whose
// layer 0 slides if any does), or -1, without walking a hostile layer
// count.
func (c *Config) firstSlidingLayer() int {
	if c.LayerTypes == nil {
		if c.Layers > 0 && c.SlidingPattern > 0 && c.LayerType(0) == SlidingAttention {
			return 0
		}
		return -1
	}
	for l, t := range c.LayerTypes {
		if t == SlidingAttention {
			return l
		}
	}
	return -1
}

// validateWindow checks the sliding-window fields (Validate).
func (c *Config) validateWindow() error {
	if c.SlidingWindow != nil && *c.SlidingWindow <= 0 {
		return fmt.Errorf("field \"sliding_window\" must be positive (or null for none), got %d", *c.SlidingWindow)
	}
	if c.MaxWindowLayers < 0 {
		return fmt.Errorf("field \"max_window_layers\" must not be negative, got %d", c.MaxWindowLayers)
	}
	if c.LayerTypes == nil {
		return nil
	}
	if len(c.LayerTypes) != c.Layers {
		return fmt.Errorf("field \"layer_types\" lists %d layers, the model has %d", len(c.LayerTypes), c.Layers)
	}
	for i, t := range c.LayerTypes {
		if t != FullAttention && t != SlidingAttention {
			return fmt.Errorf("field \"layer_types\": layer %d is %q (want %q or %q)", i, t, FullAttention, SlidingAttention)
		}
	}
	return nil
}

// mergeWindow writes the sliding-window keys whose fields changed since
// o (Save).
func (c *Config) mergeWindow(o *Config, set func(key string, v any)) {
	if !reflect.DeepEqual(c.SlidingWindow, o.SlidingWindow) {
		switch c.Arch {
		case ArchMistral, ArchPhi3, ArchGemma2, ArchGemma3:
			set("sliding_window", c.SlidingWindow)
		case ArchQwen2, ArchQwen3:
			set("use_sliding_window", c.SlidingWindow != nil)
			if c.SlidingWindow != nil {
				set("sliding_window", c.SlidingWindow)
			}
		}
	}
	if c.Arch != ArchQwen2 && c.Arch != ArchQwen3 && !c.isGemma() {
		return
	}
	if c.MaxWindowLayers != o.MaxWindowLayers && (c.Arch == ArchQwen2 || c.Arch == ArchQwen3) {
		set("max_window_layers", c.MaxWindowLayers)
	}
	if c.SlidingPattern != o.SlidingPattern && c.Arch == ArchGemma3 {
		set("sliding_window_pattern", c.SlidingPattern)
	}
	if !reflect.DeepEqual(c.LayerTypes, o.LayerTypes) {
		set("layer_types", c.LayerTypes) // nil: null
	}
}
