package peft

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/safetensors"
)

func TestKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct{ path, leaf string }{
		{"model.layers.0.self_attn.q_proj", "lora_A.weight"},
		{"transformer.h.1.attn.c_attn", "lora_magnitude_vector"},
		{"lm_head", "lora_B.weight"},
	} {
		key := Key(tc.path, tc.leaf)
		if !strings.HasPrefix(key, "base_model.model.") {
			t.Errorf("Key(%q, %q) = %q lacks PEFT's prefix", tc.path, tc.leaf, key)
		}
		got, ok := ModulePath(key, tc.leaf)
		if !ok || got != tc.path {
			t.Errorf("ModulePath(%q, %q) = %q, %v; want %q", key, tc.leaf, got, ok, tc.path)
		}
	}
	for _, bad := range []struct{ key, leaf string }{
		{"model.layers.0.q_proj.lora_A.weight", "lora_A.weight"},                  // no prefix
		{"base_model.model.model.layers.0.q_proj.lora_B.weight", "lora_A.weight"}, // other leaf
		{"base_model.model..lora_A.weight", "lora_A.weight"},                      // empty path
	} {
		if p, ok := ModulePath(bad.key, bad.leaf); ok {
			t.Errorf("ModulePath(%q, %q) = %q, want no match", bad.key, bad.leaf, p)
		}
	}
}

// The expected strings are what /usr/bin/python3's json.dumps printed for
// the same values.
func TestFloatLikePython(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0.0"}, {0.05, "0.05"}, {0.1, "0.1"}, {1e-5, "1e-05"}, {1e-4, "0.0001"},
		{1, "1.0"}, {16, "16.0"}, {123456789, "123456789.0"}, {1e16, "1e+16"},
		{1.5e16, "1.5e+16"}, {-0.25, "-0.25"}, {1.0 / 3, "0.3333333333333333"},
	} {
		b, err := json.Marshal(Float(tc.v))
		if err != nil || string(b) != tc.want {
			t.Errorf("Float(%v) encodes as %s (%v), Python writes %s", tc.v, b, err, tc.want)
		}
	}
}

// The expected text is json.dumps(..., indent=2, sort_keys=True) of the
// same object, printed by Python.
func TestMarshalConfigLikePEFT(t *testing.T) {
	v := struct {
		E map[string]int `json:"e"`
		B []int          `json:"b"`
		D *string        `json:"d"`
		A map[string]int `json:"a"`
		C []int          `json:"c"`
	}{E: map[string]int{"x": 1}, B: []int{}, A: map[string]int{}, C: []int{1, 2}}
	got, err := MarshalConfig(v)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"a\": {},\n  \"b\": [],\n  \"c\": [\n    1,\n    2\n  ],\n  \"d\": null,\n  \"e\": {\n    \"x\": 1\n  }\n}"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestReadConfigErrors(t *testing.T) {
	type cfg struct {
		R int `json:"r"`
	}
	for _, tc := range []struct {
		name, content, want string // content "" means no file
		wantType            string
	}{
		{name: "missing", want: "adapter_config.json is missing"},
		{name: "syntax", content: "{\n\"peft_type\": \"LORA\",\n\"r\": 4,,\n}", want: "line 3"},
		{name: "no type", content: `{"r": 4}`, want: `no "peft_type"`},
		{name: "other type", content: `{"peft_type": "PREFIX_TUNING"}`, wantType: "LORA", want: `peft_type is "PREFIX_TUNING", expected "LORA"`},
		{name: "bad value", content: `{"peft_type": "LORA", "r": "four"}`, wantType: "LORA", want: `key "r"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.content != "" {
				if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var c cfg
			err := ReadConfig(dir, tc.wantType, &c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSaveAndLoad(t *testing.T) {
	be := cpu.New()
	defer be.Close()
	mk := func(name string, vals []float32, shape ...int) *engine.Param {
		p := &engine.Param{Name: name, W: be.Alloc(engine.Float32, shape...)}
		be.Upload(p.W, vals)
		return p
	}
	a := mk(Key("model.layers.0.self_attn.q_proj", "lora_A.weight"), []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	b := mk(Key("model.layers.0.self_attn.q_proj", "lora_B.weight"), []float32{-1, 0.5}, 1, 2)
	dir := filepath.Join(t.TempDir(), "adapter")
	type cfg struct {
		PeftType string `json:"peft_type"`
		R        int    `json:"r"`
		Dropout  Float  `json:"lora_dropout"`
	}
	if err := Save(dir, cfg{"LORA", 2, 0}, []*engine.Param{a, b}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"lora_dropout\": 0.0,\n  \"peft_type\": \"LORA\",\n  \"r\": 2\n}"; string(raw) != want {
		t.Errorf("config:\n%s\nwant\n%s", raw, want)
	}
	h, err := ReadHeader(dir)
	if err != nil || h.PeftType != "LORA" {
		t.Fatalf("ReadHeader: %+v, %v", h, err)
	}
	w, err := ReadWeights(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Names(); len(got) != 2 || got[0] != a.Name || got[1] != b.Name {
		t.Errorf("names %v", got)
	}
	a2 := mk(a.Name, make([]float32, 6), 2, 3)
	if err := w.Load(a2); err != nil {
		t.Fatal(err)
	}
	if got := be.Download(a2.W); got[5] != 6 || got[0] != 1 {
		t.Errorf("loaded %v", got)
	}
	if err := w.CheckAllUsed("test tensors"); err == nil || !strings.Contains(err.Error(), b.Name) {
		t.Errorf("CheckAllUsed with %s unused: %v", b.Name, err)
	}
	// Wrong shape and missing tensors name the tensor.
	if _, err := w.Take(b.Name, 2, 1); err == nil || !strings.Contains(err.Error(), b.Name) || !strings.Contains(err.Error(), "[1 2]") {
		t.Errorf("wrong shape: %v", err)
	}
	if _, err := w.Take("base_model.model.x.lora_A.weight", 1); err == nil || !strings.Contains(err.Error(), "x.lora_A.weight\" is missing") {
		t.Errorf("missing: %v", err)
	}
	if _, err := w.Take(b.Name, 1, 2); err != nil {
		t.Fatal(err)
	}
	if err := w.CheckAllUsed("test tensors"); err != nil {
		t.Errorf("all used: %v", err)
	}
}

func TestReadWeightsErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadWeights(dir); err == nil || !strings.Contains(err.Error(), "adapter_model.safetensors are missing") {
		t.Errorf("missing file: %v", err)
	}
	// A truncated file is rejected by the safetensors reader with the path.
	path := filepath.Join(dir, WeightsFile)
	if err := safetensors.Write(path, []safetensors.Tensor{{Name: "t", DType: "F32", Shape: []int{4}, F32: []float32{1, 2, 3, 4}}}, nil); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if err := os.WriteFile(path, raw[:len(raw)-3], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadWeights(dir); err == nil || !strings.Contains(err.Error(), WeightsFile) {
		t.Errorf("truncated file: %v", err)
	}
}

// TestWeightsFileLoadAll writes a side file with WriteWeightsFile and
// reads it back with LoadAll: every tensor comes back, and a missing
// tensor, a wrong shape or a tensor nothing takes is an error naming it.
func TestWeightsFileLoadAll(t *testing.T) {
	be := cpu.New()
	defer be.Close()
	mk := func(name string, vals []float32, shape ...int) *engine.Param {
		p := &engine.Param{Name: name, W: be.Alloc(engine.Float32, shape...)}
		if vals != nil {
			be.Upload(p.W, vals)
		}
		return p
	}
	saved := []*engine.Param{mk("enc.weight", []float32{1, 2, 3, 4, 5, 6}, 3, 2), mk("enc.bias", []float32{-1, 7}, 2)}
	path := filepath.Join(t.TempDir(), "side.safetensors")
	if err := WriteWeightsFile(path, saved); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		into []*engine.Param
		want string // "" for success
	}{
		{"all", []*engine.Param{mk("enc.weight", nil, 3, 2), mk("enc.bias", nil, 2)}, ""},
		{"unused", []*engine.Param{mk("enc.weight", nil, 3, 2)}, `unexpected tensor(s) "enc.bias" (expected only the side tensors)`},
		{"shape", []*engine.Param{mk("enc.weight", nil, 2, 3), mk("enc.bias", nil, 2)}, `"enc.weight" has shape [3 2], expected [2 3]`},
		{"missing", []*engine.Param{mk("enc.weight", nil, 3, 2), mk("enc.bias", nil, 2), mk("enc.scale", nil, 1)}, `"enc.scale" is missing`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := ReadWeightsFile(path)
			if err != nil {
				t.Fatal(err)
			}
			err = w.LoadAll(tc.into, "the side tensors")
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range tc.into {
				if got, want := be.Download(p.W), be.Download(saved[i].W); !slices.Equal(got, want) {
					t.Errorf("%s: loaded %v, saved %v", p.Name, got, want)
				}
			}
		})
	}
}
