// Package kernelgen reads the kernel contract — kernels/kernels.def (every
// kernel's name, launch rule and C parameter list) and kernels/launch.cuh
// (threads, tile sizes, shared-memory bytes) — and writes the CUDA
// backend's Go side of it: the kernel enum, the table the backend loads
// the kernels from, one typed launcher per kernel (or per family of
// head-dimension variants), and the launch constants. `go generate ./cuda`
// runs it (see cmd/kernelgen); a test in package cuda fails when the
// committed output is stale.
package kernelgen

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// ParamKind is how a kernel parameter is marshalled.
type ParamKind byte

const (
	// KindPtr is a device pointer (CUdeviceptr, 8 bytes).
	KindPtr ParamKind = 'p'
	// KindInt is a C int (int32).
	KindInt ParamKind = 'i'
	// KindFloat is a C float (float32).
	KindFloat ParamKind = 'f'
	// KindU64 is a C unsigned long long (uint64): a 64-bit seed.
	KindU64 ParamKind = 'u'
)

// Param is one parameter of a kernel.
type Param struct {
	// CType is the C type as written in kernels.def, e.g. "const void*".
	CType string
	// Name is the C parameter name.
	Name string
	// Kind is how it is marshalled.
	Kind ParamKind
}

// Kernel is one GT_KERNEL line of kernels.def.
type Kernel struct {
	// Name is the extern "C" entry point, e.g. "gt_gemm_bf16".
	Name string
	// Rule names the launch configuration (kernels/README.md).
	Rule string
	// Params are the C parameters in order.
	Params []Param
	// Doc is the comment block directly above the line, without "// ".
	Doc []string
	// Line is the 1-based line number in kernels.def.
	Line int
}

// Define is one #define of launch.cuh.
type Define struct {
	// Name is the macro name, e.g. "GT_GEMM_BF16_SMEM".
	Name string
	// Args are a function-like macro's parameters (nil for a constant).
	Args []string
	// Expr is the replacement expression.
	Expr string
	// Doc is the comment block directly above the define.
	Doc []string
	// Line is the 1-based line number in launch.cuh.
	Line int
}

var (
	kernelLine = regexp.MustCompile(`^GT_KERNEL\(\s*(gt_[a-z0-9_]+)\s*,\s*([A-Z0-9_]+)\s*,\s*\((.*)\)\s*\)\s*$`)
	paramDecl  = regexp.MustCompile(`^((?:const\s+)?(?:void|float|int)\s*\*?|unsigned\s+long\s+long)\s*([A-Za-z_][A-Za-z0-9_]*)$`)
	defineLine = regexp.MustCompile(`^#define\s+(GT_[A-Z0-9_]+)(\(([A-Z_, ]*)\))?\s+(.+?)\s*(//.*)?$`)
	exprToken  = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[-+*/%(),])`)
)

// ParseDef parses kernels.def.
func ParseDef(src []byte) ([]Kernel, error) {
	var out []Kernel
	var doc []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "// ----"): // a section heading, not a kernel's doc
			doc = nil
			continue
		case strings.HasPrefix(line, "//"):
			doc = append(doc, strings.TrimSpace(strings.TrimPrefix(line, "//")))
			continue
		case line == "":
			doc = nil
			continue
		}
		m := kernelLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("kernels.def:%d: not a GT_KERNEL(name, RULE, (params)) line: %q", n, line)
		}
		if seen[m[1]] {
			return nil, fmt.Errorf("kernels.def:%d: kernel %s listed twice", n, m[1])
		}
		seen[m[1]] = true
		params, err := parseParams(m[3])
		if err != nil {
			return nil, fmt.Errorf("kernels.def:%d: %s: %w", n, m[1], err)
		}
		out = append(out, Kernel{Name: m[1], Rule: m[2], Params: params, Doc: doc, Line: n})
		doc = nil
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kernels.def: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("kernels.def: no kernels")
	}
	return out, nil
}

// parseParams splits a C parameter list into typed parameters.
func parseParams(list string) ([]Param, error) {
	var out []Param
	names := map[string]bool{}
	for _, decl := range strings.Split(list, ",") {
		decl = strings.TrimSpace(decl)
		m := paramDecl.FindStringSubmatch(decl)
		if m == nil {
			return nil, fmt.Errorf("parameter %q: want a pointer, int, float or unsigned long long", decl)
		}
		ctype := strings.Join(strings.Fields(strings.ReplaceAll(m[1], "*", " *")), " ")
		ctype = strings.ReplaceAll(ctype, " *", "*")
		p := Param{CType: ctype, Name: m[2]}
		switch {
		case strings.HasSuffix(ctype, "*"):
			p.Kind = KindPtr
		case ctype == "int":
			p.Kind = KindInt
		case ctype == "float":
			p.Kind = KindFloat
		case ctype == "unsigned long long":
			p.Kind = KindU64
		default:
			return nil, fmt.Errorf("parameter %q: unsupported type %q", decl, ctype)
		}
		if names[p.Name] {
			return nil, fmt.Errorf("parameter %q named twice", p.Name)
		}
		names[p.Name] = true
		out = append(out, p)
	}
	return out, nil
}

// ParseLaunch parses launch.cuh's defines, checking that every expression
// uses only the restricted syntax the header documents (so the Go
// translation means the same as the C).
func ParseLaunch(src []byte) ([]Define, error) {
	var out []Define
	var doc []string
	known := map[string]*Define{}
	sc := bufio.NewScanner(bytes.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "// ----"):
			doc = nil
			continue
		case strings.HasPrefix(line, "//"):
			doc = append(doc, strings.TrimSpace(strings.TrimPrefix(line, "//")))
			continue
		case line == "" || strings.HasPrefix(line, "#ifndef") || strings.HasPrefix(line, "#endif"):
			doc = nil
			continue
		case strings.HasPrefix(line, "#define GOTUNE_"): // the include guard
			doc = nil
			continue
		}
		m := defineLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("launch.cuh:%d: not a `#define GT_NAME expr` line: %q", n, line)
		}
		d := Define{Name: m[1], Expr: m[4], Doc: doc, Line: n}
		if m[2] != "" {
			for _, a := range strings.Split(m[3], ",") {
				d.Args = append(d.Args, strings.TrimSpace(a))
			}
		}
		if known[d.Name] != nil {
			return nil, fmt.Errorf("launch.cuh:%d: %s defined twice", n, d.Name)
		}
		if err := checkExpr(d, known); err != nil {
			return nil, fmt.Errorf("launch.cuh:%d: %s: %w", n, d.Name, err)
		}
		out = append(out, d)
		known[d.Name] = &out[len(out)-1]
		doc = nil
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("launch.cuh: %w", err)
	}
	return out, nil
}

// checkExpr accepts integer literals, earlier GT_ names, the macro's own
// parameters, + - * / % ( ) and commas (inside calls of function-like
// macros). A constant may not call a function-like macro, since a Go
// constant cannot call a function.
func checkExpr(d Define, known map[string]*Define) error {
	args := map[string]bool{}
	for _, a := range d.Args {
		args[a] = true
	}
	rest := d.Expr
	for strings.TrimSpace(rest) != "" {
		m := exprToken.FindStringSubmatch(rest)
		if m == nil {
			return fmt.Errorf("unsupported syntax at %q (only integers, GT_ names, parameters, + - * / %% and parentheses)", strings.TrimSpace(rest))
		}
		tok := m[1]
		rest = rest[len(m[0]):]
		if !isIdent(tok) {
			continue
		}
		switch ref := known[tok]; {
		case args[tok]:
		case ref == nil:
			return fmt.Errorf("%s is not a parameter or an earlier GT_ define", tok)
		case ref.Args != nil && d.Args == nil:
			return fmt.Errorf("a constant cannot use the function-like %s", tok)
		}
	}
	return nil
}

func isIdent(tok string) bool {
	c := tok[0]
	return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
}
