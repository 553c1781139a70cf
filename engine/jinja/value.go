package jinja

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Value is a template value: nil (None), Undefined, bool, int64, float64,
// string, []Value (a list), *Dict, *Macro or Func.
type Value = any

// Undefined is the value of a name or key that does not exist: it prints
// as "" and is false, as in Jinja's default (non-strict) mode, which
// transformers uses.
type Undefined struct{ Name string }

// Dict is a mapping that keeps its keys' insertion order (tojson writes
// keys in that order, as Python dicts do). Keys are strings, except in a
// template's dict literal, which may use numbers, booleans or None (as
// ByteDance-Seed-OSS's {0: 0, 512: 128}): those are stored under an
// internal string (see dictKey) and remembered. A namespace() is a Dict
// whose attributes can be set.
type Dict struct {
	keys      []string
	m         map[string]Value
	nonString map[string]Value // the key of each internal key, when not a string
	namespace bool
}

// NewDict returns an empty Dict.
func NewDict() *Dict { return &Dict{m: map[string]Value{}} }

// Set sets key to v, appending the key when it is new.
func (d *Dict) Set(key string, v Value) {
	if _, ok := d.m[key]; !ok {
		d.keys = append(d.keys, key)
	}
	d.m[key] = v
}

// Get returns the value of key.
func (d *Dict) Get(key string) (Value, bool) {
	v, ok := d.m[key]
	return v, ok
}

// Keys returns the keys in insertion order (a key that is not a string,
// which only a template's dict literal makes, in its internal form).
func (d *Dict) Keys() []string { return d.keys }

// dictKey is the internal key of k: a string is itself; a number,
// boolean or None is a form no template string has, equal for keys
// Python hashes alike (1, 1.0 and True); ok is false for a key Python
// cannot hash (a list or dict).
func dictKey(k Value) (key string, ok bool) {
	switch k := k.(type) {
	case string:
		return k, true
	case nil:
		return "\x00None", true
	case bool:
		return "\x00" + strconv.FormatInt(int64(boolNum(k)), 10), true
	case int64:
		return "\x00" + strconv.FormatInt(k, 10), true
	case float64:
		if k == math.Trunc(k) && math.Abs(k) < 1<<63 {
			return "\x00" + strconv.FormatInt(int64(k), 10), true
		}
		return "\x00" + pyFloat(k), true
	}
	return "", false
}

// setKey sets the value of key k, any hashable value.
func (d *Dict) setKey(k, v Value) error {
	key, ok := dictKey(k)
	if !ok {
		return fmt.Errorf("unhashable type: '%s'", typeName(k))
	}
	if _, isString := k.(string); !isString {
		if d.nonString == nil {
			d.nonString = map[string]Value{}
		}
		if _, seen := d.m[key]; !seen {
			d.nonString[key] = k
		}
	}
	d.Set(key, v)
	return nil
}

// lookup returns the value of key k, any value.
func (d *Dict) lookup(k Value) (Value, bool) {
	key, ok := dictKey(k)
	if !ok {
		return nil, false
	}
	v, ok := d.m[key]
	return v, ok
}

// key is the key stored as the internal key.
func (d *Dict) key(key string) Value {
	if k, ok := d.nonString[key]; ok {
		return k
	}
	return key
}

// Len is the number of keys.
func (d *Dict) Len() int { return len(d.keys) }

// Func is a function callable from a template (a global such as
// raise_exception).
type Func func(args []Value, kwargs map[string]Value) (Value, error)

// Macro is a {% macro %} defined by the template.
type Macro struct {
	node  *macroNode
	scope *scope
}

// FromJSON decodes JSON into template values: objects become *Dict (key
// order kept), arrays []Value, integers int64, other numbers float64.
func FromJSON(data []byte) (Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeJSON(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

func decodeJSON(dec *json.Decoder) (Value, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := t.(type) {
	case json.Delim:
		switch t {
		case '{':
			d := NewDict()
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := decodeJSON(dec)
				if err != nil {
					return nil, err
				}
				d.Set(k.(string), v)
			}
			_, err := dec.Token()
			return d, err
		case '[':
			list := []Value{}
			for dec.More() {
				v, err := decodeJSON(dec)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			_, err := dec.Token()
			return list, err
		}
	case json.Number:
		if i, err := t.Int64(); err == nil && !strings.ContainsAny(t.String(), ".eE") {
			return i, nil
		}
		return t.Float64()
	case string, bool, nil:
		return t, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", t)
}

// truthy is Python's truth value.
func truthy(v Value) bool {
	switch v := v.(type) {
	case nil, Undefined:
		return false
	case bool:
		return v
	case int64:
		return v != 0
	case float64:
		return v != 0
	case string:
		return v != ""
	case []Value:
		return len(v) > 0
	case *Dict:
		return v.namespace || v.Len() > 0
	}
	return true
}

// str is Python's str() of a value, which {{ }} prints.
func str(v Value) string {
	switch v := v.(type) {
	case Undefined:
		return ""
	case string:
		return v
	}
	return repr(v)
}

// repr is Python's repr() of a value (how lists and dicts print).
func repr(v Value) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case Undefined:
		return ""
	case bool:
		if v {
			return "True"
		}
		return "False"
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return pyFloat(v)
	case string:
		return pyQuote(v)
	case []Value:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = repr(x)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case *Dict:
		if v.namespace {
			return "<Namespace>"
		}
		parts := make([]string, len(v.keys))
		for i, k := range v.keys {
			parts[i] = repr(v.key(k)) + ": " + repr(v.m[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case *Macro:
		return "<Macro '" + v.node.name + "'>"
	}
	return fmt.Sprint(v)
}

// pyQuote quotes s as Python's repr does.
func pyQuote(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(q):
			b.WriteByte('\\')
			b.WriteByte(q)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// pyFloat formats f as Python's repr(float): the shortest digits that
// round-trip, in positional notation for 1e-4 <= |f| < 1e16.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	a := math.Abs(f)
	if a != 0 && (a < 1e-4 || a >= 1e16) {
		s := strconv.FormatFloat(f, 'e', -1, 64) // 1.5e-05 form already
		mant, exp, _ := strings.Cut(s, "e")
		sign := exp[0]
		exp = strings.TrimLeft(exp[1:], "0")
		if len(exp) < 2 {
			exp = strings.Repeat("0", 2-len(exp)) + exp
		}
		return mant + "e" + string(sign) + exp
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// toJSON writes v as Python's json.dumps(v, ensure_ascii=False) does,
// with indent (< 0: none) and the default separators.
func toJSON(b *strings.Builder, v Value, indent, depth int) error {
	switch v := v.(type) {
	case nil, Undefined:
		b.WriteString("null")
	case bool:
		if v {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case float64:
		switch {
		case math.IsNaN(v):
			b.WriteString("NaN")
		case math.IsInf(v, 0):
			if v > 0 {
				b.WriteString("Infinity")
			} else {
				b.WriteString("-Infinity")
			}
		default:
			b.WriteString(pyFloat(v))
		}
	case string:
		jsonString(b, v)
	case []Value:
		if len(v) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, x := range v {
			if i > 0 {
				b.WriteByte(',')
				if indent < 0 {
					b.WriteByte(' ')
				}
			}
			newline(b, indent, depth+1)
			if err := toJSON(b, x, indent, depth+1); err != nil {
				return err
			}
		}
		newline(b, indent, depth)
		b.WriteByte(']')
	case *Dict:
		if v.Len() == 0 {
			b.WriteString("{}")
			return nil
		}
		b.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				b.WriteByte(',')
				if indent < 0 {
					b.WriteByte(' ')
				}
			}
			newline(b, indent, depth+1)
			jsonString(b, jsonKey(v.key(k)))
			b.WriteString(": ")
			if err := toJSON(b, v.m[k], indent, depth+1); err != nil {
				return err
			}
		}
		newline(b, indent, depth)
		b.WriteByte('}')
	default:
		return fmt.Errorf("tojson: %s is not JSON serializable", typeName(v))
	}
	return nil
}

// jsonKey is the JSON object key Python's json.dumps writes for k.
func jsonKey(k Value) string {
	switch k := k.(type) {
	case nil:
		return "null"
	case bool:
		if k {
			return "true"
		}
		return "false"
	case string:
		return k
	}
	return str(k)
}

func newline(b *strings.Builder, indent, depth int) {
	if indent < 0 {
		return
	}
	b.WriteByte('\n')
	b.WriteString(strings.Repeat(" ", indent*depth))
}

// jsonString quotes s as Python's json module does with ensure_ascii=False.
func jsonString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	b.WriteByte('"')
}

// typeName names a value's type as Python would.
func typeName(v Value) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case Undefined:
		return "undefined"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []Value:
		return "list"
	case *Dict:
		return "dict"
	case *Macro, Func:
		return "function"
	}
	return fmt.Sprintf("%T", v)
}

// equal is Python's ==.
func equal(a, b Value) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case Undefined:
		_, ok := b.(Undefined)
		return ok
	case bool:
		if bb, ok := b.(bool); ok {
			return a == bb
		}
		if n, ok := number(b); ok {
			return n == boolNum(a)
		}
		return false
	case int64, float64:
		x, _ := number(a)
		if bb, ok := b.(bool); ok {
			return x == boolNum(bb)
		}
		y, ok := number(b)
		return ok && x == y
	case string:
		bs, ok := b.(string)
		return ok && a == bs
	case []Value:
		bl, ok := b.([]Value)
		if !ok || len(a) != len(bl) {
			return false
		}
		for i := range a {
			if !equal(a[i], bl[i]) {
				return false
			}
		}
		return true
	case *Dict:
		bd, ok := b.(*Dict)
		if !ok {
			return false
		}
		if a == bd {
			return true
		}
		if a.Len() != bd.Len() {
			return false
		}
		for _, k := range a.keys {
			y, ok := bd.m[k]
			if !ok || !equal(a.m[k], y) {
				return false
			}
		}
		return true
	}
	return a == b
}

func boolNum(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// number returns v as a float64 when it is a number.
func number(v Value) (float64, bool) {
	switch v := v.(type) {
	case int64:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

// compare orders two numbers or two strings (or lists of them).
func compare(a, b Value) (int, error) {
	if x, ok := number(a); ok {
		if y, ok := number(b); ok {
			switch {
			case x < y:
				return -1, nil
			case x > y:
				return 1, nil
			}
			return 0, nil
		}
	}
	if x, ok := a.(string); ok {
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), nil
		}
	}
	return 0, fmt.Errorf("cannot compare %s with %s", typeName(a), typeName(b))
}

// sortValues sorts a list of comparable values in place.
func sortValues(list []Value, key func(Value) Value) error {
	var err error
	sort.SliceStable(list, func(i, j int) bool {
		c, e := compare(key(list[i]), key(list[j]))
		if e != nil && err == nil {
			err = e
		}
		return c < 0
	})
	return err
}
