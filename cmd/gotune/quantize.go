package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/quant"
	"github.com/gotune/gotune/finetune"
)

// quantizeFlags are --quantize and --double-quant: the frozen base
// quantized at load (QLoRA), for the methods that keep the base frozen.
type quantizeFlags struct {
	format      string
	doubleQuant bool
}

func (q *quantizeFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&q.format, "quantize", "none", "quantize the frozen base weights at load, as bitsandbytes does (QLoRA): "+
		"nf4 or fp4 (4 bits, blocks of 64 with a float32 absmax each), int8 (row-wise absmax; LLM.int8's weight format "+
		"without its int8 activations and outlier columns); every projection but lm_head; matrix products dequantize "+
		"to bfloat16 as they load the weight. Needs a method that keeps the base frozen (not full or freeze)")
	fs.BoolVar(&q.doubleQuant, "double-quant", true, "with --quantize nf4|fp4, also quantize the absmax to 8 bits in blocks of 256 "+
		"(bnb_4bit_use_double_quant, QLoRA's recipe): about 0.52 instead of 0.56 bytes per parameter")
}

// options returns the parsed quantization (Format None when off).
func (q *quantizeFlags) options() (quant.Options, error) {
	f, err := quant.ParseFormat(q.format)
	if err != nil {
		return quant.Options{}, fmt.Errorf("--quantize: %w", err)
	}
	return quant.Options{Format: f, DoubleQuant: q.doubleQuant && f != quant.Int8}, nil
}

// apply quantizes m's base when asked, refusing methods that train the
// base weights, and reports the bytes per parameter achieved.
func (q *quantizeFlags) apply(m model.Model, method string, out io.Writer) error {
	o, err := q.options()
	if err != nil || o.Format == quant.None {
		return err
	}
	if method == "full" || method == "freeze" {
		return fmt.Errorf("--quantize %s: --method %s trains the base weights; quantized bases are frozen (use lora or another adapter method)", o.Format, method)
	}
	return finetune.QuantizeBase(m, o, out)
}

// forMerge quantizes m's base when --quantize is set; finetune.LoadMerged
// then dequantizes it: the base a QLoRA adapter trained on, which merge
// folds the adapter into.
func (q *quantizeFlags) forMerge(m model.Model, out io.Writer) error {
	return q.apply(m, "merge", out)
}
