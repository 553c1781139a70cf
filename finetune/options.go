package finetune

import (
	"fmt"
	"slices"

	"github.com/gotune/gotune/engine/fielderr"
)

// Options are named by their field path in JobOptions ("BatchSize",
// "LoRA.Rank", "Data.EvalEvery", ...). Errors and messages about an
// option name it through Names, so a caller that exposes the options
// under other names (the gotune CLI: "--batch-size", "--lora-r") gets
// messages in its own terms without the library knowing them.

// Names maps an option's field path to the name messages use for it
// (nil, or a path it lacks: the field path itself).
type Names map[string]string

// Of returns the name of option in messages.
func (n Names) Of(option string) string {
	if s, ok := n[option]; ok {
		return s
	}
	return option
}

// OptionError is a wrong option value: the caller's mistake (the CLI
// prints it with a hint to run --help). Option is the field path.
type OptionError struct {
	Option string
	Msg    string // the whole message, naming the option through Names
}

func (e *OptionError) Error() string { return e.Msg }

// optionErrorf returns an *OptionError about option, formatted.
func optionErrorf(option, format string, args ...any) *OptionError {
	return &OptionError{Option: option, Msg: fmt.Sprintf(format, args...)}
}

// FieldOptionError turns the *fielderr.Error in err (a wrong field of a
// struct the options fill: train.Config, lora.Config, ...) into an
// *OptionError about option path(field), its message naming every option
// through names; any other error is returned as it is.
func FieldOptionError(err error, path func(field string) string, names Names) error {
	fe, ok := fielderr.As(err)
	if !ok {
		return err
	}
	fe = fe.Map(path)
	return &OptionError{Option: fe.Field, Msg: fe.Message(names.Of)}
}

// TrainOption returns the option that sets train.Config's field: the
// field under Train, but for the fields Run sets from other options
// (EvalEvery, OutDir, Precision). It also maps "Resume", which
// train.Options.Name names besides the fields.
func TrainOption(field string) string {
	switch field {
	case "EvalEvery":
		return "Data.EvalEvery"
	case "OutDir":
		return "Out"
	case "Precision", "Resume":
		return field
	}
	return "Train." + field
}

// optionsOf returns the option of each field of a struct the options
// under prefix fill: prefix.field, or the option renames names for it.
func optionsOf(prefix string, renames map[string]string) func(field string) string {
	return func(field string) string {
		if opt, ok := renames[field]; ok {
			return opt
		}
		return prefix + "." + field
	}
}

// Explicit is the set of options (field paths) the caller gave on
// purpose rather than left at their defaults. It matters where a default
// gives way to something else: a method's options and InitAdapter's
// configuration (given ones must agree with it), SeqLen and the model's
// maximum (a default is capped, a given one warns).
type Explicit map[string]bool

// Has reports whether any of the options was given.
func (x Explicit) Has(options ...string) bool {
	return slices.ContainsFunc(options, func(o string) bool { return x[o] })
}
