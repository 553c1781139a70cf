package hfconfig

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLayerWindow checks which layers slide, as transformers'
// MistralConfig, Qwen2Config/Qwen3Config and Gemma2Config/
// Gemma3TextConfig decide it.
func TestLayerWindow(t *testing.T) {
	const qwen = `"vocab_size":10,"hidden_size":8,"num_hidden_layers":4,"num_attention_heads":2,"intermediate_size":12`
	tests := []struct {
		name string
		json string
		want []int
	}{
		{"mistral default", `{"architectures":["MistralForCausalLM"],` + qwen + `}`, []int{4096, 4096, 4096, 4096}},
		{"mistral null", `{"architectures":["MistralForCausalLM"],"sliding_window":null,` + qwen + `}`, []int{0, 0, 0, 0}},
		{"mistral 3", `{"architectures":["MistralForCausalLM"],"sliding_window":3,` + qwen + `}`, []int{3, 3, 3, 3}},
		{"qwen2 off", `{"architectures":["Qwen2ForCausalLM"],"sliding_window":3,"max_window_layers":1,` + qwen + `}`, []int{0, 0, 0, 0}},
		{"qwen2 default max_window_layers 28", `{"architectures":["Qwen2ForCausalLM"],"use_sliding_window":true,"sliding_window":3,` + qwen + `}`, []int{0, 0, 0, 0}},
		{"qwen2 from layer 2", `{"architectures":["Qwen2ForCausalLM"],"use_sliding_window":true,"sliding_window":3,"max_window_layers":2,` + qwen + `}`, []int{0, 0, 3, 3}},
		{"qwen2 default window", `{"architectures":["Qwen2ForCausalLM"],"use_sliding_window":true,"max_window_layers":0,` + qwen + `}`, []int{4096, 4096, 4096, 4096}},
		{"qwen3 layer_types", `{"architectures":["Qwen3ForCausalLM"],"use_sliding_window":true,"sliding_window":5,"max_window_layers":0,` + qwen +
			`,"layer_types":["sliding_attention","full_attention","sliding_attention","full_attention"]}`, []int{5, 0, 5, 0}},
		{"qwen2 layer_types without use_sliding_window", `{"architectures":["Qwen2ForCausalLM"],"sliding_window":5,` + qwen +
			`,"layer_types":["sliding_attention","sliding_attention","full_attention","full_attention"]}`, []int{0, 0, 0, 0}},
		{"gemma2 pattern", `{"architectures":["Gemma2ForCausalLM"],"num_key_value_heads":1,"head_dim":4,"sliding_window":3,` + qwen + `}`, []int{3, 0, 3, 0}},
		{"gemma3 pattern 3", `{"architectures":["Gemma3ForCausalLM"],"num_key_value_heads":1,"head_dim":4,"sliding_window_pattern":3,` + qwen + `}`, []int{4096, 4096, 0, 4096}},
		{"gemma3 layer_types", `{"architectures":["Gemma3ForCausalLM"],"num_key_value_heads":1,"head_dim":4,"sliding_window":2,"sliding_window_pattern":3,` + qwen +
			`,"layer_types":["full_attention","sliding_attention","full_attention","full_attention"]}`, []int{0, 2, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.json), "m/config.json")
			require.NoError(t, err)
			got := make([]int, c.Layers)
			for l := range got {
				got[l] = c.LayerWindow(l)
			}
			assert.Equal(t, tc.want, got)
			assert.Empty(t, c.Warnings(), "every sliding-window key is read")
		})
	}
}

// TestWindowErrors checks that impossible windows are one-line errors
// naming the key.
func TestWindowErrors(t *testing.T) {
	const qwen = `"vocab_size":10,"hidden_size":8,"num_hidden_layers":2,"num_attention_heads":2,"intermediate_size":12`
	tests := []struct{ name, json, want string }{
		{"zero window", `{"architectures":["MistralForCausalLM"],"sliding_window":0,` + qwen + `}`, `"sliding_window" must be positive`},
		{"layer count", `{"architectures":["Qwen2ForCausalLM"],"layer_types":["full_attention"],` + qwen + `}`, `"layer_types" lists 1 layers, the model has 2`},
		{"layer kind", `{"architectures":["Qwen2ForCausalLM"],"layer_types":["full_attention","chunked_attention"],` + qwen + `}`, `layer 1 is "chunked_attention"`},
		{"not a list", `{"architectures":["Qwen2ForCausalLM"],"layer_types":3,` + qwen + `}`, `"layer_types": must be a list of strings`},
		{"llama sliding layers", `{"architectures":["LlamaForCausalLM"],"layer_types":["sliding_attention","full_attention"],` + qwen + `}`, `"layer_types"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.json), "m/config.json")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "m/config.json")
		})
	}
}

// TestWindowSaveRoundTrip checks that changed window fields are written
// under transformers' keys and read back.
func TestWindowSaveRoundTrip(t *testing.T) {
	c, err := NewQwen2(Sizes{VocabSize: 16, Hidden: 8, Layers: 3, Heads: 2, Intermediate: 12})
	require.NoError(t, err)
	w := 4
	c.SlidingWindow, c.MaxWindowLayers = &w, 1
	c.LayerTypes = []string{FullAttention, SlidingAttention, FullAttention}
	dir := t.TempDir()
	require.NoError(t, c.Save(dir))
	back, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, []int{0, 4, 0}, []int{back.LayerWindow(0), back.LayerWindow(1), back.LayerWindow(2)})
	raw, _ := back.RawValue("layer_types")
	var types []string
	require.NoError(t, json.Unmarshal(raw, &types))
	assert.Equal(t, c.LayerTypes, types)
	use, _ := back.RawValue("use_sliding_window")
	assert.JSONEq(t, "true", string(use))
	mwl, _ := back.RawValue("max_window_layers")
	assert.JSONEq(t, "1", string(mwl))

	back.LayerTypes = nil
	require.NoError(t, back.Save(filepath.Join(dir)))
	again, err := Load(dir)
	require.NoError(t, err)
	assert.Nil(t, again.LayerTypes)
	assert.Equal(t, []int{0, 4, 4}, []int{again.LayerWindow(0), again.LayerWindow(1), again.LayerWindow(2)})
}
