package hfconfig

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// factors returns a JSON list of n longrope factors.
func factors(n int, base float64) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprint(base + float64(i)/8)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// Real-shaped configs (the published config.json files' keys and values,
// longrope factors shortened to their count).
var (
	phi4Mini = `{"architectures":["Phi3ForCausalLM"],"attention_bias":false,"attention_dropout":0.0,"bos_token_id":199999,` +
		`"embd_pdrop":0.0,"eos_token_id":199999,"full_attn_mod":1,"hidden_act":"silu","hidden_size":3072,"initializer_range":0.02,` +
		`"intermediate_size":8192,"interpolate_factor":1,"lm_head_bias":false,"max_position_embeddings":131072,"mlp_bias":false,` +
		`"model_type":"phi3","num_attention_heads":24,"num_hidden_layers":32,"num_key_value_heads":8,` +
		`"original_max_position_embeddings":4096,"pad_token_id":199999,"partial_rotary_factor":0.75,"resid_pdrop":0.0,` +
		`"rms_norm_eps":1e-05,"rope_scaling":{"long_factor":` + factors(48, 1) + `,"short_factor":` + factors(48, 1) + `,"type":"longrope"},` +
		`"rope_theta":10000.0,"sliding_window":262144,"tie_word_embeddings":true,"torch_dtype":"bfloat16",` +
		`"transformers_version":"4.45.0","use_cache":true,"vocab_size":200064}`
	phi3Mini4k = `{"architectures":["Phi3ForCausalLM"],"attention_dropout":0.0,"bos_token_id":1,"embd_pdrop":0.0,"eos_token_id":32000,` +
		`"hidden_act":"silu","hidden_size":3072,"initializer_range":0.02,"intermediate_size":8192,"max_position_embeddings":4096,` +
		`"model_type":"phi3","num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":32,` +
		`"original_max_position_embeddings":4096,"pad_token_id":32000,"resid_pdrop":0.0,"rms_norm_eps":1e-05,"rope_scaling":null,` +
		`"rope_theta":10000.0,"sliding_window":2047,"tie_word_embeddings":false,"torch_dtype":"bfloat16",` +
		`"transformers_version":"4.40.2","use_cache":true,"attention_bias":false,"vocab_size":32064}`
	glm4_9b0414 = `{"architectures":["Glm4ForCausalLM"],"attention_bias":true,"attention_dropout":0.0,` +
		`"eos_token_id":[151329,151336,151338],"head_dim":128,"hidden_act":"silu","hidden_size":4096,"initializer_range":0.02,` +
		`"intermediate_size":13696,"max_position_embeddings":32768,"model_type":"glm4","num_attention_heads":32,` +
		`"num_hidden_layers":40,"num_key_value_heads":2,"pad_token_id":151329,"partial_rotary_factor":0.5,"rms_norm_eps":1e-05,` +
		`"rope_theta":10000.0,"tie_word_embeddings":false,"torch_dtype":"bfloat16","transformers_version":"4.52.0.dev0",` +
		`"use_cache":true,"vocab_size":151552}`
	glm4_9bChat = `{"architectures":["GlmForCausalLM"],"attention_bias":true,"attention_dropout":0.0,` +
		`"eos_token_id":[151329,151336,151338],"head_dim":128,"hidden_act":"silu","hidden_size":4096,"initializer_range":0.02,` +
		`"intermediate_size":13696,"max_position_embeddings":131072,"model_type":"glm","num_attention_heads":32,` +
		`"num_hidden_layers":40,"num_key_value_heads":2,"pad_token_id":151329,"partial_rotary_factor":0.5,` +
		`"rms_norm_eps":1.5625e-07,"rope_theta":10000.0,"tie_word_embeddings":false,"torch_dtype":"bfloat16",` +
		`"transformers_version":"4.46.0.dev0","use_cache":true,"vocab_size":151552}`
)

// TestPhi3GlmConfigs parses the published configs of Phi-4-mini,
// Phi-3-mini-4k, GLM-4-9B-0414 and glm-4-9b-chat-hf.
func TestPhi3GlmConfigs(t *testing.T) {
	t.Run("phi4-mini", func(t *testing.T) {
		c, err := Parse([]byte(phi4Mini), "m/config.json")
		require.NoError(t, err)
		assert.Equal(t, ArchPhi3, c.Arch)
		assert.Equal(t, 128, c.HeadDim)
		assert.Equal(t, 96, c.RotaryDim())
		assert.Equal(t, 8, c.KVHeads)
		r := c.RopeScaling
		require.NotNil(t, r)
		assert.Equal(t, "longrope", r.Type)
		assert.Equal(t, 4096, r.OriginalMaxPos)
		assert.Equal(t, 32.0, r.Factor)
		assert.Len(t, r.ShortFactor, 48)
		assert.Equal(t, 262144, *c.SlidingWindow)
		assert.True(t, c.TieEmbeddings)
		assert.False(t, c.AttentionBias || c.AttnOutBias || c.MLPBias)
		assert.Equal(t, []string{"full_attn_mod", "interpolate_factor", "lm_head_bias"}, c.UnknownKeys())
	})
	t.Run("phi3-mini-4k", func(t *testing.T) {
		c, err := Parse([]byte(phi3Mini4k), "m/config.json")
		require.NoError(t, err)
		assert.Nil(t, c.RopeScaling)
		assert.Equal(t, 96, c.RotaryDim())
		assert.Equal(t, 2047, *c.SlidingWindow)
		for l := 0; l < c.Layers; l++ {
			assert.Equal(t, 2047, c.LayerWindow(l), "layer %d: Phi-3's window slides on every layer", l)
		}
		assert.Equal(t, []int{32000}, c.EosTokenIDs)
		assert.Empty(t, c.Warnings())
	})
	for _, tc := range []struct{ name, json, arch string }{
		{"glm-4-9b-0414", glm4_9b0414, ArchGlm4}, {"glm-4-9b-chat-hf", glm4_9bChat, ArchGlm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.json), "m/config.json")
			require.NoError(t, err)
			assert.Equal(t, tc.arch, c.Arch)
			assert.Equal(t, 128, c.HeadDim)
			assert.Equal(t, 64, c.RotaryDim())
			assert.True(t, c.AttentionBias)
			assert.False(t, c.AttnOutBias || c.MLPBias)
			assert.Equal(t, []int{151329, 151336, 151338}, c.EosTokenIDs)
			assert.Nil(t, c.BosTokenID)
			assert.Empty(t, c.Warnings())
		})
	}
}

// TestPhi3GlmDefaults checks the configuration classes' defaults for
// keys a file leaves out.
func TestPhi3GlmDefaults(t *testing.T) {
	const sizes = `"vocab_size":64,"hidden_size":64,"num_hidden_layers":1,"num_attention_heads":4,"intermediate_size":40`
	phi, err := Parse([]byte(`{"architectures":["Phi3ForCausalLM"],`+sizes+`}`), "m/config.json")
	require.NoError(t, err)
	assert.Equal(t, []any{4, 16, 16, 1e-5, 4096, 1.0}, []any{phi.KVHeads, phi.HeadDim, phi.RotaryDim(), phi.NormEps, phi.MaxPos, phi.PartialRotaryFactor})
	assert.Nil(t, phi.SlidingWindow)
	assert.Zero(t, phi.LayerWindow(0))
	assert.Zero(t, phi.ResidDropout)
	drop, err := Parse([]byte(`{"architectures":["Phi3ForCausalLM"],"resid_pdrop":0.1,"embd_pdrop":0.2,`+sizes+`}`), "m/config.json")
	require.NoError(t, err)
	assert.Equal(t, []float64{0.1, 0}, []float64{drop.ResidDropout, drop.EmbdDropout}, "Phi3Model has no embedding dropout")
	assert.Contains(t, strings.Join(drop.Warnings(), "\n"), "embd_pdrop 0.2")
	_, err = Parse([]byte(`{"architectures":["Phi3ForCausalLM"],"resid_pdrop":1,`+sizes+`}`), "m/config.json")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"resid_pdrop" must be a probability in [0, 1), got 1`)
	glm, err := Parse([]byte(`{"architectures":["GlmForCausalLM"],`+sizes+`}`), "m/config.json")
	require.NoError(t, err)
	assert.Equal(t, []any{2, 128, 64, 1.5625e-07, 131072, true}, []any{glm.KVHeads, glm.HeadDim, glm.RotaryDim(), glm.NormEps, glm.MaxPos, glm.AttentionBias})
}

// TestPhi3GlmConfigErrors: what these families cannot mean is a one-line
// error naming the file and the key.
func TestPhi3GlmConfigErrors(t *testing.T) {
	const phi = `"architectures":["Phi3ForCausalLM"],"vocab_size":64,"hidden_size":32,"num_hidden_layers":1,"num_attention_heads":4,"intermediate_size":40,"max_position_embeddings":64,"original_max_position_embeddings":16`
	const llama = `"architectures":["LlamaForCausalLM"],"vocab_size":64,"hidden_size":32,"num_hidden_layers":1,"num_attention_heads":4,"intermediate_size":40`
	rope := func(extra string) string {
		return `,"rope_scaling":{"type":"longrope","short_factor":[1,1,1,1],"long_factor":[2,2,2,2]` + extra + `}`
	}
	tests := []struct{ name, json, err string }{
		{"factor count", `{` + phi + `,"rope_scaling":{"type":"longrope","short_factor":[1,1],"long_factor":[2,2,2,2]}}`,
			`short_factor has 2 values; the 8 rotated elements of a head need 4`},
		{"longrope on llama", `{` + llama + rope("") + `}`, `longrope is supported for Phi3ForCausalLM only`},
		{"factor disagrees", `{` + phi + rope(`,"factor":2.0`) + `}`, `field "factor": 2 differs from max_position_embeddings / original_max_position_embeddings = 4`},
		{"original disagrees", `{` + phi + rope(`,"original_max_position_embeddings":32`) + `}`, `32 differs from the top-level original_max_position_embeddings 16`},
		{"zero attention factor", `{` + phi + rope(`,"attention_factor":0`) + `}`, `field "attention_factor": must be positive`},
		{"negative factor", `{` + phi + `,"rope_scaling":{"type":"longrope","short_factor":[1,-1,1,1],"long_factor":[2,2,2,2]}}`, `short_factor[1] must be a positive finite number`},
		{"missing long factor", `{` + phi + `,"rope_scaling":{"type":"longrope","short_factor":[1,1,1,1]}}`, `field "long_factor": missing`},
		{"su", `{` + phi + `,"rope_scaling":{"type":"su","short_factor":[1,1,1,1],"long_factor":[2,2,2,2]}}`, `rope scaling type "su" is not supported (supported: linear, llama3, longrope)`},
		{"partial rotary range", `{` + phi + `,"partial_rotary_factor":1.5}`, `field "partial_rotary_factor": must be in (0, 1]`},
		{"odd rotary dim", `{` + phi + `,"partial_rotary_factor":0.375}`, `rotates 3 of head_dim 8 elements`},
		{"partial rotary not a number", `{"architectures":["Glm4ForCausalLM"],"vocab_size":64,"hidden_size":32,"num_hidden_layers":1,"num_attention_heads":4,"intermediate_size":40,"partial_rotary_factor":"half"}`,
			`field "partial_rotary_factor": must be a number`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.json), "m/config.json")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
			assert.Contains(t, err.Error(), "m/config.json")
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

// TestPhi3GlmSave: an unchanged config saves as it was read (in Python's
// layout), and changed fields are written under the family's keys.
func TestPhi3GlmSave(t *testing.T) {
	for _, js := range []string{phi4Mini, glm4_9b0414} {
		c, err := Parse([]byte(js), "m/config.json")
		require.NoError(t, err)
		out, err := c.Marshal()
		require.NoError(t, err)
		back, err := Parse(out, "saved")
		require.NoError(t, err)
		c.orig, back.orig, c.raw, back.raw, c.warnings, back.warnings = nil, nil, nil, nil, nil, nil
		assert.Equal(t, c, back)
	}
	c, err := Parse([]byte(phi4Mini), "m/config.json")
	require.NoError(t, err)
	rs := *c.RopeScaling
	rs.OriginalMaxPos, rs.Factor, rs.AttentionFactor = 8192, 16, 1.25
	rs.LongFactor = append([]float64(nil), rs.LongFactor...)
	rs.LongFactor[0] = 3.5
	c.RopeScaling, c.PartialRotaryFactor = &rs, 0.5
	c.RopeScaling.ShortFactor = c.RopeScaling.ShortFactor[:32]
	c.RopeScaling.LongFactor = c.RopeScaling.LongFactor[:32]
	c.SlidingWindow = nil
	out, err := c.Marshal()
	require.NoError(t, err)
	back, err := Parse(out, "saved")
	require.NoError(t, err)
	assert.Equal(t, 8192, back.RopeScaling.OriginalMaxPos)
	assert.Equal(t, 1.25, back.RopeScaling.AttentionFactor)
	assert.Equal(t, 3.5, back.RopeScaling.LongFactor[0])
	assert.Equal(t, 64, back.RotaryDim())
	assert.Nil(t, back.SlidingWindow)
}
