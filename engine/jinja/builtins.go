package jinja

import (
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
)

// globals are the functions every template sees.
func (r *renderer) globals() map[string]Value {
	return map[string]Value{
		"range":     Func(builtinRange),
		"namespace": Func(builtinNamespace),
		"dict":      Func(builtinDict),
		"raise_exception": Func(func(args []Value, _ map[string]Value) (Value, error) {
			msg := ""
			if len(args) > 0 {
				msg = str(args[0])
			}
			return nil, &RaiseError{Message: msg}
		}),
		"strftime_now": Func(func(args []Value, _ map[string]Value) (Value, error) {
			if len(args) != 1 {
				return nil, fmt.Errorf("strftime_now takes one format argument")
			}
			now := time.Now
			if r.opts.Now != nil {
				now = r.opts.Now
			}
			return strftime(now(), str(args[0])), nil
		}),
	}
}

func builtinRange(args []Value, _ map[string]Value) (Value, error) {
	var n [3]int64
	n[2] = 1
	for i, a := range args {
		v, ok := a.(int64)
		if !ok || i > 2 {
			return nil, fmt.Errorf("range() takes up to 3 integers")
		}
		n[i] = v
	}
	start, stop, step := n[0], n[1], n[2]
	if len(args) == 1 {
		start, stop = 0, n[0]
	}
	if step == 0 {
		return nil, fmt.Errorf("range() step must not be zero")
	}
	out := []Value{}
	for i := start; (step > 0 && i < stop) || (step < 0 && i > stop); i += step {
		out = append(out, i)
	}
	return out, nil
}

func builtinNamespace(args []Value, kwargs map[string]Value) (Value, error) {
	d := NewDict()
	d.namespace = true
	for _, a := range args {
		if src, ok := a.(*Dict); ok {
			for _, k := range src.keys {
				if err := d.setKey(src.key(k), src.m[k]); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, k := range sortedKeys(kwargs) {
		d.Set(k, kwargs[k])
	}
	return d, nil
}

func builtinDict(args []Value, kwargs map[string]Value) (Value, error) {
	d := NewDict()
	for _, k := range sortedKeys(kwargs) {
		d.Set(k, kwargs[k])
	}
	return d, nil
}

func sortedKeys(m map[string]Value) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// strftime formats t with the C directives chat templates use.
func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			b.WriteByte(format[i])
			continue
		}
		i++
		switch format[i] {
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'Y':
			fmt.Fprintf(&b, "%04d", t.Year())
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'b':
			b.WriteString(t.Month().String()[:3])
		case 'B':
			b.WriteString(t.Month().String())
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}

func (r *renderer) evalFilter(e *filterExpr, s *scope) (Value, error) {
	v, err := r.eval(e.arg, s)
	if err != nil {
		return nil, err
	}
	args, kwargs, err := r.evalArgs(e.args, e.kwargs, s)
	if err != nil {
		return nil, err
	}
	out, err := applyFilter(e.name, v, args, kwargs)
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", e.name, err)
	}
	return out, nil
}

// arg returns positional argument i, else keyword name, else def.
func arg(args []Value, kwargs map[string]Value, i int, name string, def Value) Value {
	if i < len(args) {
		return args[i]
	}
	if v, ok := kwargs[name]; ok {
		return v
	}
	return def
}

func applyFilter(name string, v Value, args []Value, kwargs map[string]Value) (Value, error) {
	switch name {
	case "trim", "strip":
		chars := arg(args, kwargs, 0, "chars", nil)
		return stripChars(str(v), chars, true, true), nil
	case "length", "count":
		return length(v)
	case "tojson":
		indent := int64(-1)
		if x, ok := arg(args, kwargs, 0, "indent", nil).(int64); ok {
			indent = x
		}
		var b strings.Builder
		if err := toJSON(&b, v, int(indent), 0); err != nil {
			return nil, err
		}
		return b.String(), nil
	case "string":
		return str(v), nil
	case "upper":
		return strings.ToUpper(str(v)), nil
	case "lower":
		return strings.ToLower(str(v)), nil
	case "title":
		return pyTitle(str(v)), nil
	case "capitalize":
		return pyCapitalize(str(v)), nil
	case "replace":
		if len(args) < 2 {
			return nil, fmt.Errorf("replace needs old and new strings")
		}
		return strings.ReplaceAll(str(v), str(args[0]), str(args[1])), nil
	case "default", "d":
		def := arg(args, kwargs, 0, "default_value", "")
		useFalse := truthy(arg(args, kwargs, 1, "boolean", false))
		if _, undef := v.(Undefined); undef || (useFalse && !truthy(v)) {
			return def, nil
		}
		return v, nil
	case "first", "last":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return Undefined{name}, nil
		}
		if name == "first" {
			return items[0], nil
		}
		return items[len(items)-1], nil
	case "join":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		attr, _ := arg(args, kwargs, 1, "attribute", nil).(string)
		parts := make([]string, len(items))
		for i, it := range items {
			if attr != "" {
				if it, err = getAttr(it, attr); err != nil {
					return nil, err
				}
			}
			parts[i] = str(it)
		}
		return strings.Join(parts, str(arg(args, kwargs, 0, "d", ""))), nil
	case "list":
		items, err := iterate(v)
		return append([]Value{}, items...), err
	case "items":
		d, ok := v.(*Dict)
		if !ok {
			return nil, fmt.Errorf("items needs a mapping, got %s", typeName(v))
		}
		return dictItems(d), nil
	case "reverse":
		if s, ok := v.(string); ok {
			rs := []rune(s)
			for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
				rs[i], rs[j] = rs[j], rs[i]
			}
			return string(rs), nil
		}
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		out := make([]Value, len(items))
		for i, it := range items {
			out[len(items)-1-i] = it
		}
		return out, nil
	case "min", "max":
		return minMax(name == "max", v, args, kwargs)
	case "select", "reject":
		return selectItems(name == "select", v, "", args)
	case "selectattr", "rejectattr":
		if len(args) == 0 {
			return nil, fmt.Errorf("needs an attribute name")
		}
		return selectItems(name == "selectattr", v, str(args[0]), args[1:])
	case "map":
		return mapFilter(v, args, kwargs)
	case "int":
		return toInt(v), nil
	case "float":
		if f, ok := number(v); ok {
			return f, nil
		}
		return 0.0, nil
	case "abs":
		switch x := v.(type) {
		case int64:
			return max(x, -x), nil
		case float64:
			return max(x, -x), nil
		}
		return nil, fmt.Errorf("abs needs a number")
	case "unique":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		var out []Value
		for _, it := range items {
			seen := false
			for _, o := range out {
				seen = seen || equal(o, it)
			}
			if !seen {
				out = append(out, it)
			}
		}
		return out, nil
	case "sort":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		out := append([]Value{}, items...)
		attr, _ := arg(args, kwargs, 2, "attribute", nil).(string)
		key := func(x Value) Value {
			if attr != "" {
				x, _ = getAttr(x, attr)
			}
			return x
		}
		if err := sortValues(out, key); err != nil {
			return nil, err
		}
		if truthy(arg(args, kwargs, 0, "reverse", false)) {
			for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
				out[i], out[j] = out[j], out[i]
			}
		}
		return out, nil
	case "dictsort":
		d, ok := v.(*Dict)
		if !ok {
			return nil, fmt.Errorf("dictsort needs a mapping")
		}
		items := dictItems(d)
		err := sortValues(items, func(x Value) Value { return x.([]Value)[0] })
		return items, err
	case "indent":
		return indentFilter(str(v), args, kwargs), nil
	case "safe", "e", "escape":
		return v, nil
	}
	return nil, fmt.Errorf("unknown filter")
}

func dictItems(d *Dict) []Value {
	out := make([]Value, len(d.keys))
	for i, k := range d.keys {
		out[i] = []Value{d.key(k), d.m[k]}
	}
	return out
}

func length(v Value) (Value, error) {
	switch v := v.(type) {
	case string:
		return int64(len([]rune(v))), nil
	case []Value:
		return int64(len(v)), nil
	case *Dict:
		return int64(v.Len()), nil
	case Undefined:
		return int64(0), nil
	}
	return nil, fmt.Errorf("object of type '%s' has no len()", typeName(v))
}

func toInt(v Value) Value {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	case bool:
		return int64(boolNum(x))
	case string:
		var n int64
		if _, err := fmt.Sscan(strings.TrimSpace(x), &n); err == nil {
			return n
		}
	}
	return int64(0)
}

// minMax is the min and max filters: the smallest (largest) item, by its
// attribute when one is given, strings compared case-insensitively
// unless case_sensitive; undefined for no items.
func minMax(largest bool, v Value, args []Value, kwargs map[string]Value) (Value, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	caseSensitive := truthy(arg(args, kwargs, 0, "case_sensitive", false))
	attr, _ := arg(args, kwargs, 1, "attribute", nil).(string)
	key := func(x Value) (Value, error) {
		if attr != "" {
			var err error
			if x, err = getAttr(x, attr); err != nil {
				return nil, err
			}
		}
		if s, ok := x.(string); ok && !caseSensitive {
			return strings.ToLower(s), nil
		}
		return x, nil
	}
	var best, bestKey Value
	for i, it := range items {
		k, err := key(it)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			c, err := compare(k, bestKey)
			if err != nil {
				return nil, err
			}
			if (largest && c <= 0) || (!largest && c >= 0) {
				continue
			}
		}
		best, bestKey = it, k
	}
	if len(items) == 0 {
		return Undefined{"no aggregated item, sequence was empty"}, nil
	}
	return best, nil
}

// selectItems is select and reject (attr "": the items themselves) and
// selectattr and rejectattr (the items' attribute attr): the items whose
// value passes the test args[0] (with args[1:]), or is true when there is
// no test, when keep; the others when not.
func selectItems(keep bool, v Value, attr string, args []Value) (Value, error) {
	if !truthy(v) { // Jinja2 selects from a false value (None) nothing
		return []Value{}, nil
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	out := []Value{}
	for _, it := range items {
		x := it
		if attr != "" {
			if x, err = getAttr(it, attr); err != nil {
				return nil, err
			}
		}
		ok := truthy(x)
		if len(args) > 0 {
			if ok, err = runTest(str(args[0]), x, args[1:]); err != nil {
				return nil, err
			}
		}
		if ok == keep {
			out = append(out, it)
		}
	}
	return out, nil
}

func mapFilter(v Value, args []Value, kwargs map[string]Value) (Value, error) {
	if !truthy(v) { // as Jinja2: mapping a false value (None) gives nothing
		return []Value{}, nil
	}
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	out := make([]Value, len(items))
	if attr, ok := kwargs["attribute"]; ok {
		def, hasDef := kwargs["default"]
		for i, it := range items {
			x, err := getAttr(it, str(attr))
			if err != nil {
				return nil, err
			}
			if _, undef := x.(Undefined); undef && hasDef {
				x = def
			}
			out[i] = x
		}
		return out, nil
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("map needs a filter name or attribute=")
	}
	for i, it := range items {
		if out[i], err = applyFilter(str(args[0]), it, args[1:], nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func indentFilter(s string, args []Value, kwargs map[string]Value) string {
	width := "    "
	switch w := arg(args, kwargs, 0, "width", int64(4)).(type) {
	case int64:
		width = strings.Repeat(" ", int(w))
	case string:
		width = w
	}
	first := truthy(arg(args, kwargs, 1, "first", false))
	blank := truthy(arg(args, kwargs, 2, "blank", false))
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if (i == 0 && !first) || (l == "" && !blank) {
			continue
		}
		lines[i] = width + l
	}
	return strings.Join(lines, "\n")
}

func (r *renderer) evalTest(e *testExpr, s *scope) (Value, error) {
	v, err := r.eval(e.arg, s)
	if err != nil {
		return nil, err
	}
	args, _, err := r.evalArgs(e.args, nil, s)
	if err != nil {
		return nil, err
	}
	ok, err := runTest(e.name, v, args)
	if err != nil {
		return nil, err
	}
	return ok != e.negate, nil
}

func runTest(name string, v Value, args []Value) (bool, error) {
	_, undef := v.(Undefined)
	switch name {
	case "defined":
		return !undef, nil
	case "undefined":
		return undef, nil
	case "none":
		return v == nil, nil
	case "string":
		_, ok := v.(string)
		return ok, nil
	case "number":
		_, ok := number(v)
		return ok, nil
	case "integer":
		_, ok := v.(int64)
		return ok, nil
	case "float":
		_, ok := v.(float64)
		return ok, nil
	case "boolean":
		_, ok := v.(bool)
		return ok, nil
	case "true":
		b, ok := v.(bool)
		return ok && b, nil
	case "false":
		b, ok := v.(bool)
		return ok && !b, nil
	case "mapping":
		_, ok := v.(*Dict)
		return ok, nil
	case "iterable":
		switch v.(type) {
		case string, []Value, *Dict:
			return true, nil
		}
		return false, nil
	case "sequence":
		switch v.(type) {
		case string, []Value, *Dict:
			return true, nil
		}
		return false, nil
	case "callable":
		switch v.(type) {
		case Func, *Macro:
			return true, nil
		}
		return false, nil
	case "odd", "even":
		n, ok := v.(int64)
		if !ok {
			return false, fmt.Errorf("test %s needs an integer", name)
		}
		return (n%2 != 0) == (name == "odd"), nil
	case "divisibleby":
		n, ok1 := v.(int64)
		if len(args) != 1 {
			return false, fmt.Errorf("test divisibleby needs a number")
		}
		d, ok2 := args[0].(int64)
		if !ok1 || !ok2 || d == 0 {
			return false, fmt.Errorf("test divisibleby needs integers")
		}
		return n%d == 0, nil
	case "eq", "equalto", "==", "sameas":
		if len(args) != 1 {
			return false, fmt.Errorf("test %s needs one argument", name)
		}
		return equal(v, args[0]), nil
	case "ne", "!=":
		if len(args) != 1 {
			return false, fmt.Errorf("test %s needs one argument", name)
		}
		return !equal(v, args[0]), nil
	case "in":
		if len(args) != 1 {
			return false, fmt.Errorf("test in needs one argument")
		}
		return contains(args[0], v)
	case "lower":
		s, ok := v.(string)
		return ok && s == strings.ToLower(s), nil
	case "upper":
		s, ok := v.(string)
		return ok && s == strings.ToUpper(s), nil
	}
	return false, fmt.Errorf("unknown test %q", name)
}

// callMethod calls a Python method of a string, dict or list; handled is
// false when obj has no such method.
func callMethod(obj Value, name string, args []Value, kwargs map[string]Value) (Value, bool, error) {
	switch o := obj.(type) {
	case string:
		v, err := stringMethod(o, name, args, kwargs)
		if err == errNoMethod {
			return nil, false, nil
		}
		return v, true, err
	case *Dict:
		switch name {
		case "items":
			return dictItems(o), true, nil
		case "keys":
			out := make([]Value, len(o.keys))
			for i, k := range o.keys {
				out[i] = o.key(k)
			}
			return out, true, nil
		case "values":
			out := make([]Value, len(o.keys))
			for i, k := range o.keys {
				out[i] = o.m[k]
			}
			return out, true, nil
		case "get":
			if len(args) == 0 {
				return nil, true, fmt.Errorf("get needs a key")
			}
			if v, ok := o.lookup(args[0]); ok {
				return v, true, nil
			}
			if len(args) > 1 {
				return args[1], true, nil
			}
			return nil, true, nil
		}
	case []Value:
		switch name {
		case "index":
			for i, x := range o {
				if len(args) > 0 && equal(x, args[0]) {
					return int64(i), true, nil
				}
			}
			return nil, true, fmt.Errorf("value is not in list")
		case "count":
			n := int64(0)
			for _, x := range o {
				if len(args) > 0 && equal(x, args[0]) {
					n++
				}
			}
			return n, true, nil
		}
	}
	return nil, false, nil
}

var errNoMethod = fmt.Errorf("no such method")

func stringMethod(s, name string, args []Value, kwargs map[string]Value) (Value, error) {
	argStr := func(i int) (string, bool) {
		if i < len(args) {
			if a, ok := args[i].(string); ok {
				return a, true
			}
		}
		return "", false
	}
	switch name {
	case "strip", "lstrip", "rstrip":
		var chars Value
		if len(args) > 0 {
			chars = args[0]
		}
		return stripChars(s, chars, name != "rstrip", name != "lstrip"), nil
	case "upper":
		return strings.ToUpper(s), nil
	case "lower":
		return strings.ToLower(s), nil
	case "title":
		return pyTitle(s), nil
	case "capitalize":
		return pyCapitalize(s), nil
	case "startswith", "endswith":
		var prefixes []string
		switch a := arg(args, kwargs, 0, "prefix", nil).(type) {
		case string:
			prefixes = []string{a}
		case []Value:
			for _, x := range a {
				prefixes = append(prefixes, str(x))
			}
		default:
			return nil, fmt.Errorf("%s needs a string", name)
		}
		for _, p := range prefixes {
			if (name == "startswith" && strings.HasPrefix(s, p)) || (name == "endswith" && strings.HasSuffix(s, p)) {
				return true, nil
			}
		}
		return false, nil
	case "split", "rsplit":
		return splitMethod(s, name == "rsplit", args, kwargs)
	case "replace":
		old, ok1 := argStr(0)
		nw, ok2 := argStr(1)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("replace needs two strings")
		}
		n := -1
		if c, ok := arg(args, kwargs, 2, "count", nil).(int64); ok {
			n = int(c)
		}
		return strings.Replace(s, old, nw, n), nil
	case "find", "rfind", "index", "rindex":
		sub, ok := argStr(0)
		if !ok {
			return nil, fmt.Errorf("%s needs a string", name)
		}
		i := strings.Index(s, sub)
		if name[0] == 'r' {
			i = strings.LastIndex(s, sub)
		}
		if i < 0 && (name == "index" || name == "rindex") {
			return nil, fmt.Errorf("substring not found")
		}
		if i >= 0 {
			i = len([]rune(s[:i]))
		}
		return int64(i), nil
	case "count":
		sub, ok := argStr(0)
		if !ok {
			return nil, fmt.Errorf("count needs a string")
		}
		return int64(strings.Count(s, sub)), nil
	case "join":
		items, err := iterate(arg(args, kwargs, 0, "iterable", []Value{}))
		if err != nil {
			return nil, err
		}
		parts := make([]string, len(items))
		for i, it := range items {
			parts[i] = str(it)
		}
		return strings.Join(parts, s), nil
	case "isdigit", "isalpha", "isspace", "isupper", "islower", "isalnum":
		return stringClass(s, name), nil
	case "format":
		out := s
		for _, a := range args {
			out = strings.Replace(out, "{}", str(a), 1)
		}
		return out, nil
	}
	return nil, errNoMethod
}

func stringClass(s, name string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		var ok bool
		switch name {
		case "isdigit":
			ok = unicode.IsDigit(r)
		case "isalpha":
			ok = unicode.IsLetter(r)
		case "isspace":
			ok = unicode.IsSpace(r)
		case "isalnum":
			ok = unicode.IsLetter(r) || unicode.IsDigit(r)
		case "isupper":
			ok = !unicode.IsLower(r)
		case "islower":
			ok = !unicode.IsUpper(r)
		}
		if !ok {
			return false
		}
	}
	return true
}

func splitMethod(s string, fromRight bool, args []Value, kwargs map[string]Value) (Value, error) {
	sepV := arg(args, kwargs, 0, "sep", nil)
	maxsplit := int64(-1)
	if m, ok := arg(args, kwargs, 1, "maxsplit", nil).(int64); ok {
		maxsplit = m
	}
	var parts []string
	if sepV == nil {
		parts = strings.Fields(s) // Python's whitespace split (maxsplit ignored here)
	} else {
		sep := str(sepV)
		if sep == "" {
			return nil, fmt.Errorf("empty separator")
		}
		switch {
		case maxsplit < 0:
			parts = strings.Split(s, sep)
		case !fromRight:
			parts = strings.SplitN(s, sep, int(maxsplit)+1)
		default:
			parts = rsplitN(s, sep, int(maxsplit))
		}
	}
	out := make([]Value, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out, nil
}

func rsplitN(s, sep string, n int) []string {
	var rev []string
	for n > 0 {
		i := strings.LastIndex(s, sep)
		if i < 0 {
			break
		}
		rev = append(rev, s[i+len(sep):])
		s = s[:i]
		n--
	}
	out := []string{s}
	for i := len(rev) - 1; i >= 0; i-- {
		out = append(out, rev[i])
	}
	return out
}

// stripChars is Python's str.strip/lstrip/rstrip: white space, or the
// characters of chars when it is a string.
func stripChars(s string, chars Value, left, right bool) string {
	cut := unicode.IsSpace
	if c, ok := chars.(string); ok {
		cut = func(r rune) bool { return strings.ContainsRune(c, r) }
	}
	if left {
		s = strings.TrimLeftFunc(s, cut)
	}
	if right {
		s = strings.TrimRightFunc(s, cut)
	}
	return s
}

func pyTitle(s string) string {
	var b strings.Builder
	prevLetter := false
	for _, r := range s {
		if unicode.IsLetter(r) {
			if prevLetter {
				b.WriteRune(unicode.ToLower(r))
			} else {
				b.WriteRune(unicode.ToUpper(r))
			}
			prevLetter = true
			continue
		}
		prevLetter = false
		b.WriteRune(r)
	}
	return b.String()
}

func pyCapitalize(s string) string {
	rs := []rune(strings.ToLower(s))
	if len(rs) > 0 {
		rs[0] = unicode.ToUpper(rs[0])
	}
	return string(rs)
}
