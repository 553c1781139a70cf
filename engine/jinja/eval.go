package jinja

import (
	"fmt"
	"math"
	"strings"
)

func (r *renderer) eval(e expr, s *scope) (Value, error) {
	switch e := e.(type) {
	case *literal:
		return e.v, nil
	case *nameExpr:
		if v, ok := s.lookup(e.name); ok {
			return v, nil
		}
		return Undefined{e.name}, nil
	case *listExpr:
		out := make([]Value, len(e.items))
		for i, it := range e.items {
			v, err := r.eval(it, s)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case *dictExpr:
		d := NewDict()
		for i := range e.keys {
			k, err := r.eval(e.keys[i], s)
			if err != nil {
				return nil, err
			}
			v, err := r.eval(e.values[i], s)
			if err != nil {
				return nil, err
			}
			if err := d.setKey(k, v); err != nil {
				return nil, err
			}
		}
		return d, nil
	case *attrExpr:
		obj, err := r.eval(e.obj, s)
		if err != nil {
			return nil, err
		}
		return getAttr(obj, e.name)
	case *indexExpr:
		obj, err := r.eval(e.obj, s)
		if err != nil {
			return nil, err
		}
		idx, err := r.eval(e.index, s)
		if err != nil {
			return nil, err
		}
		return getItem(obj, idx)
	case *sliceExpr:
		return r.evalSlice(e, s)
	case *callExpr:
		return r.evalCall(e, s)
	case *filterExpr:
		return r.evalFilter(e, s)
	case *testExpr:
		return r.evalTest(e, s)
	case *notExpr:
		v, err := r.eval(e.x, s)
		if err != nil {
			return nil, err
		}
		return !truthy(v), nil
	case *negExpr:
		v, err := r.eval(e.x, s)
		if err != nil {
			return nil, err
		}
		switch v := v.(type) {
		case int64:
			return -v, nil
		case float64:
			return -v, nil
		}
		return nil, fmt.Errorf("bad operand type for unary -: '%s'", typeName(v))
	case *condExpr:
		c, err := r.eval(e.cond, s)
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return r.eval(e.yes, s)
		}
		return r.eval(e.no, s)
	case *binExpr:
		return r.evalBinary(e, s)
	}
	return nil, fmt.Errorf("internal error: unknown expression %T", e)
}

// getAttr is obj.name: a dict's key, else Undefined.
func getAttr(obj Value, name string) (Value, error) {
	switch o := obj.(type) {
	case *Dict:
		if v, ok := o.m[name]; ok {
			return v, nil
		}
		return Undefined{name}, nil
	case Undefined:
		return nil, fmt.Errorf("%q is undefined (reading its attribute %q)", o.Name, name)
	case nil:
		return nil, fmt.Errorf("'NoneType' object has no attribute '%s'", name)
	}
	return Undefined{name}, nil
}

// getItem is obj[idx]. As in Jinja2, an index of the wrong type (a
// string's or list's item "type", None's item) is undefined, not an
// error; only an undefined value's item is one.
func getItem(obj, idx Value) (Value, error) {
	switch o := obj.(type) {
	case *Dict:
		if v, ok := o.lookup(idx); ok {
			return v, nil
		}
		return Undefined{str(idx)}, nil
	case []Value:
		i, ok := idx.(int64)
		if !ok {
			return Undefined{str(idx)}, nil
		}
		if i < 0 {
			i += int64(len(o))
		}
		if i < 0 || i >= int64(len(o)) {
			return Undefined{"list index out of range"}, nil
		}
		return o[i], nil
	case string:
		i, ok := idx.(int64)
		if !ok {
			return Undefined{str(idx)}, nil
		}
		rs := []rune(o)
		if i < 0 {
			i += int64(len(rs))
		}
		if i < 0 || i >= int64(len(rs)) {
			return Undefined{"string index out of range"}, nil
		}
		return string(rs[i]), nil
	case Undefined:
		return nil, fmt.Errorf("%q is undefined (reading its item %s)", o.Name, repr(idx))
	}
	return Undefined{str(idx)}, nil
}

func (r *renderer) evalSlice(e *sliceExpr, s *scope) (Value, error) {
	obj, err := r.eval(e.obj, s)
	if err != nil {
		return nil, err
	}
	var bounds [3]*int64
	for i, x := range []expr{e.start, e.stop, e.step} {
		if x == nil {
			continue
		}
		v, err := r.eval(x, s)
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("slice indices must be integers, not %s", typeName(v))
		}
		bounds[i] = &n
	}
	var items []Value
	str, isStr := obj.(string)
	switch o := obj.(type) {
	case []Value:
		items = o
	case string:
		for _, r := range o {
			items = append(items, string(r))
		}
	default:
		return nil, fmt.Errorf("'%s' object is not subscriptable", typeName(obj))
	}
	_ = str
	out, err := pySlice(items, bounds[0], bounds[1], bounds[2])
	if err != nil {
		return nil, err
	}
	if isStr {
		var b strings.Builder
		for _, c := range out {
			b.WriteString(c.(string))
		}
		return b.String(), nil
	}
	return out, nil
}

// pySlice is Python's items[start:stop:step].
func pySlice(items []Value, start, stop, step *int64) ([]Value, error) {
	n := int64(len(items))
	st := int64(1)
	if step != nil {
		st = *step
	}
	if st == 0 {
		return nil, fmt.Errorf("slice step cannot be zero")
	}
	clamp := func(p *int64, def, lo, hi int64) int64 {
		if p == nil {
			return def
		}
		v := *p
		if v < 0 {
			v += n
		}
		return max(lo, min(hi, v))
	}
	out := []Value{}
	if st > 0 {
		a, b := clamp(start, 0, 0, n), clamp(stop, n, 0, n)
		for i := a; i < b; i += st {
			out = append(out, items[i])
		}
	} else {
		a, b := clamp(start, n-1, -1, n-1), clamp(stop, -1, -1, n-1)
		if stop == nil {
			b = -1
		}
		for i := a; i > b; i += st {
			out = append(out, items[i])
		}
	}
	return out, nil
}

func (r *renderer) evalArgs(args []expr, kwargs []kwarg, s *scope) ([]Value, map[string]Value, error) {
	av := make([]Value, len(args))
	for i, a := range args {
		v, err := r.eval(a, s)
		if err != nil {
			return nil, nil, err
		}
		av[i] = v
	}
	var kv map[string]Value
	if len(kwargs) > 0 {
		kv = map[string]Value{}
		for _, k := range kwargs {
			v, err := r.eval(k.value, s)
			if err != nil {
				return nil, nil, err
			}
			kv[k.name] = v
		}
	}
	return av, kv, nil
}

func (r *renderer) evalCall(e *callExpr, s *scope) (Value, error) {
	args, kwargs, err := r.evalArgs(e.args, e.kwargs, s)
	if err != nil {
		return nil, err
	}
	if a, ok := e.fn.(*attrExpr); ok {
		obj, err := r.eval(a.obj, s)
		if err != nil {
			return nil, err
		}
		if v, handled, err := callMethod(obj, a.name, args, kwargs); handled {
			return v, err
		}
	}
	fn, err := r.eval(e.fn, s)
	if err != nil {
		return nil, err
	}
	switch f := fn.(type) {
	case Func:
		return f(args, kwargs)
	case *Macro:
		return r.callMacro(f, args, kwargs)
	case Undefined:
		return nil, fmt.Errorf("%q is undefined and cannot be called", f.Name)
	}
	return nil, fmt.Errorf("'%s' object is not callable", typeName(fn))
}

func (r *renderer) callMacro(m *Macro, args []Value, kwargs map[string]Value) (Value, error) {
	n := m.node
	if len(args) > len(n.params) {
		return nil, fmt.Errorf("macro %s takes %d arguments, got %d", n.name, len(n.params), len(args))
	}
	inner := m.scope.child()
	for i, p := range n.params {
		switch {
		case i < len(args):
			inner.vars[p] = args[i]
		case kwargs != nil && kwargs[p] != nil:
			inner.vars[p] = kwargs[p]
		case n.defaults[i] != nil:
			v, err := r.eval(n.defaults[i], inner)
			if err != nil {
				return nil, err
			}
			inner.vars[p] = v
		default:
			inner.vars[p] = Undefined{p}
		}
	}
	var b strings.Builder
	if err := r.exec(n.body, inner, &b); err != nil {
		return nil, err
	}
	return b.String(), nil
}

func (r *renderer) evalBinary(e *binExpr, s *scope) (Value, error) {
	l, err := r.eval(e.l, s)
	if err != nil {
		return nil, err
	}
	switch e.op { // short-circuit: Python returns the deciding operand
	case "and":
		if !truthy(l) {
			return l, nil
		}
		return r.eval(e.r, s)
	case "or":
		if truthy(l) {
			return l, nil
		}
		return r.eval(e.r, s)
	}
	rv, err := r.eval(e.r, s)
	if err != nil {
		return nil, err
	}
	return binary(e.op, l, rv)
}

func binary(op string, l, r Value) (Value, error) {
	switch op {
	case "==":
		return equal(l, r), nil
	case "!=":
		return !equal(l, r), nil
	case "<", ">", "<=", ">=":
		c, err := compare(l, r)
		if err != nil {
			return nil, err
		}
		switch op {
		case "<":
			return c < 0, nil
		case ">":
			return c > 0, nil
		case "<=":
			return c <= 0, nil
		}
		return c >= 0, nil
	case "in", "not in":
		in, err := contains(r, l)
		if err != nil {
			return nil, err
		}
		return in == (op == "in"), nil
	case "~":
		return str(l) + str(r), nil
	case "+":
		switch a := l.(type) {
		case string:
			if b, ok := r.(string); ok {
				return a + b, nil
			}
		case []Value:
			if b, ok := r.([]Value); ok {
				return append(append([]Value{}, a...), b...), nil
			}
		}
	case "*":
		if a, ok := l.(string); ok {
			if n, ok := r.(int64); ok {
				return strings.Repeat(a, int(max(n, 0))), nil
			}
		}
	}
	return arith(op, l, r)
}

// arith is Python arithmetic on ints and floats.
func arith(op string, l, r Value) (Value, error) {
	li, lInt := l.(int64)
	ri, rInt := r.(int64)
	if lb, ok := l.(bool); ok {
		li, lInt = int64(boolNum(lb)), true
	}
	if rb, ok := r.(bool); ok {
		ri, rInt = int64(boolNum(rb)), true
	}
	if lInt && rInt {
		switch op {
		case "+":
			return li + ri, nil
		case "-":
			return li - ri, nil
		case "*":
			return li * ri, nil
		case "//", "%":
			if ri == 0 {
				return nil, fmt.Errorf("integer division or modulo by zero")
			}
			q, m := li/ri, li%ri
			if m != 0 && (m < 0) != (ri < 0) { // Python floors
				q--
				m += ri
			}
			if op == "//" {
				return q, nil
			}
			return m, nil
		case "**":
			if ri >= 0 {
				return int64(math.Pow(float64(li), float64(ri))), nil
			}
		}
	}
	x, ok1 := number(l)
	y, ok2 := number(r)
	if lInt {
		x, ok1 = float64(li), true
	}
	if rInt {
		y, ok2 = float64(ri), true
	}
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("unsupported operand types for %s: '%s' and '%s'", op, typeName(l), typeName(r))
	}
	switch op {
	case "+":
		return x + y, nil
	case "-":
		return x - y, nil
	case "*":
		return x * y, nil
	case "/":
		if y == 0 {
			return nil, fmt.Errorf("division by zero")
		}
		return x / y, nil
	case "//":
		if y == 0 {
			return nil, fmt.Errorf("division by zero")
		}
		return math.Floor(x / y), nil
	case "%":
		if y == 0 {
			return nil, fmt.Errorf("modulo by zero")
		}
		return x - y*math.Floor(x/y), nil
	case "**":
		return math.Pow(x, y), nil
	}
	return nil, fmt.Errorf("unknown operator %s", op)
}

// contains is Python's "item in container".
func contains(container, item Value) (bool, error) {
	switch c := container.(type) {
	case string:
		s, ok := item.(string)
		if !ok {
			return false, fmt.Errorf("'in <string>' requires string as left operand, not %s", typeName(item))
		}
		return strings.Contains(c, s), nil
	case []Value:
		for _, x := range c {
			if equal(x, item) {
				return true, nil
			}
		}
		return false, nil
	case *Dict:
		_, in := c.lookup(item)
		return in, nil
	case Undefined:
		return false, nil // Jinja2 iterates an undefined value as empty
	}
	return false, fmt.Errorf("argument of type '%s' is not iterable", typeName(container))
}
