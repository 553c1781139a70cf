package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/quant"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/engine/strictjson"
)

// A checkpoint transformers saved with bitsandbytes 4-bit weights stores
// each quantized Linear weight as bitsandbytes' Params4bit state dict
// (bitsandbytes functional.py QuantState.as_dict(packed=True)):
//
//	W                 uint8 [ceil(n/2), 1]: the codes, two per byte, the
//	                  first of the row-major [out, in] values high
//	W.absmax          float32 [blocks], or uint8 codes when nested
//	W.quant_map       float32 [16]: the code book
//	W.nested_absmax   float32 [ceil(blocks/256)] (nested only)
//	W.nested_quant_map float32 [256] (nested only)
//	W.quant_state.bitsandbytes__<nf4|fp4>  uint8: UTF-8 JSON of the rest
//	                  (quant_type, blocksize, dtype, shape, and when nested
//	                  nested_blocksize, nested_dtype, nested_offset)
//
// where W is the module's "….weight" name.
const bnbStateInfix = ".quant_state.bitsandbytes__"

// bnbTensors are the suffixes of a quantized weight's tensors besides
// the codes and the state blob.
var bnbTensors = []string{".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map"}

// bnbState is the JSON of a quant_state tensor.
type bnbState struct {
	QuantType    string   `json:"quant_type"`
	BlockSize    int      `json:"blocksize"`
	Dtype        string   `json:"dtype"`
	Shape        []int    `json:"shape"`
	NestedBlock  int      `json:"nested_blocksize"`
	NestedDtype  string   `json:"nested_dtype"`
	NestedOffset *float64 `json:"nested_offset"`
}

// bnbWeights is a bitsandbytes 4-bit checkpoint seen as weights: a
// quantized weight shows its unquantized shape (so the model validates
// as usual) and its companion tensors are hidden.
type bnbWeights struct {
	setWeights
	states map[string]bnbState // quantized weight name -> its state
}

// newBnbWeights reads every quant_state tensor of set, checking it
// against the config's quantization.
func newBnbWeights(set *safetensors.Set, q *hfconfig.Quantization) (*bnbWeights, error) {
	w := &bnbWeights{setWeights: setWeights{set}, states: map[string]bnbState{}}
	for _, n := range set.Names() {
		i := strings.Index(n, bnbStateInfix)
		if i < 0 {
			continue
		}
		st, err := readBnbState(set, n)
		if err != nil {
			return nil, fmt.Errorf("model: tensor %q: %w", n, err)
		}
		if typ := n[i+len(bnbStateInfix):]; st.QuantType != typ || typ != q.QuantType {
			return nil, fmt.Errorf("model: tensor %q: quant_type %q, but config.json's bnb_4bit_quant_type is %q", n, st.QuantType, q.QuantType)
		}
		w.states[n[:i]] = st
	}
	if len(w.states) == 0 {
		return nil, fmt.Errorf("model: %s says bitsandbytes %s, but no tensor has a %s%s state", hfconfig.QuantKey, q.QuantType, bnbStateInfix, q.QuantType)
	}
	return w, nil
}

// readBnbState decodes and checks one quant_state tensor.
func readBnbState(set *safetensors.Set, name string) (bnbState, error) {
	var st bnbState
	info, _ := set.Info(name)
	if info.DType != safetensors.U8 {
		return st, fmt.Errorf("dtype %s, want U8 (a JSON blob)", info.DType)
	}
	blob, err := set.Raw(name)
	if err != nil {
		return st, err
	}
	if err := strictjson.CheckKeys(blob); err != nil {
		return st, err
	}
	dec := json.NewDecoder(bytes.NewReader(blob))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("quant state JSON: %w", err)
	}
	switch {
	case len(st.Shape) != 2 || st.Shape[0] <= 0 || st.Shape[1] <= 0:
		return st, fmt.Errorf("shape %v, want a 2-D Linear weight", st.Shape)
	case st.BlockSize != quant.BlockSize4Bit:
		return st, fmt.Errorf("blocksize %d is not supported (only %d)", st.BlockSize, quant.BlockSize4Bit)
	case st.NestedOffset != nil && st.NestedBlock != quant.NestedBlockSize:
		return st, fmt.Errorf("nested_blocksize %d is not supported (only %d)", st.NestedBlock, quant.NestedBlockSize)
	case st.NestedOffset != nil && st.NestedDtype != "float32":
		return st, fmt.Errorf("nested_dtype %q is not supported (only float32)", st.NestedDtype)
	}
	return st, nil
}

// names hides the companion tensors of quantized weights.
func (w *bnbWeights) names() []string {
	var out []string
	for _, n := range w.setWeights.names() {
		if w.companion(n) == "" {
			out = append(out, n)
		}
	}
	return out
}

// companion returns the quantized weight n belongs to ("" for none).
func (w *bnbWeights) companion(n string) string {
	if i := strings.Index(n, bnbStateInfix); i >= 0 {
		return n[:i]
	}
	for _, suf := range bnbTensors {
		if base, ok := strings.CutSuffix(n, suf); ok {
			if _, q := w.states[base]; q {
				return base
			}
		}
	}
	return ""
}

// shape returns a quantized weight's unquantized shape.
func (w *bnbWeights) shape(name string) []int {
	if st, ok := w.states[name]; ok {
		return st.Shape
	}
	return w.setWeights.shape(name)
}

// float32s refuses a quantized weight: loadQuantized takes those.
func (w *bnbWeights) float32s(name string) ([]float32, error) {
	if _, ok := w.states[name]; ok {
		return nil, fmt.Errorf("tensor %q: bitsandbytes-quantized weight where gotune needs a float one", name)
	}
	return w.setWeights.float32s(name)
}

// quantized reads a quantized weight as quant.Quantized.
func (w *bnbWeights) quantized(name string) (*quant.Quantized, error) {
	st := w.states[name]
	f := quant.NF4
	if st.QuantType == "fp4" {
		f = quant.FP4
	}
	rows, cols := st.Shape[0], st.Shape[1]
	q := &quant.Quantized{Format: f, Rows: rows, Cols: cols, BlockSize: st.BlockSize}
	blocks := q.Blocks()
	var err error
	if q.Codes, err = w.bytes(name, (rows*cols+1)/2); err != nil {
		return nil, err
	}
	if q.Code, err = w.floats(name+".quant_map", 16); err != nil {
		return nil, err
	}
	if st.NestedOffset == nil {
		q.Absmax, err = w.floats(name+".absmax", blocks)
		return q, err
	}
	q.NestedBlock, q.Offset = st.NestedBlock, float32(*st.NestedOffset)
	if q.QAbsmax, err = w.bytes(name+".absmax", blocks); err != nil {
		return nil, err
	}
	if q.NestedAbsmax, err = w.floats(name+".nested_absmax", (blocks+st.NestedBlock-1)/st.NestedBlock); err != nil {
		return nil, err
	}
	if q.NestedCode, err = w.floats(name+".nested_quant_map", 256); err != nil {
		return nil, err
	}
	return q, nil
}

// bytes reads a U8 tensor of n elements.
func (w *bnbWeights) bytes(name string, n int) ([]byte, error) {
	info, ok := w.s.Info(name)
	switch {
	case !ok:
		return nil, fmt.Errorf("missing tensor %q", name)
	case info.DType != safetensors.U8 || engine.Numel(info.Shape) != n:
		return nil, fmt.Errorf("tensor %q: %s %v, want U8 with %d elements", name, info.DType, info.Shape, n)
	}
	return w.s.Raw(name)
}

// floats reads a float tensor of n finite elements.
func (w *bnbWeights) floats(name string, n int) ([]float32, error) {
	if _, ok := w.s.Info(name); !ok {
		return nil, fmt.Errorf("missing tensor %q", name)
	}
	v, shape, err := w.s.Float32(name)
	if err != nil {
		return nil, err
	}
	if len(v) != n {
		return nil, fmt.Errorf("tensor %q: shape %v, want %d elements", name, shape, n)
	}
	if i, ok := engine.FirstNonFinite(v); !ok {
		return nil, fmt.Errorf("tensor %q: element %d is %v", name, i, v[i])
	}
	return v, nil
}
