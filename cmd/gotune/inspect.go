package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/inspect"
)

func init() {
	register(&command{
		Name:    "inspect",
		Summary: "describe a model folder, adapter, checkpoint, GGUF or llama2.c file",
		Run:     runInspect,
	})
}

const inspectDescription = `
Describes PATH without loading its weights: the kind (detected from the
content: a Hugging Face model folder, a PEFT adapter folder, a
checkpoint-<step> folder of "gotune train --save-every", a GGUF file, a
llama2.c checkpoint), the architecture, parameter counts (for an adapter
the trainable share, when its base_model_name_or_path is a local
folder), the dtypes they are stored in, the size on disk and the
configuration that matters. --tensors adds the tensor table; --json
prints everything as one JSON object.`

var kindNames = map[string]string{
	inspect.KindModel:      "Hugging Face model",
	inspect.KindAdapter:    "PEFT adapter",
	inspect.KindCheckpoint: "training checkpoint",
	inspect.KindGGUF:       "GGUF file",
	inspect.KindLlama2C:    "llama2.c checkpoint",
}

func runInspect(ctx context.Context, e *env, args []string) error {
	var tensors, asJSON bool
	fs := newFlagSet("inspect", "gotune inspect [--tensors] [--json] PATH", inspectDescription)
	fs.BoolVar(&tensors, "tensors", false, "list every tensor (name, dtype, shape)")
	fs.BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	// PATH may come before or after the flags (all of them booleans).
	var paths, flags []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
		} else {
			paths = append(paths, a)
		}
	}
	if err := parseFlags(fs, flags, e); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if len(paths) != 1 {
		return &usageError{msg: fmt.Sprintf("want exactly one PATH, got %d", len(paths))}
	}
	r, err := inspect.Inspect(paths[0])
	if err != nil {
		return err
	}
	if !tensors {
		r.Tensors = nil
		if r.Inner != nil {
			r.Inner.Tensors = nil
		}
	}
	if asJSON {
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printReport(e.Stdout, r)
	return nil
}

// printReport writes the human-readable form of r.
func printReport(w io.Writer, r *inspect.Report) {
	fmt.Fprintf(w, "%s: %s, %s\n", r.Path, kindNames[r.Kind], r.Architecture)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "parameters\t%s\n", groupDigits(r.Parameters))
	if r.BaseParameters > 0 {
		fmt.Fprintf(tw, "trainable\t%s of %s (%.4f%%)\n", groupDigits(r.Parameters), groupDigits(r.Parameters+r.BaseParameters), 100*r.TrainableShare)
	}
	fmt.Fprintf(tw, "dtypes\t%s\n", dtypeLine(r.DTypes))
	fmt.Fprintf(tw, "size on disk\t%s in %d files\n", engine.FormatMiB(uint64(r.SizeBytes)), r.Files)
	for _, s := range r.Config {
		fmt.Fprintf(tw, "  %s\t%s\n", s.Key, s.Value)
	}
	tw.Flush()
	if len(r.Tensors) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "tensor\tdtype\tshape")
		for _, t := range r.Tensors {
			dims := make([]string, len(t.Shape))
			for i, d := range t.Shape {
				dims[i] = strconv.FormatInt(d, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t[%s]\n", t.Name, t.DType, strings.Join(dims, ", "))
		}
		tw.Flush()
	}
}

// dtypeLine lists the dtypes with their parameter counts, largest first.
func dtypeLine(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + groupDigits(m[k])
	}
	return strings.Join(parts, ", ")
}

// groupDigits writes n with thousands separators (820,736), as PEFT's
// print_trainable_parameters does.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
