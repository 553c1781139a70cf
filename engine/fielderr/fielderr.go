// Package fielderr is the error gotune's configuration structs return
// when a field is wrong (train.Config, generate.Options, lora.Config,
// ...). It names the field by its Go name, never by a command-line flag:
// the library does not know how its caller exposes the field. A caller
// renders the message in its own terms with Message (the gotune CLI
// names flags, "--lr"), and a struct nested in another reports its
// fields by their path there with Under or Map ("Train.LR").
package fielderr

import (
	"errors"
	"fmt"
)

// Error is an invalid field of a configuration struct: one line that
// starts with the field's name and says what is wrong.
type Error struct {
	// Field is the field's path from the struct that was validated
	// ("LR", "Inner.Steps").
	Field string
	// format and args are the message after the field's name; an
	// argument of type Ref names another field.
	format string
	args   []any
}

// Ref is an Errorf argument that names another field (by its path, as
// Field does): a message about two fields that exclude each other names
// both in its reader's terms.
type Ref string

// Errorf returns an *Error about field: the message is the field's name
// followed by a space and format, formatted with args.
func Errorf(field, format string, args ...any) *Error {
	return &Error{Field: field, format: format, args: args}
}

// Error names the fields by their paths.
func (e *Error) Error() string { return e.Message(nil) }

// Message returns the message with every field (Field and each Ref)
// named by name(path); a nil name keeps the paths.
func (e *Error) Message(name func(path string) string) string {
	if name == nil {
		name = func(p string) string { return p }
	}
	args := make([]any, len(e.args))
	for i, a := range e.args {
		if r, ok := a.(Ref); ok {
			a = name(string(r))
		}
		args[i] = a
	}
	return name(e.Field) + " " + fmt.Sprintf(e.format, args...)
}

// Fields returns the paths the message names: Field, then each Ref.
func (e *Error) Fields() []string {
	out := []string{e.Field}
	for _, a := range e.args {
		if r, ok := a.(Ref); ok {
			out = append(out, string(r))
		}
	}
	return out
}

// Map returns a copy of e whose paths (Field and each Ref) are
// path(old): a caller whose options set the struct's fields under other
// names reports them by its own paths.
func (e *Error) Map(path func(string) string) *Error {
	c := &Error{Field: path(e.Field), format: e.format, args: make([]any, len(e.args))}
	for i, a := range e.args {
		if r, ok := a.(Ref); ok {
			a = Ref(path(string(r)))
		}
		c.args[i] = a
	}
	return c
}

// Under returns a copy of e with prefix and a dot before every path: the
// error of a struct held in field prefix of another.
func (e *Error) Under(prefix string) *Error {
	return e.Map(func(p string) string { return prefix + "." + p })
}

// As returns the *Error in err's chain, if there is one.
func As(err error) (*Error, bool) {
	var fe *Error
	ok := errors.As(err, &fe)
	return fe, ok
}
