// Package jinja renders Jinja2 templates as Hugging Face transformers
// renders chat templates (apply_chat_template): trim_blocks and
// lstrip_blocks on, undefined values print as nothing, the loopcontrols
// extension, and transformers' globals raise_exception and strftime_now
// and its tojson filter.
//
// It implements the subset of Jinja that real chat templates use: {{ }},
// {% if/elif/else %}, {% for %} (tuple targets, "if" filters, else, the
// loop object, break/continue), {% set %} (also namespace attributes and
// block sets), {% macro %}, whitespace control, Python-like expressions
// (arithmetic, comparisons, "in", slicing, conditional expressions,
// list/dict literals), the string, dict and list methods templates call,
// and the common filters and tests. Anything else is a parse error
// naming the line, never silently different output.
package jinja

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Template is a parsed template, safe for concurrent Render calls.
type Template struct {
	body []node
}

// Parse parses template source. As Jinja2 reads a template, line ends
// become "\n" and one newline at the end of the source is dropped
// (keep_trailing_newline is off).
func Parse(src string) (*Template, error) {
	src = strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(src)
	src = strings.TrimSuffix(src, "\n")
	segs, err := split(src)
	if err != nil {
		return nil, err
	}
	p := &parser{segs: segs}
	body, _, _, err := p.parseBody()
	if err != nil {
		return nil, err
	}
	return &Template{body: body}, nil
}

// Options configure a render.
type Options struct {
	// Now is the time strftime_now formats; nil means time.Now.
	Now func() time.Time
}

// RaiseError is the error raise_exception(message) returns.
type RaiseError struct{ Message string }

func (e *RaiseError) Error() string { return "raise_exception: " + e.Message }

// Render renders the template with the given variables.
func (t *Template) Render(vars map[string]Value, opts Options) (string, error) {
	r := &renderer{opts: opts}
	root := &scope{vars: map[string]Value{}}
	for k, v := range r.globals() {
		root.vars[k] = v
	}
	for k, v := range vars {
		root.vars[k] = v
	}
	var b strings.Builder
	if err := r.exec(t.body, root, &b); err != nil {
		var c ctrl
		if errors.As(err, &c) {
			return "", fmt.Errorf("{%% %s %%} outside a loop", c)
		}
		return "", err
	}
	return b.String(), nil
}

// scope holds variables; {% for %} bodies and macros get their own.
type scope struct {
	vars   map[string]Value
	parent *scope
}

func (s *scope) lookup(name string) (Value, bool) {
	for ; s != nil; s = s.parent {
		if v, ok := s.vars[name]; ok {
			return v, true
		}
	}
	return nil, false
}

func (s *scope) child() *scope { return &scope{vars: map[string]Value{}, parent: s} }

// ctrl is a break or continue travelling up to its loop.
type ctrl string

func (c ctrl) Error() string { return string(c) }

const (
	ctrlBreak    ctrl = "break"
	ctrlContinue ctrl = "continue"
)

type renderer struct {
	opts Options
}

func (r *renderer) exec(nodes []node, s *scope, b *strings.Builder) error {
	for _, n := range nodes {
		if err := r.execNode(n, s, b); err != nil {
			return err
		}
	}
	return nil
}

func (r *renderer) execNode(n node, s *scope, b *strings.Builder) error {
	switch n := n.(type) {
	case *textNode:
		b.WriteString(n.text)
	case *outputNode:
		v, err := r.eval(n.expr, s)
		if err != nil {
			return lineErr(n.line, err)
		}
		b.WriteString(str(v))
	case *ifNode:
		for i, c := range n.conds {
			v, err := r.eval(c, s)
			if err != nil {
				return err
			}
			if truthy(v) {
				return r.exec(n.bodies[i], s, b)
			}
		}
		if len(n.bodies) > len(n.conds) {
			return r.exec(n.bodies[len(n.conds)], s, b)
		}
	case *forNode:
		return r.execFor(n, s, b)
	case *setNode:
		return r.execSet(n, s)
	case *filterNode:
		return r.execFilter(n, s, b)
	case *macroNode:
		s.vars[n.name] = &Macro{node: n, scope: s}
	case *breakNode:
		return ctrlBreak
	case *continueNode:
		return ctrlContinue
	default:
		return fmt.Errorf("internal error: unknown node %T", n)
	}
	return nil
}

func (r *renderer) execSet(n *setNode, s *scope) error {
	var v Value
	if n.value != nil {
		var err error
		if v, err = r.eval(n.value, s); err != nil {
			return lineErr(n.line, err)
		}
	} else {
		var b strings.Builder
		if err := r.exec(n.body, s, &b); err != nil {
			return err
		}
		v = b.String()
	}
	switch t := n.target.(type) {
	case *nameExpr:
		s.vars[t.name] = v
	case *attrExpr:
		obj, _ := s.lookup(t.obj.(*nameExpr).name)
		d, ok := obj.(*Dict)
		if !ok || !d.namespace {
			return lineErr(n.line, fmt.Errorf("cannot set attribute %q: only namespace() objects have settable attributes", t.name))
		}
		d.Set(t.name, v)
	}
	return nil
}

// execFilter renders a filter block's body and writes it through the
// block's filters.
func (r *renderer) execFilter(n *filterNode, s *scope, b *strings.Builder) error {
	var body strings.Builder
	if err := r.exec(n.body, s, &body); err != nil {
		return err
	}
	in := s.child()
	in.vars[filterBodyName] = body.String()
	v, err := r.eval(n.chain, in)
	if err != nil {
		return lineErr(n.line, err)
	}
	b.WriteString(str(v))
	return nil
}

func (r *renderer) execFor(n *forNode, s *scope, b *strings.Builder) error {
	seq, err := r.eval(n.iter, s)
	if err != nil {
		return lineErr(n.line, err)
	}
	items, err := iterate(seq)
	if err != nil {
		return lineErr(n.line, err)
	}
	if n.filter != nil {
		var kept []Value
		for _, it := range items {
			inner := s.child()
			if err := bindLoopVars(inner, n.vars, it); err != nil {
				return lineErr(n.line, err)
			}
			ok, err := r.eval(n.filter, inner)
			if err != nil {
				return lineErr(n.line, err)
			}
			if truthy(ok) {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	if len(items) == 0 {
		return r.exec(n.elseBody, s, b)
	}
	// One loop object, updated for each iteration, as Jinja2's
	// LoopContext is.
	loop := &Dict{m: make(map[string]Value, 9)}
	for i, it := range items {
		inner := s.child()
		if err := bindLoopVars(inner, n.vars, it); err != nil {
			return lineErr(n.line, err)
		}
		setLoop(loop, items, i)
		inner.vars["loop"] = loop
		err := r.exec(n.body, inner, b)
		if err == ctrlBreak {
			break
		}
		if err != nil && err != ctrlContinue {
			return err
		}
	}
	return nil
}

func bindLoopVars(s *scope, vars []string, item Value) error {
	if len(vars) == 1 {
		s.vars[vars[0]] = item
		return nil
	}
	parts, ok := item.([]Value)
	if !ok || len(parts) != len(vars) {
		return fmt.Errorf("cannot unpack %s into %d loop variables", typeName(item), len(vars))
	}
	for i, name := range vars {
		s.vars[name] = parts[i]
	}
	return nil
}

// setLoop sets d to the "loop" variable of iteration i.
func setLoop(d *Dict, items []Value, i int) {
	n := len(items)
	d.Set("index", int64(i+1))
	d.Set("index0", int64(i))
	d.Set("revindex", int64(n-i))
	d.Set("revindex0", int64(n-i-1))
	d.Set("first", i == 0)
	d.Set("last", i == n-1)
	d.Set("length", int64(n))
	if i > 0 {
		d.Set("previtem", items[i-1])
	} else {
		d.Set("previtem", Undefined{"previtem"})
	}
	if i+1 < n {
		d.Set("nextitem", items[i+1])
	} else {
		d.Set("nextitem", Undefined{"nextitem"})
	}
}

// iterate returns the items a for loop visits: a list's elements, a
// dict's keys, a string's characters.
func iterate(v Value) ([]Value, error) {
	switch v := v.(type) {
	case []Value:
		return v, nil
	case *Dict:
		out := make([]Value, len(v.keys))
		for i, k := range v.keys {
			out[i] = v.key(k)
		}
		return out, nil
	case string:
		var out []Value
		for _, r := range v {
			out = append(out, string(r))
		}
		return out, nil
	case Undefined:
		return nil, nil // Jinja iterates an undefined value as empty
	}
	return nil, fmt.Errorf("'%s' object is not iterable", typeName(v))
}
