package hfconfig

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the config.json parser: an error or
// a config that validates or fails to, never a panic. Seeds: every real
// config of testdata, broken variants (truncated, a duplicate key, absurd
// sizes).
func FuzzParse(f *testing.F) {
	paths, _ := filepath.Glob("testdata/*/config.json")
	paths = append(paths, "../../testdata/tiny/llama/config.json", "../../testdata/demo/config.json")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte(`{"architectures":["LlamaForCausalLM"],"vocab_size":1e12,"vocab_size":2}`))
	f.Add([]byte(`{"architectures":["GPT2LMHeadModel"],"n_layer":1000000000,"n_embd":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b, "config.json")
		if err != nil {
			return
		}
		_ = c.Validate()
	})
}
