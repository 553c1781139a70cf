// Package fieldpaths lists the field paths of a configuration struct
// ("LR", "Train.LR", "LoRA.Rank"), the names *fielderr.Error and
// finetune.OptionError give options: tests check with it that every path
// an error can report is a real field, and that a caller's table of
// names (the CLI's flags) covers every field it exposes.
package fieldpaths

import (
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/fielderr"
)

// module is gotune's import path: structs of its own packages are
// descended into, others (time, io, ...) are leaves.
const module = "github.com/gotune/gotune/"

// Of returns the path of every exported leaf field of the struct v (a
// struct or a pointer to one). Fields of gotune's own struct types,
// pointers to them included, are descended into ("Train.LR"); an
// embedded struct's fields are promoted as Go promotes them (no prefix).
func Of(v any) []string {
	t := reflect.TypeOf(v)
	var out []string
	walk(t, "", &out)
	return out
}

// Has reports whether path names a field of v: a leaf that Of lists, or
// a struct field above one.
func Has(v any, path string) bool {
	for _, p := range Of(v) {
		if p == path || strings.HasPrefix(p, path+".") {
			return true
		}
	}
	return false
}

func walk(t reflect.Type, prefix string, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		path := prefix + f.Name
		if ft := structType(f.Type); ft != nil {
			sub := path + "."
			if f.Anonymous {
				sub = prefix
			}
			walk(ft, sub, out)
			continue
		}
		*out = append(*out, path)
	}
}

// structType returns t (or what it points to) when it is one of gotune's
// own struct types, else nil.
func structType(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct && strings.HasPrefix(t.PkgPath(), module) {
		return t
	}
	return nil
}

// RequireFieldError stops the test unless err is (or wraps) a
// *fielderr.Error whose every path names a field of v, and returns it.
func RequireFieldError(t testing.TB, err error, v any) *fielderr.Error {
	t.Helper()
	fe, ok := fielderr.As(err)
	require.True(t, ok, "want a *fielderr.Error, got %v", err)
	for _, f := range fe.Fields() {
		require.True(t, Has(v, f), "%q is not a field of %T", f, v)
	}
	return fe
}
