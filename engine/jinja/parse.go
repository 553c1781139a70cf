package jinja

import (
	"fmt"
	"strconv"
	"strings"
)

// node is a statement of a parsed template.
type node interface{}

type (
	textNode   struct{ text string }
	outputNode struct {
		expr expr
		line int
	}
	ifNode struct {
		conds  []expr
		bodies [][]node // one per cond, plus the else body when len > len(conds)
	}
	forNode struct {
		vars     []string
		iter     expr
		filter   expr // optional "if" clause
		body     []node
		elseBody []node
		line     int
	}
	setNode struct {
		target expr // a name or ns.attr
		value  expr // nil for a block set
		body   []node
		line   int
	}
	macroNode struct {
		name     string
		params   []string
		defaults []expr // parallel to params; nil where none
		body     []node
	}
	// filterNode is {% filter f(args) | g %}body{% endfilter %}: the
	// rendered body, bound to filterBodyName, through the chain.
	filterNode struct {
		chain expr
		body  []node
		line  int
	}
	// breakNode and continueNode are the loopcontrols extension.
	breakNode    struct{}
	continueNode struct{}
)

// expr is an expression node.
type expr interface{}

type (
	literal  struct{ v Value }
	nameExpr struct{ name string }
	listExpr struct{ items []expr }
	dictExpr struct{ keys, values []expr }
	attrExpr struct {
		obj  expr
		name string
	}
	indexExpr struct{ obj, index expr }
	sliceExpr struct{ obj, start, stop, step expr }
	callExpr  struct {
		fn     expr
		args   []expr
		kwargs []kwarg
	}
	filterExpr struct {
		name   string
		arg    expr // the value filtered
		args   []expr
		kwargs []kwarg
	}
	testExpr struct {
		name   string
		arg    expr
		args   []expr
		negate bool
	}
	binExpr struct {
		op   string
		l, r expr
	}
	notExpr  struct{ x expr }
	negExpr  struct{ x expr }
	condExpr struct{ cond, yes, no expr }
)

type kwarg struct {
	name  string
	value expr
}

// parser turns segments into nodes.
type parser struct {
	segs []segment
	pos  int
}

// tagParser reads the tokens of one tag.
type tagParser struct {
	toks []token
	pos  int
}

func (p *tagParser) peek() token { return p.toks[p.pos] }
func (p *tagParser) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEOF {
		p.pos++
	}
	return t
}
func (p *tagParser) isOp(op string) bool {
	t := p.peek()
	return t.kind == tokOp && t.text == op
}
func (p *tagParser) isName(n string) bool {
	t := p.peek()
	return t.kind == tokName && t.text == n
}
func (p *tagParser) acceptOp(op string) bool {
	if p.isOp(op) {
		p.pos++
		return true
	}
	return false
}
func (p *tagParser) acceptName(n string) bool {
	if p.isName(n) {
		p.pos++
		return true
	}
	return false
}
func (p *tagParser) expectOp(op string) error {
	if !p.acceptOp(op) {
		return fmt.Errorf("expected %q, found %s", op, describe(p.peek()))
	}
	return nil
}
func (p *tagParser) expectName() (string, error) {
	t := p.next()
	if t.kind != tokName {
		return "", fmt.Errorf("expected a name, found %s", describe(t))
	}
	return t.text, nil
}
func (p *tagParser) end() error {
	if t := p.peek(); t.kind != tokEOF {
		return fmt.Errorf("unexpected %s", describe(t))
	}
	return nil
}

func describe(t token) string {
	switch t.kind {
	case tokEOF:
		return "end of tag"
	case tokString:
		return strconv.Quote(t.text)
	}
	return "'" + t.text + "'"
}

// parseBody parses nodes until a block tag whose first word is one of
// ends (returned with its parser positioned after the word) or, when ends
// is empty, the end of the template.
func (p *parser) parseBody(ends ...string) ([]node, string, *tagParser, error) {
	var body []node
	for p.pos < len(p.segs) {
		seg := p.segs[p.pos]
		p.pos++
		switch seg.kind {
		case segText:
			body = append(body, &textNode{seg.text})
		case segOutput:
			tp, err := newTagParser(seg)
			if err != nil {
				return nil, "", nil, err
			}
			e, err := tp.parseExpr()
			if err == nil {
				err = tp.end()
			}
			if err != nil {
				return nil, "", nil, lineErr(seg.line, err)
			}
			body = append(body, &outputNode{e, seg.line})
		case segBlock:
			tp, err := newTagParser(seg)
			if err != nil {
				return nil, "", nil, err
			}
			word, err := tp.expectName()
			if err != nil {
				return nil, "", nil, lineErr(seg.line, err)
			}
			for _, e := range ends {
				if word == e {
					return body, word, tp, nil
				}
			}
			n, err := p.parseStatement(word, tp, seg.line)
			if err != nil {
				return nil, "", nil, err
			}
			if n != nil {
				body = append(body, n)
			}
		}
	}
	if len(ends) > 0 {
		return nil, "", nil, fmt.Errorf("unexpected end of template: expected {%% %s %%}", strings.Join(ends, " %} or {% "))
	}
	return body, "", nil, nil
}

func newTagParser(seg segment) (*tagParser, error) {
	toks, err := tokenize(seg.text)
	if err != nil {
		return nil, lineErr(seg.line, err)
	}
	return &tagParser{toks: toks}, nil
}

func lineErr(line int, err error) error { return fmt.Errorf("line %d: %w", line, err) }

// parseStatement parses the block tag starting with word.
func (p *parser) parseStatement(word string, tp *tagParser, line int) (node, error) {
	wrap := func(err error) error {
		if err != nil && !strings.HasPrefix(err.Error(), "line ") {
			return lineErr(line, err)
		}
		return err
	}
	switch word {
	case "if":
		n, err := p.parseIf(tp)
		return n, wrap(err)
	case "for":
		n, err := p.parseFor(tp, line)
		return n, wrap(err)
	case "set":
		n, err := p.parseSet(tp, line)
		return n, wrap(err)
	case "macro":
		n, err := p.parseMacro(tp)
		return n, wrap(err)
	case "filter":
		n, err := p.parseFilterBlock(tp, line)
		return n, wrap(err)
	case "break":
		return &breakNode{}, wrap(tp.end())
	case "continue":
		return &continueNode{}, wrap(tp.end())
	case "generation":
		// transformers' {% generation %} marks assistant text for its
		// assistant mask; it renders its body unchanged.
		if err := tp.end(); err != nil {
			return nil, wrap(err)
		}
		body, _, _, err := p.parseBody("endgeneration")
		return &ifNode{conds: []expr{&literal{true}}, bodies: [][]node{body}}, wrap(err)
	}
	return nil, lineErr(line, fmt.Errorf("unknown tag {%% %s %%}", word))
}

func (p *parser) parseIf(tp *tagParser) (node, error) {
	n := &ifNode{}
	for {
		cond, err := tp.parseExpr()
		if err == nil {
			err = tp.end()
		}
		if err != nil {
			return nil, err
		}
		body, word, next, err := p.parseBody("elif", "else", "endif")
		if err != nil {
			return nil, err
		}
		n.conds = append(n.conds, cond)
		n.bodies = append(n.bodies, body)
		switch word {
		case "elif":
			tp = next
			continue
		case "else":
			if err := next.end(); err != nil {
				return nil, err
			}
			body, _, next, err := p.parseBody("endif")
			if err != nil {
				return nil, err
			}
			n.bodies = append(n.bodies, body)
			return n, next.end()
		}
		return n, next.end()
	}
}

func (p *parser) parseFor(tp *tagParser, line int) (node, error) {
	n := &forNode{line: line}
	for {
		name, err := tp.expectName()
		if err != nil {
			return nil, err
		}
		n.vars = append(n.vars, name)
		if !tp.acceptOp(",") {
			break
		}
	}
	if !tp.acceptName("in") {
		return nil, fmt.Errorf("expected 'in' in for loop, found %s", describe(tp.peek()))
	}
	var err error
	if n.iter, err = tp.parseCondless(); err != nil {
		return nil, err
	}
	if tp.acceptName("if") {
		if n.filter, err = tp.parseCondless(); err != nil {
			return nil, err
		}
	}
	if tp.acceptName("recursive") {
		return nil, fmt.Errorf("recursive loops are not supported")
	}
	if err := tp.end(); err != nil {
		return nil, err
	}
	body, word, next, err := p.parseBody("else", "endfor")
	if err != nil {
		return nil, err
	}
	n.body = body
	if word == "else" {
		if err := next.end(); err != nil {
			return nil, err
		}
		if n.elseBody, _, next, err = p.parseBody("endfor"); err != nil {
			return nil, err
		}
	}
	return n, next.end()
}

func (p *parser) parseSet(tp *tagParser, line int) (node, error) {
	name, err := tp.expectName()
	if err != nil {
		return nil, err
	}
	n := &setNode{target: &nameExpr{name}, line: line}
	if tp.acceptOp(".") {
		attr, err := tp.expectName()
		if err != nil {
			return nil, err
		}
		n.target = &attrExpr{&nameExpr{name}, attr}
	}
	if tp.acceptOp("=") {
		if n.value, err = tp.parseExpr(); err != nil {
			return nil, err
		}
		return n, tp.end()
	}
	if err := tp.end(); err != nil {
		return nil, err
	}
	body, _, next, err := p.parseBody("endset")
	if err != nil {
		return nil, err
	}
	n.body = body
	return n, next.end()
}

// filterBodyName is the variable a filter block's chain reads its
// rendered body from (a name no template can write).
const filterBodyName = "filter block body"

// parseFilterBlock parses "{% filter f(args) | g ... %}" and its body.
func (p *parser) parseFilterBlock(tp *tagParser, line int) (node, error) {
	name, err := tp.expectName()
	if err != nil {
		return nil, err
	}
	f := &filterExpr{name: name, arg: &nameExpr{filterBodyName}}
	if tp.acceptOp("(") {
		if f.args, f.kwargs, err = tp.parseArgs(); err != nil {
			return nil, err
		}
	}
	n := &filterNode{line: line}
	if n.chain, err = tp.parseFilters(f); err != nil {
		return nil, err
	}
	if err := tp.end(); err != nil {
		return nil, err
	}
	body, _, next, err := p.parseBody("endfilter")
	if err != nil {
		return nil, err
	}
	n.body = body
	return n, next.end()
}

func (p *parser) parseMacro(tp *tagParser) (node, error) {
	name, err := tp.expectName()
	if err != nil {
		return nil, err
	}
	n := &macroNode{name: name}
	if err := tp.expectOp("("); err != nil {
		return nil, err
	}
	for !tp.acceptOp(")") {
		param, err := tp.expectName()
		if err != nil {
			return nil, err
		}
		var def expr
		if tp.acceptOp("=") {
			if def, err = tp.parseExpr(); err != nil {
				return nil, err
			}
		}
		n.params = append(n.params, param)
		n.defaults = append(n.defaults, def)
		if !tp.acceptOp(",") {
			if err := tp.expectOp(")"); err != nil {
				return nil, err
			}
			break
		}
	}
	if err := tp.end(); err != nil {
		return nil, err
	}
	body, _, next, err := p.parseBody("endmacro")
	if err != nil {
		return nil, err
	}
	n.body = body
	return n, next.end()
}

// Expressions, lowest precedence first (Jinja's grammar).

func (p *tagParser) parseExpr() (expr, error) {
	x, err := p.parseCondless()
	if err != nil {
		return nil, err
	}
	for p.acceptName("if") {
		cond, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		var no expr = &literal{Undefined{}}
		if p.acceptName("else") {
			if no, err = p.parseExpr(); err != nil {
				return nil, err
			}
		}
		x = &condExpr{cond, x, no}
	}
	return x, nil
}

// parseCondless is an expression without a trailing "x if c else y" (for
// loops use "if" as their filter).
func (p *tagParser) parseCondless() (expr, error) { return p.parseOr() }

func (p *tagParser) parseOr() (expr, error) {
	return p.parseLeftAssoc(p.parseAnd, "or")
}

func (p *tagParser) parseAnd() (expr, error) {
	return p.parseLeftAssoc(p.parseNot, "and")
}

func (p *tagParser) parseLeftAssoc(sub func() (expr, error), word string) (expr, error) {
	x, err := sub()
	if err != nil {
		return nil, err
	}
	for p.acceptName(word) {
		y, err := sub()
		if err != nil {
			return nil, err
		}
		x = &binExpr{word, x, y}
	}
	return x, nil
}

func (p *tagParser) parseNot() (expr, error) {
	if p.acceptName("not") {
		x, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return &notExpr{x}, nil
	}
	return p.parseCompare()
}

var compareOps = map[string]bool{"==": true, "!=": true, "<": true, ">": true, "<=": true, ">=": true}

func (p *tagParser) parseCompare() (expr, error) {
	x, err := p.parseMath1()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		var op string
		switch {
		case t.kind == tokOp && compareOps[t.text]:
			op = t.text
			p.pos++
		case p.isName("in"):
			op = "in"
			p.pos++
		case p.isName("not") && p.toks[p.pos+1].kind == tokName && p.toks[p.pos+1].text == "in":
			op = "not in"
			p.pos += 2
		default:
			return x, nil
		}
		y, err := p.parseMath1()
		if err != nil {
			return nil, err
		}
		x = &binExpr{op, x, y}
	}
}

func (p *tagParser) parseMath1() (expr, error) {
	x, err := p.parseConcat()
	if err != nil {
		return nil, err
	}
	for p.isOp("+") || p.isOp("-") {
		op := p.next().text
		y, err := p.parseConcat()
		if err != nil {
			return nil, err
		}
		x = &binExpr{op, x, y}
	}
	return x, nil
}

func (p *tagParser) parseConcat() (expr, error) {
	x, err := p.parseMath2()
	if err != nil {
		return nil, err
	}
	for p.acceptOp("~") {
		y, err := p.parseMath2()
		if err != nil {
			return nil, err
		}
		x = &binExpr{"~", x, y}
	}
	return x, nil
}

func (p *tagParser) parseMath2() (expr, error) {
	x, err := p.parsePow()
	if err != nil {
		return nil, err
	}
	for p.isOp("*") || p.isOp("/") || p.isOp("//") || p.isOp("%") {
		op := p.next().text
		y, err := p.parsePow()
		if err != nil {
			return nil, err
		}
		x = &binExpr{op, x, y}
	}
	return x, nil
}

func (p *tagParser) parsePow() (expr, error) {
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for p.acceptOp("**") {
		y, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		x = &binExpr{"**", x, y}
	}
	return x, nil
}

func (p *tagParser) parseUnary() (expr, error) {
	switch {
	case p.acceptOp("-"):
		x, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return &negExpr{x}, nil
	case p.acceptOp("+"):
		return p.parseUnary()
	}
	x, err := p.parsePrimary()
	if err != nil {
		return nil, err
	}
	if x, err = p.parsePostfix(x); err != nil {
		return nil, err
	}
	return p.parseFilters(x)
}

func (p *tagParser) parsePrimary() (expr, error) {
	t := p.next()
	switch t.kind {
	case tokString:
		s := t.text
		for p.peek().kind == tokString { // adjacent literals concatenate
			s += p.next().text
		}
		return &literal{s}, nil
	case tokInt:
		n, err := strconv.ParseInt(t.text, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad integer %s", t.text)
		}
		return &literal{n}, nil
	case tokFloat:
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, fmt.Errorf("bad number %s", t.text)
		}
		return &literal{f}, nil
	case tokName:
		switch t.text {
		case "true", "True":
			return &literal{true}, nil
		case "false", "False":
			return &literal{false}, nil
		case "none", "None":
			return &literal{nil}, nil
		}
		return &nameExpr{t.text}, nil
	case tokOp:
		switch t.text {
		case "(":
			x, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			if p.acceptOp(",") { // a tuple: a list here
				items := []expr{x}
				for !p.isOp(")") {
					y, err := p.parseExpr()
					if err != nil {
						return nil, err
					}
					items = append(items, y)
					if !p.acceptOp(",") {
						break
					}
				}
				x = &listExpr{items}
			}
			return x, p.expectOp(")")
		case "[":
			items, err := p.parseList("]")
			return &listExpr{items}, err
		case "{":
			d := &dictExpr{}
			for !p.acceptOp("}") {
				k, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				if err := p.expectOp(":"); err != nil {
					return nil, err
				}
				v, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				d.keys, d.values = append(d.keys, k), append(d.values, v)
				if !p.acceptOp(",") {
					if err := p.expectOp("}"); err != nil {
						return nil, err
					}
					break
				}
			}
			return d, nil
		}
	}
	return nil, fmt.Errorf("unexpected %s", describe(t))
}

// parseList parses comma-separated expressions up to the closer.
func (p *tagParser) parseList(closer string) ([]expr, error) {
	var items []expr
	for !p.acceptOp(closer) {
		x, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		items = append(items, x)
		if !p.acceptOp(",") {
			if err := p.expectOp(closer); err != nil {
				return nil, err
			}
			break
		}
	}
	return items, nil
}

func (p *tagParser) parsePostfix(x expr) (expr, error) {
	for {
		switch {
		case p.acceptOp("."):
			t := p.next()
			if t.kind != tokName && t.kind != tokInt {
				return nil, fmt.Errorf("expected an attribute name after '.', found %s", describe(t))
			}
			x = &attrExpr{x, t.text}
		case p.acceptOp("["):
			var err error
			if x, err = p.parseSubscript(x); err != nil {
				return nil, err
			}
		case p.acceptOp("("):
			args, kwargs, err := p.parseArgs()
			if err != nil {
				return nil, err
			}
			x = &callExpr{x, args, kwargs}
		default:
			return x, nil
		}
	}
}

func (p *tagParser) parseSubscript(x expr) (expr, error) {
	var parts [3]expr
	n := 0
	for {
		if !p.isOp(":") && !p.isOp("]") {
			e, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			parts[n] = e
		}
		if p.acceptOp("]") {
			break
		}
		if err := p.expectOp(":"); err != nil {
			return nil, err
		}
		if n++; n > 2 {
			return nil, fmt.Errorf("too many ':' in a slice")
		}
	}
	if n == 0 {
		if parts[0] == nil {
			return nil, fmt.Errorf("empty subscript")
		}
		return &indexExpr{x, parts[0]}, nil
	}
	return &sliceExpr{x, parts[0], parts[1], parts[2]}, nil
}

// parseArgs parses call arguments after "(".
func (p *tagParser) parseArgs() ([]expr, []kwarg, error) {
	var args []expr
	var kwargs []kwarg
	for !p.acceptOp(")") {
		if p.peek().kind == tokName && p.toks[p.pos+1].kind == tokOp && p.toks[p.pos+1].text == "=" {
			name := p.next().text
			p.next()
			v, err := p.parseExpr()
			if err != nil {
				return nil, nil, err
			}
			kwargs = append(kwargs, kwarg{name, v})
		} else {
			v, err := p.parseExpr()
			if err != nil {
				return nil, nil, err
			}
			args = append(args, v)
		}
		if !p.acceptOp(",") {
			if err := p.expectOp(")"); err != nil {
				return nil, nil, err
			}
			break
		}
	}
	return args, kwargs, nil
}

// parseFilters parses "| filter(args)" and "is [not] test" after a value.
func (p *tagParser) parseFilters(x expr) (expr, error) {
	for {
		switch {
		case p.acceptOp("|"):
			name, err := p.expectName()
			if err != nil {
				return nil, err
			}
			f := &filterExpr{name: name, arg: x}
			if p.acceptOp("(") {
				if f.args, f.kwargs, err = p.parseArgs(); err != nil {
					return nil, err
				}
			}
			x = f
		case p.acceptName("is"):
			t := &testExpr{arg: x, negate: p.acceptName("not")}
			tok := p.next()
			if tok.kind != tokName {
				return nil, fmt.Errorf("expected a test name after 'is', found %s", describe(tok))
			}
			t.name = tok.text
			if p.acceptOp("(") {
				args, _, err := p.parseArgs()
				if err != nil {
					return nil, err
				}
				t.args = args
			} else if k := p.peek(); k.kind == tokString || k.kind == tokInt || k.kind == tokFloat {
				arg, err := p.parsePrimary()
				if err != nil {
					return nil, err
				}
				t.args = []expr{arg}
			}
			x = t
		default:
			return x, nil
		}
	}
}
