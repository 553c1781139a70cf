package hfconfig

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConfigHonesty checks how Parse treats keys it does not read: known
// irrelevant ones silently, unknown ones in one warning line, base-model
// dropout in a warning, and keys that change the math as errors naming
// the file and the key.
func TestConfigHonesty(t *testing.T) {
	const llama = `"architectures":["LlamaForCausalLM"],"vocab_size":10,"num_hidden_layers":1,"intermediate_size":12,"hidden_size":8,"num_attention_heads":2`
	const gpt2 = `"architectures":["GPT2LMHeadModel"],"vocab_size":10,"n_embd":8,"n_layer":1,"n_head":2`
	tests := []struct {
		name     string
		json     string
		err      string   // "" = parses
		warnings []string // expected warning lines
		unknown  []string
	}{
		{name: "irrelevant keys", json: `{` + llama + `,"transformers_version":"4.46.0","use_cache":true,"initializer_range":0.02,"pretraining_tp":1,"attention_dropout":0.0}`},
		{name: "neutral math keys", json: `{` + llama + `,"embedding_multiplier":1.0,"logits_scaling":1,"attn_logit_softcapping":null,"partial_rotary_factor":1.0,"layer_types":["full_attention"]}`},
		{name: "unknown keys", json: `{` + llama + `,"zeta":1,"alpha":true}`,
			warnings: []string{`m/config.json: ignoring unknown key(s) alpha, zeta`}, unknown: []string{"alpha", "zeta"}},
		{name: "dropout the family uses", json: `{` + gpt2 + `,"resid_pdrop":0.1,"attn_pdrop":0.0,"embd_pdrop":0.1}`},
		{name: "dropout the family does not use", json: `{` + llama + `,"attention_dropout":0.1,"hidden_dropout":0.2,"embd_pdrop":0.0}`,
			warnings: []string{`m/config.json: LlamaForCausalLM does not use dropout key(s) hidden_dropout 0.2 (nor does transformers): not applied`}},
		{name: "dropout of 1", json: `{` + llama + `,"attention_dropout":1.0}`, err: `field "attention_dropout" must be a probability in [0, 1), got 1`},
		{name: "dropout not a number", json: `{` + gpt2 + `,"resid_pdrop":"0.1"}`, err: `field "resid_pdrop": must be a number`},
		{name: "granite multiplier on llama", json: `{` + llama + `,"embedding_multiplier":12.0}`,
			err: `m/config.json: field "embedding_multiplier": 12.0 changes the model's math and is not implemented for LlamaForCausalLM`},
		{name: "soft-capping", json: `{` + llama + `,"final_logit_softcapping":30.0}`, err: `field "final_logit_softcapping": 30.0 changes the model's math`},
		{name: "partial rotary", json: `{` + llama + `,"partial_rotary_factor":0.5}`, err: `field "partial_rotary_factor"`},
		{name: "sliding layer types", json: `{` + llama + `,"layer_types":["sliding_attention"]}`, err: `field "layer_types"`},
		{name: "qk norm flag", json: `{` + llama + `,"qk_layernorm":true}`, err: `field "qk_layernorm"`},
		{name: "mixture of experts", json: `{` + llama + `,"num_local_experts":8}`, err: `field "num_local_experts"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.json), "m/config.json")
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				assert.Contains(t, err.Error(), "m/config.json")
				assert.NotContains(t, err.Error(), "\n")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.warnings, c.Warnings())
			assert.Equal(t, tc.unknown, c.UnknownKeys())
		})
	}
}

// TestConstructorsAreHonest checks that the configs gotune writes itself
// parse without warnings.
func TestConstructorsAreHonest(t *testing.T) {
	s := Sizes{VocabSize: 16, Hidden: 8, Layers: 1, Heads: 2, Intermediate: 12}
	for name, mk := range map[string]func(Sizes) (*Config, error){
		"llama": NewLlama, "mistral": NewMistral, "qwen2": NewQwen2, "gpt2": NewGPT2,
	} {
		c, err := mk(s)
		require.NoError(t, err, name)
		data, err := c.Marshal()
		require.NoError(t, err, name)
		p, err := Parse(data, name)
		require.NoError(t, err, name)
		assert.Empty(t, p.Warnings(), name)
	}
}

// TestGraniteScalars checks that Granite reads its four multipliers (the
// keys other families refuse), refuses non-positive ones, and that Save
// writes a changed one back.
func TestGraniteScalars(t *testing.T) {
	const granite = `"architectures":["GraniteForCausalLM"],"vocab_size":10,"num_hidden_layers":1,"intermediate_size":12,"hidden_size":8,"num_attention_heads":2`
	c, err := Parse([]byte(`{`+granite+`,"embedding_multiplier":12.0,"residual_multiplier":0.22,"attention_multiplier":0.0078125,"logits_scaling":8.0}`), "m/config.json")
	require.NoError(t, err)
	assert.Empty(t, c.Warnings())
	assert.Equal(t, []float64{12, 0.22, 0.0078125, 8}, []float64{c.EmbeddingMultiplier, c.ResidualMultiplier, c.AttentionMultiplier, c.LogitsScaling})

	d, err := Parse([]byte(`{`+granite+`}`), "m/config.json")
	require.NoError(t, err)
	assert.Equal(t, []float64{1, 1, 1, 1}, []float64{d.EmbeddingMultiplier, d.ResidualMultiplier, d.AttentionMultiplier, d.LogitsScaling}, "GraniteConfig's defaults")

	_, err = Parse([]byte(`{`+granite+`,"logits_scaling":0}`), "m/config.json")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `m/config.json: field "logits_scaling"`)

	c.ResidualMultiplier = 0.5
	data, err := c.Marshal()
	require.NoError(t, err)
	r, err := Parse(data, "saved")
	require.NoError(t, err)
	assert.Equal(t, 0.5, r.ResidualMultiplier)
	assert.Equal(t, 12.0, r.EmbeddingMultiplier)
}

// TestGemmaConfig checks Gemma's keys: defaults when absent, null soft
// caps as none, explicit layer_types over sliding_window_pattern,
// validation errors naming the key, the keys other families refuse, and
// that Save writes a changed field back.
func TestGemmaConfig(t *testing.T) {
	const g2 = `"architectures":["Gemma2ForCausalLM"],"vocab_size":10,"num_hidden_layers":3,"intermediate_size":12,"hidden_size":8,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":4`
	const g3 = `"architectures":["Gemma3ForCausalLM"],"vocab_size":10,"num_hidden_layers":3,"intermediate_size":12,"hidden_size":8,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":4`
	parse := func(t *testing.T, body string) *Config {
		c, err := Parse([]byte(`{`+body+`}`), "m/config.json")
		require.NoError(t, err)
		return c
	}
	kinds := func(c *Config) []string {
		var out []string
		for i := 0; i < c.Layers; i++ {
			out = append(out, c.LayerType(i))
		}
		return out
	}
	c := parse(t, g2)
	assert.Equal(t, []float64{256, 50, 30}, []float64{c.QueryPreAttnScalar, c.AttnSoftCap, c.FinalSoftCap}, "Gemma2Config's defaults")
	assert.Equal(t, []string{SlidingAttention, FullAttention, SlidingAttention}, kinds(c))
	assert.Nil(t, c.LayerTypes, "the default pattern is not materialised")
	assert.Equal(t, 4096, *c.SlidingWindow)
	assert.Equal(t, "gelu_pytorch_tanh", c.HiddenAct)
	assert.True(t, c.TieEmbeddings)
	assert.Empty(t, c.Warnings())

	c = parse(t, g2+`,"final_logit_softcapping":null,"attn_logit_softcapping":null,"hidden_act":"silu"`)
	assert.Equal(t, []float64{0, 0}, []float64{c.AttnSoftCap, c.FinalSoftCap}, "null is no cap")
	assert.Equal(t, "gelu_pytorch_tanh", c.HiddenAct, "hidden_act is not Gemma's key")

	c = parse(t, g3+`,"sliding_window_pattern":2,"sliding_window":3,"rope_local_base_freq":500.0`)
	assert.Equal(t, []string{SlidingAttention, FullAttention, SlidingAttention}, kinds(c))
	assert.Equal(t, []float64{0, 0, 500, 1e6}, []float64{c.AttnSoftCap, c.FinalSoftCap, c.RopeLocalTheta, c.RopeTheta})
	c = parse(t, g3+`,"sliding_window_pattern":2,"layer_types":["full_attention","full_attention","sliding_attention"]`)
	assert.Equal(t, []string{FullAttention, FullAttention, SlidingAttention}, kinds(c), "layer_types wins")
	assert.Equal(t, []string{SlidingAttention, SlidingAttention, SlidingAttention}, kinds(parse(t, g3)), "pattern 6")
	c = parse(t, g3+`,"attn_logit_softcapping":20.0`)
	assert.Zero(t, c.AttnSoftCap)
	assert.Equal(t, []string{"m/config.json: attn_logit_softcapping 20 is ignored: Gemma 3's attention does not apply it (as in transformers)"}, c.Warnings())

	for _, bad := range []struct{ body, err string }{
		{g2 + `,"layer_types":["full_attention"]`, `"layer_types" lists 1 layers, the model has 3`},
		{g2 + `,"layer_types":["full_attention","chunked_attention","full_attention"]`, `layer 1 is "chunked_attention"`},
		{g2 + `,"sliding_window":null`, `"sliding_window" is not a positive integer`},
		{g3 + `,"sliding_window_pattern":0`, `"sliding_window_pattern" must be positive`},
		{g2 + `,"query_pre_attn_scalar":0`, `"query_pre_attn_scalar" must be positive`},
		{g2 + `,"final_logit_softcapping":-1.0`, `soft caps must be positive`},
		{g3 + `,"use_bidirectional_attention":true`, `field "use_bidirectional_attention"`},
	} {
		_, err := Parse([]byte(`{`+bad.body+`}`), "m/config.json")
		require.Error(t, err, bad.body)
		assert.Contains(t, err.Error(), bad.err)
		assert.Contains(t, err.Error(), "m/config.json")
	}
	// A hostile layer count costs nothing to parse: the pattern is a number.
	huge := parse(t, strings.Replace(g2, `"num_hidden_layers":3`, `"num_hidden_layers":1000000000`, 1))
	assert.Equal(t, SlidingAttention, huge.LayerType(999999998))
	// Only Gemma reads Gemma's keys.
	_, err := Parse([]byte(`{"architectures":["LlamaForCausalLM"],"vocab_size":10,"num_hidden_layers":1,"intermediate_size":12,"hidden_size":8,"num_attention_heads":2,"query_pre_attn_scalar":256}`), "m/config.json")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `field "query_pre_attn_scalar"`)

	c = parse(t, g2)
	c.FinalSoftCap, c.QueryPreAttnScalar = 0, 16
	c.LayerTypes = []string{FullAttention, FullAttention, SlidingAttention}
	data, err := c.Marshal()
	require.NoError(t, err)
	r, err := Parse(data, "saved")
	require.NoError(t, err)
	assert.Equal(t, []float64{0, 16, 50}, []float64{r.FinalSoftCap, r.QueryPreAttnScalar, r.AttnSoftCap})
	assert.Equal(t, []string{FullAttention, FullAttention, SlidingAttention}, kinds(r))
	assert.Contains(t, string(data), `"final_logit_softcapping": null`)
	c = parse(t, g3)
	c.SlidingPattern = 3
	data, err = c.Marshal()
	require.NoError(t, err)
	r, err = Parse(data, "saved")
	require.NoError(t, err)
	assert.Equal(t, []string{SlidingAttention, SlidingAttention, FullAttention}, kinds(r))
}

// TestDropoutFields checks the dropout probabilities each family reads,
// with transformers' defaults, and that Save writes a changed one under
// the family's key.
func TestDropoutFields(t *testing.T) {
	c, err := Parse([]byte(`{"architectures":["GPT2LMHeadModel"],"vocab_size":10,"n_embd":8,"n_layer":1,"n_head":2,"attn_pdrop":0.25}`), "m/config.json")
	require.NoError(t, err)
	assert.Equal(t, []float64{0.25, 0.1, 0.1}, []float64{c.AttentionDropout, c.ResidDropout, c.EmbdDropout})
	assert.True(t, c.HasDropout())

	l, err := NewLlama(Sizes{VocabSize: 16, Hidden: 8, Layers: 1, Heads: 2, Intermediate: 12})
	require.NoError(t, err)
	assert.False(t, l.HasDropout())
	l.AttentionDropout = 0.3
	dir := t.TempDir()
	require.NoError(t, l.Save(dir))
	back, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, 0.3, back.AttentionDropout)
	v, _ := back.RawValue("attention_dropout")
	assert.JSONEq(t, "0.3", string(v))
}
