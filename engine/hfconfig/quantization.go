package hfconfig

import (
	"encoding/json"
	"fmt"
	"strings"
)

// QuantKey is the config.json key of a pre-quantized checkpoint's
// settings (transformers' quantization_config).
const QuantKey = "quantization_config"

// Quantization is the quantization_config of a checkpoint transformers
// saved with bitsandbytes 4-bit weights (BitsAndBytesConfig.to_dict):
// the only pre-quantized format gotune reads.
type Quantization struct {
	// QuantType is bnb_4bit_quant_type: "nf4" or "fp4".
	QuantType string
	// DoubleQuant is bnb_4bit_use_double_quant (the absmax quantized to
	// 8 bits in blocks of 256).
	DoubleQuant bool
	// ComputeDtype is bnb_4bit_compute_dtype as written (gotune's
	// quantized products always round their operands to bfloat16).
	ComputeDtype string
}

// bnbConfig is the part of BitsAndBytesConfig.to_dict that decides the
// stored format.
type bnbConfig struct {
	QuantMethod  string `json:"quant_method"`
	LoadIn4bit   bool   `json:"load_in_4bit"`
	LoadIn8bit   bool   `json:"load_in_8bit"`
	QuantType    string `json:"bnb_4bit_quant_type"`
	DoubleQuant  bool   `json:"bnb_4bit_use_double_quant"`
	ComputeDtype string `json:"bnb_4bit_compute_dtype"`
	QuantStorage string `json:"bnb_4bit_quant_storage"`
}

// quantization reads quantization_config, refusing every format but
// bitsandbytes 4-bit with uint8 storage with a one-line error naming
// the key.
func (p *parser) quantization() (*Quantization, error) {
	raw := p.get(QuantKey)
	if raw == nil {
		return nil, nil
	}
	var b bnbConfig
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, p.errf(QuantKey, "%v", err)
	}
	key := func(k string) string { return QuantKey + "." + k }
	switch {
	case b.QuantMethod != "bitsandbytes":
		return nil, p.errf(key("quant_method"), "%q checkpoints are not supported (gotune reads bitsandbytes 4-bit checkpoints, or quantizes an unquantized one as it loads)", b.QuantMethod)
	case b.LoadIn8bit:
		return nil, p.errf(key("load_in_8bit"), "bitsandbytes LLM.int8 checkpoints are not supported (only load_in_4bit; an unquantized checkpoint can be quantized to int8 as it loads)")
	case !b.LoadIn4bit:
		return nil, p.errf(key("load_in_4bit"), "a bitsandbytes config with neither load_in_4bit nor load_in_8bit describes no quantized weights")
	case b.QuantType != "nf4" && b.QuantType != "fp4":
		return nil, p.errf(key("bnb_4bit_quant_type"), "%q is not a bitsandbytes 4-bit type (want nf4 or fp4)", b.QuantType)
	case b.QuantStorage != "" && b.QuantStorage != "uint8":
		return nil, p.errf(key("bnb_4bit_quant_storage"), "%q is not supported (only uint8)", b.QuantStorage)
	}
	return &Quantization{QuantType: b.QuantType, DoubleQuant: b.DoubleQuant, ComputeDtype: strings.TrimPrefix(b.ComputeDtype, "torch.")}, nil
}

// String describes q as a log line does.
func (q *Quantization) String() string {
	return fmt.Sprintf("bitsandbytes %s (double quant %v, compute dtype %s)", q.QuantType, q.DoubleQuant, q.ComputeDtype)
}
