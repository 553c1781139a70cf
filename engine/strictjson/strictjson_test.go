package strictjson

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckKeys(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string // want: substring of the error; "" means nil
	}{
		{"flat ok", `{"a": 1, "b": 2}`, ""},
		{"top-level duplicate", "{\"vocab_size\": 1,\n \"vocab_size\": 2}", `duplicate key "vocab_size" in the object at the top level (line 2)`},
		{"nested duplicate", `{"model": {"vocab": {"a": 0, "a": 1}}}`, `duplicate key "a" in the object at model.vocab`},
		{"in an array", `{"messages": [{"role": "user"}, {"role": "x", "role": "y"}]}`, `duplicate key "role" in the object at messages[1]`},
		{"same key in sibling objects", `[{"a": 1}, {"a": 2}]`, ""},
		{"scalar document", `42`, ""},
		{"syntax error left to the caller", `{"a": 1, "b"`, ""},
		{"duplicate before a syntax error", `{"a": 1, "a"`, `duplicate key "a"`},
		{"empty", ``, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckKeys([]byte(tc.doc))
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func FuzzCheckKeys(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `[{"b":[{"c":1}]}]`, `{"x":`, `"s"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = CheckKeys(data) // must not panic
	})
}
