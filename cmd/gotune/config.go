package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gotune/gotune/engine/fsutil"
)

// Config files ("gotune train --config run.yaml"). A config file is a
// YAML (or JSON, which YAML reads) mapping whose keys are train's flag
// names, spelt with "-" or "_", or LLaMA-Factory's names for the same
// settings (configAliases). Each value is set through the flag set, so
// the flags' own parsing and the command's checks are the one place a
// value is validated; flags given on the command line win over the file.

// configFileName is the resolved configuration every run writes into its
// output folder (loadable again with --config).
const configFileName = "config.yaml"

// configAlias maps a LLaMA-Factory (Hugging Face TrainingArguments) key
// onto a flag, converting its value where the two spell it differently.
type configAlias struct {
	flag    string
	convert func(v string) (string, error) // nil: the value is the flag's
	// agree, when set, lets the file set the flag again through its
	// other spelling if the value is the same; a different value is an
	// error that ends with agree (what the disagreement would mean).
	agree string
}

// configAliases are the LLaMA-Factory keys that mean what a gotune flag
// means. Keys that are already a flag's name with "_" for "-" (seed,
// weight_decay, warmup_steps, warmup_ratio, max_grad_norm, use_dora,
// use_rslora, lora_alpha, lora_dropout, template, ...) need no entry.
var configAliases = map[string]configAlias{
	"model_name_or_path":          {flag: "model"},
	"finetuning_type":             {flag: "method", convert: convertFinetuningType},
	"lora_rank":                   {flag: "lora-r"},
	"lora_target":                 {flag: "lora-targets", convert: convertLoRATarget},
	"learning_rate":               {flag: "lr"},
	"num_train_epochs":            {flag: "epochs", convert: convertWholeNumber},
	"max_steps":                   {flag: "steps"},
	"per_device_train_batch_size": {flag: "batch-size"},
	"gradient_accumulation_steps": {flag: "grad-accum"},
	"cutoff_len":                  {flag: "seq-len"},
	"lr_scheduler_type":           {flag: "lr-schedule", convert: convertScheduler},
	"output_dir":                  {flag: "out"},
	"dataset":                     {flag: "dataset"},
	"eval_dataset":                {flag: "eval-data", convert: convertDataset},
	"eval_steps":                  {flag: "eval-every"},
	"save_steps":                  {flag: "save-every"},
	"logging_steps":               {flag: "log-every"},
	"resume_from_checkpoint":      {flag: "resume"},
	"gradient_checkpointing":      {flag: "grad-checkpoint"},
	"adam_epsilon":                {flag: "adam-eps"},
	"load_best_model_at_end":      {flag: "keep-best"},
	"early_stopping_steps":        {flag: "early-stopping-patience"},
	"bf16":                        {flag: "precision", convert: convertBF16},
	// LLaMA-Factory's neat_packing is gotune's packing; its packing
	// without neat_packing lets packed examples attend to each other,
	// which gotune does not do (a file's packing is gotune's flag).
	"neat_packing": {flag: "packing", agree: "LLaMA-Factory's packing without neat_packing lets packed examples attend to each other, which gotune does not do; gotune's packing is neat_packing"},
}

// configOnlyKeys are LLaMA-Factory keys that gotune accepts with the one
// value that describes what it always does.
var configOnlyKeys = map[string]string{
	"stage":     "sft",  // supervised fine-tuning is the only stage
	"do_train":  "true", // gotune train always trains
	"plot_loss": "true", // loss.png is always drawn
}

// notInConfig are train flags a config file may not set.
var notInConfig = map[string]string{
	"config":       "a config file cannot include another",
	"print-config": "give --print-config on the command line",
}

func convertFinetuningType(v string) (string, error) {
	if v == "lora" || v == "freeze" || v == "full" {
		return v, nil
	}
	return "", fmt.Errorf("%q is not supported (lora, freeze or full; gotune's other methods are --method values: %s)", v, methodNames())
}

func convertLoRATarget(v string) (string, error) {
	if v == "all" {
		return "all-linear", nil
	}
	return v, nil
}

// convertWholeNumber accepts "3" and "3.0" (LLaMA-Factory writes epochs
// as floats) but refuses fractional epochs, which gotune cannot train.
func convertWholeNumber(v string) (string, error) {
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || x != math.Trunc(x) || math.Abs(x) > math.MaxInt32 {
		return "", fmt.Errorf("want a whole number, got %q (fractional epochs are not supported; use --steps)", v)
	}
	return strconv.Itoa(int(x)), nil
}

func convertScheduler(v string) (string, error) {
	switch v {
	case "constant", "constant_with_warmup":
		return "constant", nil
	case "linear", "cosine":
		return v, nil
	}
	return "", fmt.Errorf("%q is not supported (linear, cosine, constant or constant_with_warmup)", v)
}

// convertDataset accepts a path to a data file (eval_dataset: an
// evaluation set from the registry is not read).
func convertDataset(v string) (string, error) {
	if _, err := os.Stat(v); err != nil {
		if strings.Contains(v, ",") {
			return "", fmt.Errorf("%q: one data file only (several datasets are not mixed)", v)
		}
		return "", fmt.Errorf("%q is not a file: gotune reads a data file path here (dataset_info.json names are read for dataset only)", v)
	}
	return v, nil
}

func convertBF16(v string) (string, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return "", fmt.Errorf("want true or false, got %q", v)
	}
	if b {
		return "bf16", nil
	}
	return "fp32", nil
}

// applyConfigFile sets the flags of fs from the config file at path,
// except those already set on the command line (fromCLI). Errors name the
// file and line: "run.yaml:7: unknown key ...".
func applyConfigFile(fs *flag.FlagSet, path string, fromCLI map[string]bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return yamlError(path, err)
	}
	if len(doc.Content) == 0 {
		return fmt.Errorf("%s: the config file is empty", path)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: want a mapping of settings (key: value), got %s", path, root.Line, nodeKind(root))
	}
	keyLine := map[string]int{}      // key as written → its line
	flagLine := map[string]int{}     // flag name → line of the key that set it
	flagValue := map[string]string{} // flag name → the value the file gave
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		at := fmt.Sprintf("%s:%d", path, k.Line)
		if line, dup := keyLine[k.Value]; dup {
			return fmt.Errorf("%s: duplicate key %q (first on line %d)", at, k.Value, line)
		}
		keyLine[k.Value] = k.Line
		name, value, err := resolveConfigEntry(fs, k.Value, v, fromCLI)
		if err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		if name == "" { // an accepted LLaMA-Factory key with nothing to set
			continue
		}
		if line, dup := flagLine[name]; dup {
			if err := checkRepeat(fs, name, k.Value, value, flagValue[name], line); err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
			continue
		}
		flagLine[name], flagValue[name] = k.Line, value
		if fromCLI[name] {
			continue
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("%s: %s: invalid value %q for --%s: %s", at, k.Value, value, name, flagWant(fs.Lookup(name), err))
		}
	}
	return nil
}

// checkRepeat accepts a key that sets flag name again when one of the two
// spellings is an alias with agree and both give the same value (as flag
// text, e.g. "true" and "True" for a bool).
func checkRepeat(fs *flag.FlagSet, name, key, value, first string, line int) error {
	var agree string
	for k, a := range configAliases {
		if a.flag == name && a.agree != "" && (k == key || strings.ReplaceAll(key, "_", "-") == name) {
			agree = a.agree
		}
	}
	if agree == "" {
		return fmt.Errorf("%q sets --%s again (first set on line %d)", key, name, line)
	}
	if sameFlagValue(fs.Lookup(name), value, first) {
		return nil
	}
	return fmt.Errorf("%s: %s disagrees with line %d, which set --%s to %s: %s", key, value, line, name, first, agree)
}

// sameFlagValue reports whether a and b are the same value of flag f.
func sameFlagValue(f *flag.Flag, a, b string) bool {
	if g, ok := f.Value.(flag.Getter); ok {
		if _, isBool := g.Get().(bool); isBool {
			x, errA := strconv.ParseBool(a)
			y, errB := strconv.ParseBool(b)
			return errA == nil && errB == nil && x == y
		}
	}
	return a == b
}

// resolveConfigEntry returns the flag a config key sets and the value to
// set it to ("" and "" for a key that sets nothing). A value is converted
// only when the command line does not override its flag (fromCLI).
func resolveConfigEntry(fs *flag.FlagSet, key string, v *yaml.Node, fromCLI map[string]bool) (name, value string, err error) {
	value, err = scalarValue(v)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", key, err)
	}
	if want, ok := configOnlyKeys[key]; ok {
		if value != want {
			return "", "", fmt.Errorf("%s: only %q is supported, got %q", key, want, value)
		}
		return "", "", nil
	}
	name = strings.ReplaceAll(key, "_", "-")
	if a, ok := configAliases[key]; ok {
		name = a.flag
		if a.convert != nil && !fromCLI[name] {
			if value, err = a.convert(value); err != nil {
				return "", "", fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	if why, ok := notInConfig[name]; ok {
		return "", "", fmt.Errorf("key %q is not allowed in a config file: %s", key, why)
	}
	if fs.Lookup(name) == nil {
		msg := fmt.Sprintf("unknown key %q", key)
		if s := suggestKey(fs, key); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return "", "", errors.New(msg)
	}
	return name, value, nil
}

// scalarValue returns a config value as flag text: a scalar as written, a
// list of scalars joined with commas (lora_target: [q_proj, v_proj]).
func scalarValue(v *yaml.Node) (string, error) {
	switch {
	case v.Kind == yaml.AliasNode:
		return scalarValue(v.Alias)
	case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
		return "", errors.New("no value")
	case v.Kind == yaml.ScalarNode:
		return v.Value, nil
	case v.Kind == yaml.SequenceNode:
		parts := make([]string, 0, len(v.Content))
		for _, c := range v.Content {
			if c.Kind != yaml.ScalarNode {
				return "", fmt.Errorf("want a list of single values, got a %s inside it", nodeKind(c))
			}
			parts = append(parts, c.Value)
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("want a single value, got a %s", nodeKind(v))
}

// flagWant explains what a flag accepts, for a value it refused: the
// flag package's own errors ("parse error") say only that it failed.
func flagWant(f *flag.Flag, err error) string {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return err.Error()
	}
	switch g.Get().(type) {
	case int, int64:
		return "want a whole number"
	case uint, uint64:
		return "want a non-negative whole number"
	case float64:
		return "want a number"
	case bool:
		return "want true or false"
	}
	return err.Error()
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	}
	return "YAML node"
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): (.*)$`)

// yamlError turns the YAML parser's error into "FILE:LINE: problem".
func yamlError(path string, err error) error {
	msg := strings.TrimSpace(err.Error())
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", path, m[1], m[2])
	}
	return fmt.Errorf("%s: %s", path, strings.TrimPrefix(msg, "yaml: "))
}

// suggestKey returns the accepted key closest to an unknown one, spelt
// in the key's style ("_" or "-"), or "" when none is close.
func suggestKey(fs *flag.FlagSet, key string) string {
	norm := func(s string) string { return strings.ReplaceAll(s, "_", "-") }
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if _, no := notInConfig[f.Name]; !no {
			names = append(names, f.Name)
		}
	})
	for a := range configAliases {
		names = append(names, a)
	}
	for k := range configOnlyKeys {
		names = append(names, k)
	}
	slices.Sort(names)
	best, bestDist := "", len(key)/2+1 // farther than this is not a typo
	for _, n := range names {
		if d := editDistance(norm(key), norm(n)); d < bestDist {
			best, bestDist = n, d
		}
	}
	if strings.Contains(key, "_") || !strings.Contains(key, "-") && strings.Contains(best, "_") {
		return strings.ReplaceAll(best, "-", "_")
	}
	return norm(best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// writeResolvedConfig writes every flag of fs as "name: value" in YAML
// (the run as resolved from defaults, --config and the command line),
// leaving out skip and the flags that only steer the command itself;
// effective replaces a flag's value with the one the run used (--seq-len
// capped at the model's length).
func writeResolvedConfig(w io.Writer, fs *flag.FlagSet, skip map[string]bool, effective map[string]any) error {
	var buf bytes.Buffer
	fmt.Fprintln(&buf, "# gotune train: the resolved run (defaults < --config < command line); reload with --config")
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if _, no := notInConfig[f.Name]; no || skip[f.Name] || err != nil {
			return
		}
		var v any = f.Value.String()
		if g, ok := f.Value.(flag.Getter); ok {
			v = g.Get()
		}
		if e, ok := effective[f.Name]; ok {
			v = e
		}
		var b []byte
		if b, err = yaml.Marshal(v); err == nil {
			fmt.Fprintf(&buf, "%s: %s", f.Name, b)
		}
	})
	if err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// saveResolvedConfig writes the resolved run into out/config.yaml.
func saveResolvedConfig(out string, fs *flag.FlagSet, skip map[string]bool, effective map[string]any) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	return fsutil.WriteFileAtomic(filepath.Join(out, configFileName), 0o644, func(w io.Writer) error {
		return writeResolvedConfig(w, fs, skip, effective)
	})
}
