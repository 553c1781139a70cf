package hfconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Config honesty: every top-level key of config.json is one of
//
//   - read: a Config field (or a check) of the architecture's parser;
//   - irrelevant to training: bookkeeping, generation defaults, heads
//     gotune does not build (ignoredKeys): silently kept for Save;
//   - a dropout key this family's modules do not read (dropoutKeys; the
//     ones they read are Config fields, dropout.go): transformers ignores
//     it too, so a non-zero value is reported in Warnings;
//   - a key that changes the model's math and that this architecture's
//     parser does not implement (mathKeys): an error naming the key,
//     unless its value is the one that changes nothing;
//   - anything else: listed in one warning line (Warnings).

// ignoredKeys are keys known not to change what a model computes in
// training or generation with gotune.
var ignoredKeys = setOf(
	"transformers_version", "use_cache", "_name_or_path", "initializer_range",
	"output_attentions", "output_hidden_states", "return_dict", "torchscript",
	"use_return_dict", "tokenizer_class", "auto_map", "task_specific_params",
	"id2label", "label2id", "num_labels", "problem_type", "finetuning_task",
	"is_decoder", "is_encoder_decoder", "add_cross_attention", "tie_encoder_decoder",
	"chunk_size_feed_forward", "prefix", "decoder_start_token_id", "sep_token_id",
	"cross_attention_hidden_size", "use_bfloat16", "pruned_heads", "tf_legacy_loss",
	// generation defaults (generation_config.json's business)
	"max_length", "min_length", "do_sample", "early_stopping", "num_beams",
	"num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p",
	"typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
	"encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
	"output_scores", "return_dict_in_generate", "forced_bos_token_id",
	"forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
	"suppress_tokens", "begin_suppress_tokens",
	// the same function, computed differently
	"pretraining_tp", "reorder_and_upcast_attn", "attn_implementation", "_attn_implementation",
	// GPT-2: the legacy context size, and the sequence-summary head of
	// GPT2DoubleHeadsModel (not part of a causal LM)
	"n_ctx", "summary_type", "summary_use_proj", "summary_activation",
	"summary_proj_to_labels", "summary_first_dropout",
	// sliding-window settings of families whose parser does not read them
	// (transformers ignores them there too)
	"use_sliding_window", "sliding_window", "max_window_layers",
	// the KV cache class generate() builds (Gemma's "hybrid")
	"cache_implementation",
)

// dropoutKeys are dropout probabilities of some transformers families.
var dropoutKeys = setOf("attention_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop",
	"hidden_dropout", "mlp_dropout", "embedding_dropout", "hidden_dropout_prob",
	"attention_probs_dropout_prob")

// mathKeys are keys that change the model's math, with the test for the
// value that changes nothing (absent, null or that value is accepted).
var mathKeys = map[string]func(json.RawMessage) bool{
	"embedding_multiplier":            isNumber(1),
	"residual_multiplier":             isNumber(1),
	"attention_multiplier":            isNullOnly,
	"logits_scaling":                  isNumber(1),
	"attn_logit_softcapping":          isNullOnly,
	"final_logit_softcapping":         isNullOnly,
	"query_pre_attn_scalar":           isNullOnly,
	"partial_rotary_factor":           isNumber(1),
	"rotary_pct":                      isNumber(1),
	"qk_layernorm":                    isFalse,
	"use_qk_norm":                     isFalse,
	"clip_qkv":                        isNullOnly,
	"scale_attn_by_inverse_layer_idx": isFalse,
	"alibi":                           isFalse,
	"parallel_attn":                   isFalse,
	"use_parallel_residual":           isFalse,
	"layer_types":                     allFullAttention,
	"num_experts":                     isNumber(0),
	"num_local_experts":               isNumber(0),
	"num_experts_per_tok":             isNumber(0),
	"moe_intermediate_size":           isNumber(0),
	"rope_interleaved":                isFalse,
	"embedding_scale":                 isNumber(1),
	"use_bidirectional_attention":     isFalse,
}

func setOf(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

func isNullOnly(v json.RawMessage) bool { return isNull(v) }

func isFalse(v json.RawMessage) bool {
	return isNull(v) || string(bytes.TrimSpace(v)) == "false"
}

func isNumber(want float64) func(json.RawMessage) bool {
	return func(v json.RawMessage) bool {
		var f float64
		return isNull(v) || json.Unmarshal(v, &f) == nil && f == want
	}
}

func allFullAttention(v json.RawMessage) bool {
	var list []string
	if isNull(v) {
		return true
	}
	if json.Unmarshal(v, &list) != nil {
		return false
	}
	for _, t := range list {
		if t != "full_attention" {
			return false
		}
	}
	return true
}

// checkKeys sorts the keys the parser did not read into ignored,
// warned about and refused (see above), recording the warnings in c.
func (p *parser) checkKeys(c *Config) error {
	keys := make([]string, 0, len(p.raw))
	for k := range p.raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var unknown, dropout []string
	for _, k := range keys {
		v := p.raw[k]
		switch {
		case p.used[k] || ignoredKeys[k]:
		case dropoutKeys[k]:
			if !isNumber(0)(v) {
				dropout = append(dropout, fmt.Sprintf("%s %s", k, bytes.TrimSpace(v)))
			}
		case mathKeys[k] != nil:
			if !mathKeys[k](v) {
				return p.errf(k, "%s changes the model's math and is not implemented for %s (gotune would train a different model)", bytes.TrimSpace(v), c.Arch)
			}
		default:
			unknown = append(unknown, k)
		}
	}
	if len(dropout) > 0 {
		c.warnings = append(c.warnings, fmt.Sprintf("%s: %s does not use dropout key(s) %s (nor does transformers): not applied", p.src, c.Arch, strings.Join(dropout, ", ")))
	}
	if len(unknown) > 0 {
		c.unknown = unknown
		c.warnings = append(c.warnings, fmt.Sprintf("%s: ignoring unknown key(s) %s", p.src, strings.Join(unknown, ", ")))
	}
	return nil
}

// UnknownKeys returns the top-level keys of the parsed file that gotune
// neither reads nor knows to be irrelevant, sorted.
func (c *Config) UnknownKeys() []string { return append([]string(nil), c.unknown...) }

// Warnings returns the lines a tool should show about the parsed file:
// unknown keys (one line listing them) and dropout keys the family does
// not use. Empty for a config gotune reads completely.
func (c *Config) Warnings() []string { return append([]string(nil), c.warnings...) }
