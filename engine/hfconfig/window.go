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
//     from max_window_layers (default 28) on.
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
	case ArchMistral:
		p.use("sliding_window")
		if _, present := p.raw["sliding_window"]; !present {
			c.SlidingWindow = intPtr(4096)
		} else if v, ok, err := p.optInt("sliding_window"); err != nil {
			return err
		} else if ok {
			c.SlidingWindow = &v
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
		if j := p.get("layer_types"); j != nil {
			if err := json.Unmarshal(j, &c.LayerTypes); err != nil {
				return p.errf("layer_types", "must be a list of strings, got %s", j)
			}
		}
	}
	return nil
}

// LayerWindow returns the sliding window of layer l's attention: the
// number of positions each query sees (its own included), or 0 for full
// causal attention.
func (c *Config) LayerWindow(l int) int {
	if c.SlidingWindow == nil {
		return 0
	}
	switch c.Arch {
	case ArchMistral, ArchPhi3:
		return *c.SlidingWindow
	case ArchQwen2, ArchQwen3:
		if c.LayerTypes != nil {
			if l < len(c.LayerTypes) && c.LayerTypes[l] == SlidingAttention {
				return *c.SlidingWindow
			}
			return 0
		}
		if l >= c.MaxWindowLayers {
			return *c.SlidingWindow
		}
	}
	return 0
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
		case ArchMistral, ArchPhi3:
			set("sliding_window", c.SlidingWindow)
		case ArchQwen2, ArchQwen3:
			set("use_sliding_window", c.SlidingWindow != nil)
			if c.SlidingWindow != nil {
				set("sliding_window", c.SlidingWindow)
			}
		}
	}
	if c.Arch != ArchQwen2 && c.Arch != ArchQwen3 {
		return
	}
	if c.MaxWindowLayers != o.MaxWindowLayers {
		set("max_window_layers", c.MaxWindowLayers)
	}
	if !reflect.DeepEqual(c.LayerTypes, o.LayerTypes) {
		set("layer_types", c.LayerTypes) // nil: null
	}
}
